"""Retrieval for vector stores and the ``file_search`` tool.

Owns: text extraction from uploaded files (``extract``), token chunking (``chunking``), the
lexical index (SQLite FTS5 with BM25, ``lexical``), the dense index, its matrices in memory and the
upstream ``/embeddings`` client (``dense``, ``dense_matrix``, ``ivf``, ``embeddings``), attribute filters (``filters``), rank fusion
and the search itself (``search``: :class:`Retriever`).

The indexes sit behind small interfaces (:class:`lexical.LexicalIndex`,
:class:`dense.DenseIndex`); the PostgreSQL store brings its own (``pg_lexical``: full-text search
with tsvector/GIN; ``pg_dense``: vectors as bytea), picked by ``search.lexical_index`` /
``search.dense_index`` from ``store.backend``.

May import: ``asstctl.server.store``, ``asstctl.server.errors`` and third-party libraries
(pypdf, python-docx, python-pptx, lxml, tiktoken, numpy, openai). Never the routes,
the app, the executor or the engines (they import us).
"""

__all__ = ["Retriever", "retriever_of"]


def __getattr__(name: str):
    """``Retriever`` and ``retriever_of`` from ``search`` on first use: importing a light part (``chunking``,
    ``pool``) does not load the indexes (a read-only server, e.g. a no-op plan's embedded one, never does)."""
    if name in __all__:
        from asstctl.server.retrieval import search

        return getattr(search, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
