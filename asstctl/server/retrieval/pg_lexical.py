"""file_search's lexical index on PostgreSQL: the ``LexicalIndex`` interface of
``asstctl.server.retrieval.lexical``, with PostgreSQL full-text search instead of SQLite FTS5.

The table ``retrieval_chunks`` (created by the store's migrations, ``pg_schema``): a chunk's
store, file, position, token count and text, and a generated ``tsvector`` (English stemming) with
a GIN index. A search ORs the query's content words (``query_terms``, as the SQLite index does)
into a ``tsquery`` and ranks the matching chunks of the stores (and files) asked with
``ts_rank_cd`` divided by 1 + log(the chunk's length) (``RANK``: cover density, normalization 1;
the SQLite index uses BM25, so scores differ in scale, not in what they are for: the higher, the
better). On the retrieval benchmark's 74 questions its nDCG@10 is 0.905 (0.888 without the length
normalization; SQLite's bm25() order 0.901), chosen among 8 variants on those same questions
(docs/benchmarks.md).

Word counts: ``retrieval_terms`` holds how many chunks hold each lexeme, up to the chunk id in
``retrieval_terms_upto``; the chunks past it (fewer than ``FOLD_AT`` and the last file's) are counted
when read. An add that brings them to ``FOLD_AT`` folds them in with one upsert of their distinct
lexemes (a file's own upsert of its ~300 words was 4 of the 6 ms its commit held the write lock);
a deletion takes off the chunks counted (a word no chunk holds leaves it; migration 4 counted the
chunks already there). So a search reads its words' counts in one indexed lookup and a scan of the
few chunks past the mark instead of counting their matches through the GIN index (about 10 µs a
match: 30 ms and more for a common word of 100,000 chunks); the counts it reads are exact.

Speed over large indexes: once the table holds ``PRUNE_FROM`` chunks, query words found in at
least ``COMMON_SHARE`` of them are left out while rarer words remain, as on SQLite, and of the
rarer words only the rarest are kept while the chunks they match add up to at most ``CANDIDATES`` (a candidate cap: the chunks scored stay
bounded). When the kept words find fewer chunks of the stores than asked, the words left out come
back one at a time, rarest first, until enough chunks match (SQLite brings them all back at once).
Only a query whose words are all common (or a store sharing only common words with it) scores
every chunk that holds its rarest word. Statements are not prepared: a generic plan would not know
which words the query holds.

Attribute filters (``where``, a ``filter_sql.FileFilter``): the ranking is read best first in
blocks through a server-side cursor (scored once) and each new file is judged once, by primary key,
until enough chunks pass (``_walk``): the filtered ranking is the unfiltered one less the chunks of
failing files.

May import: ``asstctl.server.retrieval.lexical`` (``Hit``, ``query_terms``), lazily.
"""

from __future__ import annotations

from typing import Any

