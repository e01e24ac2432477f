"""Knowledge: files and vector stores declared in specs, synced by content (sha256), without a state file.

Ownership marks (a file object has no metadata):

* an upload is this project's when its filename is ``asstctl--<project>--<sha256[:16]>--<basename>``
  (purpose ``assistants``); any other file is foreign and never deleted;
* a vector store carries the assistant tags of asstctl.ownership (managed-by, project, key, spec-hash);
* a vector store file carries ``attributes``: ``asstctl.project``, ``asstctl.sha256``, ``asstctl.path``
  (the file's path relative to the project root); a store file without them is left alone.

The reconciler names uploads and stores by *references* until apply knows their ids:
``file:<basename>#<sha256[:16]>`` and ``vector_store:<key>``. An assistant's ``tool_resources`` are
derived from its spec as references, and a remote assistant's ids are turned back into references
before diffing (``symbolic``), so an unchanged file is never uploaded twice and never shows as a change.
Apply resolves references to ids (``Plan.refs`` holds the ids known when planning).

Reading (``read_knowledge``) goes through a backend (asstctl.backends); the kinds that plan and apply
stores and uploads are asstctl.reconcile.kinds.vector_store and .upload. Imports asstctl.ownership,
asstctl.backends and asstctl.reconcile.remote.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any, Iterable

from asstctl.backends import backend_for
from asstctl.ownership import UPLOAD_NAME, spec_hash, user_metadata
from asstctl.reconcile.remote import RemoteState, classify

FILE_REF, STORE_REF = "file:", "vector_store:"
ATTR_PROJECT, ATTR_SHA, ATTR_PATH = "asstctl.project", "asstctl.sha256", "asstctl.path"
AUTO_CHUNKING = {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}}
_UPLOAD = UPLOAD_NAME


# --- names and references ---------------------------------------------------------------------------------

def upload_name(project: str, local: Any) -> str:
    return f"asstctl--{project}--{local.sha256[:16]}--{PurePosixPath(local.label).name}"


def file_ref(local: Any) -> str:
    return f"{FILE_REF}{PurePosixPath(local.label).name}#{local.sha256[:16]}"


def store_ref(key: str) -> str:
    return f"{STORE_REF}{key}"


def upload_ref(filename: str, project: str) -> str | None:
    """The reference of one of this project's uploads, None for any other file."""
    match = _UPLOAD.match(filename or "")
    if not match or match["project"] != project:
        return None
    return f"{FILE_REF}{match['name']}#{match['sha']}"


def is_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith((FILE_REF, STORE_REF))


def ref_name(ref: str) -> str:
    """``file:faq.md#1a2b...`` → ``faq.md``."""
    return ref[len(FILE_REF):].rsplit("#", 1)[0] if ref.startswith(FILE_REF) else ref


# --- the remote ---------------------------------------------------------------------------------------------

@dataclass
class KnowledgeRemote:
    stores: RemoteState
    store_files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # owned store id -> its files
    uploads: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # ref -> this project's uploads, oldest first
    requests: int = 0

    def upload_ids(self) -> dict[str, str]:
        """file id -> reference, for every upload of this project (duplicates included)."""
        return {upload["id"]: ref for ref, uploads in self.uploads.items() for upload in uploads}

    def refs(self) -> dict[str, str]:
        """reference -> id of what exists: the oldest upload per content, the kept store per key."""
        out = {ref: uploads[0]["id"] for ref, uploads in self.uploads.items()}
        out.update({store_ref(key): obj["id"] for key, obj in self.stores.managed.items()})
        return out

    def fingerprints(self) -> dict[str, str]:
        """id -> fingerprint of every store of this project (its settings and files) and upload."""
        out = {obj["id"]: store_fingerprint(obj, self.store_files.get(obj["id"], [])) for obj in self.stores.owned()}
        out.update({file_id: "upload" for file_id in self.upload_ids()})
        return out


def store_fingerprint(obj: dict[str, Any], files: list[dict[str, Any]]) -> str:
    """Settings and files of a store, without what reading or searching it changes (counts, activity)."""
    settings = {name: obj.get(name) for name in ("name", "metadata", "expires_after")}
    entries = sorted((item["id"], item.get("status"), item.get("attributes") or {}) for item in files)
    return spec_hash({"store": settings, "files": [list(entry) for entry in entries]})


