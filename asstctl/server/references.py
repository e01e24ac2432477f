"""What a deletion leaves behind elsewhere: a deleted vector store leaves the
``tool_resources.file_search.vector_store_ids`` of every assistant and thread, as the
real API drops it (clients reusing the dead id would fail otherwise).

Imports: nothing of asstctl's; works on any ``Store`` (``all`` / ``put``).
"""

from __future__ import annotations

from typing import Any

HOLDERS = ("assistant", "thread")  # kinds (parent "") whose tool_resources may name a vector store


def drop_vector_store(store: Any, vs_id: str) -> int:
    """Remove ``vs_id`` from every holder's file_search resources; how many changed.
    Call inside the transaction that deletes the store."""
    changed = 0
    for kind in HOLDERS:
        for obj in store.all(kind, ""):
            ids = ((obj.get("tool_resources") or {}).get("file_search") or {}).get("vector_store_ids")
            if ids and vs_id in ids:
                obj["tool_resources"]["file_search"]["vector_store_ids"] = [i for i in ids if i != vs_id]
                store.put(kind, obj)
                changed += 1
    return changed