FOLD_AT = 256  # chunks not yet in the word counts: once this many, the next add counts them all at once
CANDIDATES = 2_000  # the rarer words are kept while the chunks they match add up to at most this
RANK = "ts_rank_cd(c.tsv, q, 1)"  # cover density divided by 1 + log(the chunk's length) (``q``: the tsquery)


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
        with self.store.transaction(), self.store.sql() as conn:
            rows = conn.execute(
                "WITH added AS (INSERT INTO retrieval_chunks (store_id, file_id, seq, tokens, text) "
                "SELECT %s, %s, t.i - 1, t.tokens, t.text FROM unnest(%s::text[], %s::int[]) "
                "WITH ORDINALITY AS t(text, tokens, i) ORDER BY t.i RETURNING id, seq) "
                f"SELECT id, id - ({_UPTO}) FROM added ORDER BY seq",
                (store_id, file_id, texts, [tokens for _, tokens in chunks]), prepare=False).fetchall()
            if max(row[1] for row in rows) >= FOLD_AT:  # (ids grow in commit order: write transactions are serialized)
                conn.execute(f"WITH folded AS (SELECT tsv FROM retrieval_chunks WHERE id > ({_UPTO})), "
                             f"counted AS ({_COUNT.format(rows='folded', sign='')}) "
                             "UPDATE retrieval_terms_upto SET upto = %s", (max(row[0] for row in rows),), prepare=False)
        return [row[0] for row in rows]

    def remove(self, store_id: str, file_id: str) -> None:
        self._remove("store_id = %s AND file_id = %s", (store_id, file_id))

    def remove_store(self, store_id: str) -> None:
        self._remove("store_id = %s", (store_id,))

    def _remove(self, which: str, args: tuple) -> None:
        """Delete chunks and take them off the word counts; a word no chunk holds any more leaves the table."""
        with self.store.transaction(), self.store.sql() as conn:
            gone = conn.execute(f"WITH removed AS (DELETE FROM retrieval_chunks WHERE {which} RETURNING id, tsv), "
                                f"counted AS (SELECT tsv FROM removed WHERE id <= ({_UPTO})) "
                                f"{_COUNT.format(rows='counted', sign='-')} RETURNING lexeme, chunks",
                                args, prepare=False).fetchall()
            unheld = [lexeme for lexeme, held in gone if held <= 0]
            if unheld:
                conn.execute("DELETE FROM retrieval_terms WHERE lexeme = ANY(%s) AND chunks <= 0", (unheld,))

    def search(self, store_ids: list[str], file_ids: list[str] | None, query: str, limit: int,
               where: Any = None) -> list[Any]:
        """The best ``limit`` chunks of those stores (and files, when given; and whose file passes
        ``where``, a ``filter_sql.FileFilter``) for ``query``."""
        from asstctl.server.retrieval.lexical import Hit, query_terms

        terms = query_terms(query)
        if not terms or not store_ids or (file_ids is not None and not file_ids):
            return []
        with self.store.sql() as conn:
            kept, rest = self._prune(conn, terms)
            rows, seen = self._ranked(conn, kept, store_ids, file_ids, limit, where)
            while seen < limit and rest:  # too few chunks of these stores hold the rarer words
                kept.append(rest.pop(0))
                rows, seen = self._ranked(conn, kept, store_ids, file_ids, limit, where)
            if where is not None and rows:
                texts = _texts(conn, [row[0] for row in rows])
                rows = [(cid, file_id, seq, texts[cid][2], score) for cid, file_id, seq, score in rows if cid in texts]
        return [Hit(row[0], row[1], row[2], row[3], float(row[4])) for row in rows]

    @staticmethod
    def _ranked(conn, terms: list[str], store_ids, file_ids, limit: int, where) -> tuple[list[tuple], int]:
        """The best rows, and how many chunks of the stores (and files) matched, up to ``limit``
        (before ``where``: whether the common words come back depends on the stores, not the filter)."""
        tests, args = ["c.store_id = ANY(%s)"], [list(store_ids)]
        if file_ids is not None:
            tests.append("c.file_id = ANY(%s)")
            args.append(list(file_ids))
        head = "SELECT c.id, c.file_id, c.seq, " + ("c.store_id" if where is not None else "c.text")
        ranked = (f"{head}, {RANK} AS score FROM retrieval_chunks c, to_tsquery('english', %s) AS q "
                  f"WHERE c.tsv @@ q AND {' AND '.join(tests)} ORDER BY score DESC, c.id")
        if where is None:
            rows = conn.execute(ranked + " LIMIT %s", (_match(terms), *args, limit), prepare=False).fetchall()
            return rows, len(rows)
        return _walk(conn, ranked, (_match(terms), *args), limit, where)

    @staticmethod
    def _prune(conn, terms: list[str]) -> tuple[list[str], list[str]]:
        """The query's terms to search with, and those left out for now, rarest first: a term found in
        at least ``COMMON_SHARE`` of a large index's chunks is left out while a rarer one remains, and
        so are the terms past the rarest ones that match ``CANDIDATES`` chunks in all (the chunks a
        search scores stay bounded whatever the index's size).
        How many chunks hold each word is read from ``retrieval_terms`` (kept with the chunks, one
        round trip with the index's size); a word PostgreSQL splits in several lexemes counts as its
        rarest one, a stopword of its dictionary as 0 (it matches nothing)."""
        from asstctl.server.retrieval.lexical import COMMON_SHARE, PRUNE_FROM

        if len(terms) < 2:
            return terms, []
        rows = conn.execute(
            f"WITH pending AS MATERIALIZED (SELECT tsv FROM retrieval_chunks WHERE id > ({_UPTO})) "  # one range scan
            "SELECT (SELECT coalesce(max(id), 0) FROM retrieval_chunks), u.i, coalesce(min(coalesce(w.chunks, 0) + "
            f"(SELECT count(*) FROM pending b WHERE b.tsv @@ ({_QUOTED})::tsquery)), 0) "
            "FROM unnest(%s::text[]) WITH ORDINALITY AS u(term, i) "
            "LEFT JOIN LATERAL unnest(tsvector_to_array(to_tsvector('english', u.term))) AS l(lexeme) ON true "
            "LEFT JOIN retrieval_terms w ON w.lexeme = l.lexeme GROUP BY u.i ORDER BY u.i",
            (terms,), prepare=False).fetchall()
        total = rows[0][0] if rows else 0
        if total < PRUNE_FROM:
            return terms, []
        cap, counts = int(total * COMMON_SHARE), {term: row[2] for term, row in zip(terms, rows)}
        order = sorted(terms, key=lambda t: counts[t])  # stable: equal counts keep the query's order
        kept, candidates = [], 0
        for term in order:
            found = counts[term]
            if found >= cap or (kept and candidates + found > CANDIDATES):
                break
            kept.append(term)
            candidates += found
        kept = kept or order[:1]
        return kept, order[len(kept):]

    def chunk_texts(self, chunk_ids: list[int]) -> dict[int, tuple[str, int, str]]:
        """``{chunk id: (file id, seq, text)}``."""
        if not chunk_ids:
            return {}
        with self.store.sql() as conn:
            return _texts(conn, chunk_ids)