def read_knowledge(client: Any, project: str) -> KnowledgeRemote:
    """Every vector store (classified), the files of this project's stores, and this project's uploads
    (``client``: an SDK client or a backend, asstctl.backends)."""
    backend = backend_for(client)
    with backend.knowledge_errors():
        stores, store_files = read_stores(backend, project)
        remote = KnowledgeRemote(stores, store_files, read_uploads(backend, project))
    remote.requests = 2 + len(remote.store_files)
    return remote


def read_stores(backend: Any, project: str) -> tuple[RemoteState, dict[str, list[dict[str, Any]]]]:
    """Every vector store, classified for ``project``, and the files of this project's stores."""
    stores = classify(backend.list_vector_stores(), project)
    return stores, {obj["id"]: backend.list_store_files(obj["id"]) for obj in stores.owned()}


def read_uploads(backend: Any, project: str) -> dict[str, list[dict[str, Any]]]:
    """reference -> this project's uploads of that content, oldest first."""
    uploads: dict[str, list[dict[str, Any]]] = {}
    for upload in backend.list_uploads():
        ref = upload_ref(upload.get("filename"), project)
        if ref:
            uploads.setdefault(ref, []).append(upload)
    return uploads


# --- desired state ------------------------------------------------------------------------------------------

def with_resources(spec: Any) -> Any:
    """The spec with ``tool_resources`` derived from its knowledge, as references."""
    if not spec.code_files and not spec.vector_store:
        return spec
    resources = dict(spec.fields.get("tool_resources") or {})
    if spec.code_files:
        resources["code_interpreter"] = {"file_ids": [file_ref(local) for local in spec.code_files]}
    if spec.vector_store:
        resources["file_search"] = {"vector_store_ids": [store_ref(spec.vector_store)]}
    return replace(spec, fields={**spec.fields, "tool_resources": resources})


def symbolic(obj: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A remote assistant with the ids of this project's uploads and stores replaced by references."""
    resources = obj.get("tool_resources") or {}
    if not resources:
        return obj
    out = {kind: {name: [names.get(item, item) for item in items] if isinstance(items, list) else items
                  for name, items in (lists or {}).items()}
           for kind, lists in resources.items()}
    return {**obj, "tool_resources": out}


def desired_files(specs: Iterable[Any], stores: Iterable[Any]) -> dict[str, Any]:
    """reference -> LocalFile of every file a spec needs (first declaration wins)."""
    out: dict[str, Any] = {}
    for local in [f for spec in specs for f in spec.code_files] + [f for store in stores for f in store.files]:
        out.setdefault(file_ref(local), local)
    return out


def store_content(fields: dict[str, Any]) -> dict[str, Any]:
    """The comparable settings of a store: a spec's fields or a remote object."""
    expires = fields.get("expires_after") or None
    return {"name": fields.get("name") or "", "expires_after": expires, "metadata": user_metadata(fields.get("metadata"))}


def file_attributes(project: str, local: Any) -> dict[str, str]:
    return {ATTR_PROJECT: project, ATTR_SHA: local.sha256, ATTR_PATH: local.label}


def chunking(strategy: dict[str, Any] | None) -> dict[str, Any]:
    """``None``/``auto`` ≡ static 800/400 (what the API reports for ``auto``)."""
    if not strategy or strategy.get("type") == "auto":
        return AUTO_CHUNKING
    return strategy


def code_ids(obj: dict[str, Any] | None, names: dict[str, str] | None = None) -> list[str]:
    """The code_interpreter file ids of an assistant (as references where ``names`` knows them)."""
    ids = (((obj or {}).get("tool_resources") or {}).get("code_interpreter") or {}).get("file_ids") or []
    return [(names or {}).get(item, item) for item in ids]


def remote_object(remote: RemoteState, remote_id: str | None) -> dict[str, Any] | None:
    return next((obj for obj in remote.owned() if obj["id"] == remote_id), None) if remote_id else None


def knowledge_names(knowledge: KnowledgeRemote) -> dict[str, str]:
    """remote id -> reference of this project's uploads and kept stores."""
    # duplicates of a store keep their ids: an assistant using one is moved to the kept store before it goes
    return {**knowledge.upload_ids(), **{obj["id"]: store_ref(key) for key, obj in knowledge.stores.managed.items()}}


def knowledge_view(specs: Any, knowledge: KnowledgeRemote | None) -> tuple[list[Any], dict[str, str] | None]:
    """The specs with their derived ``tool_resources``, and remote id -> reference (None without knowledge)."""
    specs = list(specs)
    if knowledge is None:
        return specs, None
    return [with_resources(spec) for spec in specs], knowledge_names(knowledge)
