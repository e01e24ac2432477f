"""file_search's lexical index on PostgreSQL: the ``LexicalIndex`` interface of
``asstctl.server.retrieval.lexical``, with PostgreSQL full-text search instead of SQLite FTS5.

One table, ``retrieval_chunks`` (created by the store's migrations, ``pg_schema``): a chunk's
store, file, position, token count and text, and a generated ``tsvector`` (English stemming) with
a GIN index. A search ORs the query's content words (``query_terms``, as the SQLite index does)
into a ``tsquery`` and ranks the matching chunks of the stores (and files) asked with
``ts_rank_cd`` (cover density; the SQLite index uses BM25, so scores differ in scale, not in
what they are for: the higher, the better).

May import: ``asstctl.server.retrieval.lexical`` (``Hit``, ``query_terms``), lazily.
"""

from __future__ import annotations

from typing import Any


class PostgresLexicalIndex:
    def __init__(self, store: Any):
        if getattr(store, "backend", None) != "postgres":
            raise ValueError("PostgresLexicalIndex needs the PostgreSQL store")
        self.store = store

    def add(self, store_id: str, file_id: str, chunks: list[tuple[str, int]]) -> list[int]:
        """Index a file's chunks ``[(text, tokens)]``; returns their chunk ids in order."""
        if not chunks:
            return []
        texts = [text.replace("\x00", "") for text, _ in chunks]  # PostgreSQL text holds no NUL
        with self.store.transaction():
            self.store._exec(
                "INSERT INTO retrieval_chunks (store_id, file_id, seq, tokens, text) "
                "SELECT ?, ?, t.i - 1, t.tokens, t.text FROM unnest(?::text[], ?::int[]) "
                "WITH ORDINALITY AS t(text, tokens, i) ORDER BY t.i",
                (store_id, file_id, texts, [tokens for _, tokens in chunks]),
            )
            rows = self.store._fetch(
                "SELECT id FROM retrieval_chunks WHERE store_id = ? AND file_id = ? ORDER BY seq", (store_id, file_id)
            )
        return [row[0] for row in rows]

    def remove(self, store_id: str, file_id: str) -> None:
        with self.store.transaction():
            self.store._exec("DELETE FROM retrieval_chunks WHERE store_id = ? AND file_id = ?", (store_id, file_id))

    def remove_store(self, store_id: str) -> None:
        with self.store.transaction():
            self.store._exec("DELETE FROM retrieval_chunks WHERE store_id = ?", (store_id,))

    def search(self, store_ids: list[str], file_ids: list[str] | None, query: str, limit: int,
               where: Any = None) -> list[Any]:
        """The best ``limit`` chunks of those stores (and files, when given; and whose file passes
        ``where``, a ``filter_sql.FileFilter`` joined in SQL) for ``query``."""
        from asstctl.server.retrieval.lexical import Hit, query_terms

        terms = query_terms(query)
        if not terms or not store_ids or (file_ids is not None and not file_ids):
            return []
        tests, args = ["c.store_id = ANY(?)"], [list(store_ids)]
        if file_ids is not None:
            tests.append("c.file_id = ANY(?)")
            args.append(list(file_ids))
        match = " | ".join(_lexeme(t) for t in terms)
        ranked = ("SELECT c.id, c.file_id, c.seq, c.text, c.store_id, ts_rank_cd(c.tsv, q) AS score "
                  "FROM retrieval_chunks c, to_tsquery('english', ?) AS q "
                  f"WHERE c.tsv @@ q AND {' AND '.join(tests)} ORDER BY score DESC, c.id LIMIT ?")
        if where is None:
            rows = self.store._fetch(ranked, (match, *args, limit))
            return [Hit(row[0], row[1], row[2], row[3], float(row[5])) for row in rows]
        test, more = where.predicate("o")
        filtered = (f"SELECT c.id, c.file_id, c.seq, CASE WHEN {test} THEN c.text END, c.score, {where.odd_body('o')} "
                    f"FROM ({ranked}) c{where.tables('c')} ORDER BY c.score DESC, c.id")
        depth = max(20 * limit, 1000)  # the best chunks first; all of them if too few of those pass
        while True:
            rows = self.store._fetch(filtered, (*more, match, *args, depth))
            kept = [Hit(row[0], row[1], row[2], row[3], float(row[4])) for row in rows
                    if row[3] is not None and where.recheck(row[5])]
            if len(kept) >= limit or depth is None or len(rows) < depth:
                return kept[:limit]
            depth = None  # LIMIT NULL: no limit

    def chunk_texts(self, chunk_ids: list[int]) -> dict[int, tuple[str, int, str]]:
        """``{chunk id: (file id, seq, text)}``."""
        if not chunk_ids:
            return {}
        rows = self.store._fetch("SELECT id, file_id, seq, text FROM retrieval_chunks WHERE id = ANY(?)",
                                 (list(chunk_ids),))
        return {row[0]: (row[1], row[2], row[3]) for row in rows}


def _lexeme(term: str) -> str:
    """A query word as a quoted tsquery lexeme (to_tsquery still stems it and drops stopwords)."""
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"