def _texts(conn, chunk_ids: list[int]) -> dict[int, tuple[str, int, str]]:
    rows = conn.execute("SELECT id, file_id, seq, text FROM retrieval_chunks WHERE id = ANY(%s)", (list(chunk_ids),))
    return {row[0]: (row[1], row[2], row[3]) for row in rows.fetchall()}


def _walk(conn, ranked: str, args: tuple, limit: int, where: Any) -> tuple[list[tuple], int]:
    """A filtered search: the ranking read best first in blocks through a server-side cursor (scored
    once), each block's new files judged once by primary key (``where.passing``, on this connection),
    until ``limit`` chunks pass or the ranking ends; the next block is sized by the share that passed
    so far (doubled while none did), as SQLite's walk. The records read follow how deep the passing
    chunks lie, not the store's size."""
    kept: list[tuple] = []
    block, seen = max(4 * limit, 50), 0
    with conn.transaction(), conn.cursor(name="asstctl_lexical_walk") as cursor:
        cursor.execute(ranked, args)
        while len(kept) < limit:
            rows = cursor.fetchmany(block)
            if not rows:
                break
            seen += len(rows)
            files: dict[str, set[str]] = {}
            for row in rows:
                files.setdefault(row[3], set()).add(row[1])
            ok = {(store_id, name) for store_id, names in files.items()
                  for name in where.passing(store_id, names, conn=conn)}
            kept.extend((row[0], row[1], row[2], row[4]) for row in rows if (row[3], row[1]) in ok)
            block = max(50, (limit - len(kept)) * seen * 5 // (4 * len(kept))) if kept else 2 * block
    return kept[:limit], seen


# a lexeme as the tsquery of that one lexeme (quoted: quotes doubled, backslashes escaped); ``@@`` finds it in a
# chunk's sorted tsvector by binary search (tsvector_to_array built an array of each chunk's ~300 lexemes per
# query word: +20 ms a search)
_QUOTED = r"'''' || replace(replace(l.lexeme, '\', '\\'), '''', '''''') || ''''"
_UPTO = "SELECT upto FROM retrieval_terms_upto"  # the chunks up to this id are counted in ``retrieval_terms``
# adds (``sign`` "") or takes off ("-") the chunks of ``rows`` (a CTE with their ``tsv``) to the word counts, in
# lexeme order (concurrent writers lock the rows they share in the same order)
_COUNT = ("INSERT INTO retrieval_terms AS w (lexeme, chunks) SELECT l.lexeme, {sign}count(*) FROM {rows}, "
          "unnest(tsvector_to_array({rows}.tsv)) AS l(lexeme) GROUP BY l.lexeme ORDER BY l.lexeme "
          "ON CONFLICT (lexeme) DO UPDATE SET chunks = w.chunks + EXCLUDED.chunks")


def _match(terms: list[str]) -> str:
    return " | ".join(_lexeme(t) for t in terms)


def _lexeme(term: str) -> str:
    """A query word as a quoted tsquery lexeme (to_tsquery still stems it and drops stopwords)."""
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"
