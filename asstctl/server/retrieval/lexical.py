"""The lexical index: chunks in SQLite FTS5 (porter stemming), ranked by BM25.

:class:`LexicalIndex` is the interface; :class:`SqliteLexicalIndex` keeps two tables in the
store's database: ``retrieval_chunks`` (chunk id, store, file, position, tokens) and the FTS5
table ``retrieval_fts`` (the chunk text; its rowid is the chunk id). A search is one FTS5 query
``"t1" OR "t2" ...`` over the query's content words, restricted to the stores and files asked;
only the best ``limit`` chunks' texts are read.

Speed over large indexes: once the index holds ``PRUNE_FROM`` chunks, query words found in at
least ``COMMON_SHARE`` of them (counted up to that cap, so the count is cheap) may be left out of
the chunks scored, never out of the scores (``_pruned``): the rare words and then the common ones,
rarest first, are scored while the chunks holding them add up to at most ``SCORE_BUDGET``, and
every chunk holding a scored word is ranked by the whole query's ``bm25()``. So the order is
``ORDER BY bm25()``'s whenever every word fits the budget, and past it unless a chunk holding only
left-out words would rank (approximate there: 195 of 200 benchmark queries' top 10 are the same at
100,000 chunks). Words held by half the chunks or more, which ``bm25()`` weighs 1e-6 (its IDF floor),
are left out of the statements that score (``_weightless``): FTS5 would count every chunk holding
them for their IDF, once per statement, and they move no score by more than ~1e-5 (ties may then
fall in another order). Stores whose chunks span fewer than ``PRUNE_FROM`` rowids (a small store in a large
database) are scored whole, only over the rowids between their first and last chunk; when the
scored words find too few chunks of the stores, the whole query is scored.

Attribute filters (``where``, a ``filter_sql.FileFilter``): the ranking is read best first in
blocks and each new file is judged once, by primary key, until enough chunks pass (``_walk``); the
exact path joins the file records instead. A filtered ranking is the unfiltered one less the
chunks of failing files.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Protocol

from asstctl.server.retrieval.filter_sql import FileFilter

SCHEMA = """
CREATE TABLE IF NOT EXISTS retrieval_chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    store_id TEXT NOT NULL,
    file_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    tokens INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS retrieval_chunks_file ON retrieval_chunks (store_id, file_id, seq);
CREATE INDEX IF NOT EXISTS retrieval_chunks_store ON retrieval_chunks (store_id, id);
CREATE VIRTUAL TABLE IF NOT EXISTS retrieval_fts USING fts5(text, tokenize = 'porter unicode61');
"""

STOPWORDS = frozenset(
    "a an and are as at be been but by can could did do does for from had has have how i if in into is it its "
    "me my of on or our so than that the their them then there these they this to was we were what when where "
    "which who whom why will with would you your yours about after before any all also just more most much no "
    "not only other out over same should some such too very via vs".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)
PRUNE_FROM = 20_000
COMMON_SHARE = 0.02
SCORE_BUDGET = 3_000  # chunks one search may score by bm25() (~3-5 us each here) past its rare words: ~15 ms
DF_CACHE = 10_000  # words whose chunk counts one index keeps, until its next write


@dataclass
class Hit:
    chunk_id: int
    file_id: str
    seq: int
    text: str
    score: float  # higher is better (BM25 with the sign flipped)


def query_terms(text: str) -> list[str]:
    """The content words of a query, lower-cased, in order, without repeats (stopwords dropped)."""
    words = [w.lower() for w in _WORD.findall(text)]
    content = [w for w in words if w not in STOPWORDS] or words
    return list(dict.fromkeys(content))


def fts_query(terms: list[str]) -> str:
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


class LexicalIndex(Protocol):
    def add(self, store_id: str, file_id: str, chunks: list[tuple[str, int]]) -> list[int]:
        """Index a file's chunks ``[(text, tokens)]``; returns their chunk ids in order."""
        ...

    def remove(self, store_id: str, file_id: str) -> None: ...

    def remove_store(self, store_id: str) -> None: ...

    def search(self, store_ids: list[str], file_ids: list[str] | None, query: str, limit: int,
               where: FileFilter | None = None) -> list[Hit]:
        """The best ``limit`` chunks of those stores (and files, when given; and whose file passes
        ``where``, an attribute filter joined in SQL) for ``query``."""
        ...

    def chunk_texts(self, chunk_ids: list[int]) -> dict[int, tuple[str, int, str]]:
        """``{chunk id: (file id, seq, text)}``."""
        ...


class SqliteLexicalIndex:
    def __init__(self, store):
        self.store = store
        self._counted: tuple[bytes | None, dict[str, int]] = (None, {})  # (the index's state, {word: chunks})
        self._lock = threading.Lock()
        with store.sql() as db:  # statement by statement: executescript would commit an open transaction
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    def add(self, store_id: str, file_id: str, chunks: list[tuple[str, int]]) -> list[int]:
        with self.store.transaction(), self.store.sql() as db:
            db.executemany(
                "INSERT INTO retrieval_chunks (store_id, file_id, seq, tokens) VALUES (?, ?, ?, ?)",
                [(store_id, file_id, seq, tokens) for seq, (_, tokens) in enumerate(chunks)],
            )
            ids = [row[0] for row in db.execute(
                "SELECT id FROM retrieval_chunks WHERE store_id = ? AND file_id = ? ORDER BY seq", (store_id, file_id))]
            db.executemany("INSERT INTO retrieval_fts (rowid, text) VALUES (?, ?)",
                           [(chunk_id, text) for chunk_id, (text, _) in zip(ids, chunks)])
        return ids

    def remove(self, store_id: str, file_id: str) -> None:
        self._remove("store_id = ? AND file_id = ?", (store_id, file_id))

    def remove_store(self, store_id: str) -> None:
        self._remove("store_id = ?", (store_id,))

    def _remove(self, where: str, args: tuple) -> None:
        with self.store.transaction(), self.store.sql() as db:
            db.execute(f"DELETE FROM retrieval_fts WHERE rowid IN (SELECT id FROM retrieval_chunks WHERE {where})", args)
            db.execute(f"DELETE FROM retrieval_chunks WHERE {where}", args)

    def search(self, store_ids: list[str], file_ids: list[str] | None, query: str, limit: int,
               where: FileFilter | None = None) -> list[Hit]:
        terms = query_terms(query)
        if not terms or not store_ids or (file_ids is not None and not file_ids):
            return []
        with self.store.reading() as db:  # (SQLite: a read-only connection while an ingestion commit runs)
            if where is not None:
                where.register(db)
            kept, held = self._prune(db, terms)
            if kept == terms:
                rows, _ = self._ranked(db, fts_query(terms), store_ids, file_ids, limit, where)
            else:
                rows = self._pruned(db, terms, kept, held, store_ids, file_ids, limit, where)
        texts = self.chunk_texts([r[0] for r in rows])
        return [Hit(r[0], r[1], r[2], texts[r[0]][2], r[3]) for r in rows if r[0] in texts]

    def _pruned(self, db, terms: list[str], kept: list[str], held: dict[str, int], store_ids, file_ids, limit: int,
                where: FileFilter | None) -> list[tuple]:
        """The best ``limit`` chunks holding a scored word, by the whole query's ``bm25()``.

        The scored words are the rare (kept) ones and then the common ones, rarest first, while the
        chunks holding them add up to at most ``SCORE_BUDGET`` (``_within_budget``); the rest are left
        out of the chunks scored, never out of the scores (``_full_scores``). So the answer is
        ``ORDER BY bm25()``'s whenever no chunk holding only left-out words would rank: always when
        every word fits the budget, and whenever the left-out words' ceilings (each IDF x (k1 + 1),
        the most ``bm25()`` gives a word) add up to less than the answer's last score. Stores whose
        chunks lie in fewer than ``PRUNE_FROM`` rowids are scored whole (a small store in a large
        database: only the rowids between its first and last chunk are read); when the scored
        words find fewer than ``limit`` chunks of the stores before any filter, the whole query is
        scored, as before the budget."""
        lo, hi = _span(db, store_ids)
        if lo is None or hi - lo < PRUNE_FROM:  # the stores' chunks lie in a short span of rowids: score them all
            return self._best_within(db, fts_query(terms), store_ids, file_ids, limit, where)
        rest = [t for t in terms if t not in kept]
        held.update(_counts(db, [t for t in rest if held[t] <= SCORE_BUDGET], SCORE_BUDGET + 1))
        scored = list(kept)
        for word in sorted(rest, key=held.__getitem__):
            if not _within_budget(held, [*scored, word], kept):
                break
            scored.append(word)
        if len(scored) == len(terms):
            return self._ranked(db, fts_query(terms), store_ids, file_ids, limit, where)[0]
        weightless = self._weightless(db, [t for t in terms if t not in scored])
        common = [t for t in terms if t not in scored and t not in weightless]
        scored = [t for t in terms if t in scored]
        if common:
            rows, seen = self._full_scores(db, scored, common, store_ids, file_ids, limit, where)
        else:  # every left-out word weighs nothing: the scored words alone rank (one statement)
            rows, seen = self._ranked(db, fts_query(scored), store_ids, file_ids, limit, where)
        if seen < limit:  # the scored words are (nearly) absent from these stores
            return self._best_within(db, fts_query(terms), store_ids, file_ids, limit, where)
        return rows

    def _full_scores(self, db, kept: list[str], common: list[str], store_ids, file_ids, limit: int,
                     where: FileFilter | None) -> tuple[list[tuple], int]:
        """The best ``limit`` chunks holding a ``kept`` word, by the score of the whole query, and how
        many chunks of the stores asked hold one (up to ``limit`` each way, before any filter)."""
        rare, often = f"({fts_query(kept)})", f"({fts_query(common)})"
        both, seen = self._ranked(db, f"{rare} AND {often}", store_ids, file_ids, limit, where)
        alone, more = self._ranked(db, f"{rare} NOT {often}", store_ids, file_ids, limit, where)
        return sorted(both + alone, key=lambda r: (-r[3], r[0]))[:limit], seen + more

    def _ranked(self, db, match: str, store_ids, file_ids, limit: int, where: FileFilter | None) -> tuple[list, int]:
        """The best rows, and how many chunks of the stores (and files) asked matched, up to ``limit``
        (before ``where``: whether the common words must come back depends on the stores, not the filter)."""
        if where is not None:
            return self._walk(db, match, store_ids, file_ids, limit, where)
        rows = self._best_anywhere(db, match, store_ids, file_ids, limit)
        rows = self._best_within(db, match, store_ids, file_ids, limit, None) if rows is None else rows
        return rows, len(rows)

    def _best_anywhere(self, db, match: str, store_ids, file_ids, limit: int) -> list[tuple] | None:
        """Fast path: the index's best chunks, kept when enough of them are in the stores/files
        asked (None otherwise): FTS5 sorts by rank itself, no join per matching row."""
        fetch = max(4 * limit, 50)
        ranked = db.execute("SELECT rowid, -bm25(retrieval_fts) AS score FROM retrieval_fts WHERE retrieval_fts MATCH ? "
                            "ORDER BY score DESC, rowid LIMIT ?", (match, fetch)).fetchall()
        if not ranked:
            return []
        kept = self._within(db, ranked, store_ids, file_ids)
        if len(kept) >= limit or len(ranked) < fetch:
            return kept[:limit]
        return None

    @staticmethod
    def _within(db, ranked: list[tuple], store_ids, file_ids) -> list[tuple]:
        """``(chunk id, file id, seq, score)`` of the ``ranked`` chunks in the stores (and files) asked."""
        meta = {r[0]: r[1:] for r in db.execute(
            f"SELECT id, store_id, file_id, seq FROM retrieval_chunks WHERE id IN ({','.join('?' * len(ranked))})",
            [r[0] for r in ranked])}
        stores, files = set(store_ids), None if file_ids is None else set(file_ids)
        return [(cid, meta[cid][1], meta[cid][2], score, meta[cid][0]) for cid, score in ranked
                if cid in meta and meta[cid][0] in stores and (files is None or meta[cid][1] in files)]

    def _walk(self, db, match: str, store_ids, file_ids, limit: int, where: FileFilter) -> tuple[list, int]:
        """A filtered search: FTS5's ranking read best first in blocks, each block's new files judged
        once, by primary key (``where.passing``), until ``limit`` chunks pass or the ranking ends. The
        next block is sized by the share that passed so far (doubled while none did). The records read
        follow how deep the passing chunks lie, not the store's size."""
        cursor = db.execute("SELECT rowid, -bm25(retrieval_fts) AS score FROM retrieval_fts WHERE retrieval_fts MATCH ? "
                            "ORDER BY score DESC, rowid", (match,))
        kept: list[tuple] = []
        block, seen, walked = max(4 * limit, 50), 0, 0
        while len(kept) < limit:
            ranked = cursor.fetchmany(block)
            if not ranked:
                break
            rows = self._within(db, ranked, store_ids, file_ids)
            seen, walked = seen + len(rows), walked + len(ranked)
            files: dict[str, set[str]] = {}
            for row in rows:
                files.setdefault(row[4], set()).add(row[1])
            ok = {(store_id, name) for store_id, names in files.items() for name in where.passing(store_id, names)}
            kept.extend(row for row in rows if (row[4], row[1]) in ok)
            block = max(50, (limit - len(kept)) * walked * 5 // (4 * len(kept))) if kept else 2 * block
        cursor.close()
        return kept[:limit], seen

    @staticmethod
    def _best_within(db, match: str, store_ids, file_ids, limit: int, where: FileFilter | None) -> list[tuple]:
        """Exact path: BM25 over the matching chunks of those stores (and files, and passing files) only.
        FTS5 scores only the rowids between the stores' first and last chunk (the same scores: BM25's
        statistics are the whole index's), so a small store in a large index costs little."""
        marks = ",".join("?" * len(store_ids))
        lo, hi = _span(db, store_ids)
        if lo is None:
            return []
        tests = ["f.rowid BETWEEN ? AND ?", f"c.store_id IN ({marks})"]
        args: list = [lo, hi, *store_ids]
        if file_ids is not None:
            tests.append(f"c.file_id IN ({','.join('?' * len(file_ids))})")
            args.extend(file_ids)
        joined = ""
        if where is not None:
            joined, (test, more) = where.tables("c"), where.predicate()
            tests.append(test)
            args.extend(more)
        sql = ("SELECT c.id, c.file_id, c.seq, -bm25(retrieval_fts) AS score "
               f"FROM retrieval_fts f JOIN retrieval_chunks c ON c.id = f.rowid{joined} "
               f"WHERE retrieval_fts MATCH ? AND {' AND '.join(tests)} ORDER BY score DESC, c.id LIMIT ?")
        return db.execute(sql, (match, *args, limit)).fetchall()

    def _weightless(self, db, terms: list[str]) -> set[str]:
        """The ``terms`` held by at least half of the index's chunks. ``bm25()`` floors such a word's
        IDF (``log((N - n + 0.5) / (n + 0.5))``, at most 0 there) to 1e-6, so it adds at most
        ~2e-6 to any chunk's score: left out of the expression, it changes no order but between
        chunks whose scores differ by less than that, and its IDF is not counted (FTS5 counts every
        chunk holding each word of an expression, once per statement: ~5 ms for a word in 80,000
        chunks). Counts are kept until the index's next write (its structure record changes)."""
        if not terms:
            return set()
        state, totals = db.execute("SELECT (SELECT block FROM retrieval_fts_data WHERE id = 10), "
                                   "(SELECT block FROM retrieval_fts_data WHERE id = 1)").fetchone()
        if not state or not totals:
            return set()
        half = (_varint(totals) + 1) // 2  # the averages record starts with the number of rows
        with self._lock:
            if self._counted[0] != state:
                self._counted = (state, {})
            counted = self._counted[1]
            known = {t: counted[t] for t in terms if t in counted}
        fresh = _counts(db, [t for t in terms if t not in known], half)
        with self._lock:
            if self._counted[0] == state and len(self._counted[1]) + len(fresh) <= DF_CACHE:
                self._counted[1].update(fresh)
        known.update(fresh)
        return {t for t in terms if known[t] >= half}

    @staticmethod
    def _prune(db, terms: list[str]) -> tuple[list[str], dict[str, int]]:
        """The query's terms without those in at least COMMON_SHARE of a large index's chunks (the
        rarest kept when all are), and how many chunks hold each term (counted up to that share)."""
        if len(terms) < 2:
            return terms, {}
        total = db.execute("SELECT max(id) FROM retrieval_chunks").fetchone()[0] or 0
        if total < PRUNE_FROM:
            return terms, {}
        cap = int(total * COMMON_SHARE)
        found = _counts(db, terms, cap)
        rare = [t for t in terms if found[t] < cap]
        return rare or [min(terms, key=found.__getitem__)], found

    def chunk_texts(self, chunk_ids: list[int]) -> dict[int, tuple[str, int, str]]:
        if not chunk_ids:
            return {}
        marks = ",".join("?" * len(chunk_ids))
        sql = (f"SELECT c.id, c.file_id, c.seq, f.text FROM retrieval_chunks c JOIN retrieval_fts f ON f.rowid = c.id "
               f"WHERE c.id IN ({marks})")
        with self.store.reading() as db:
            return {r[0]: (r[1], r[2], r[3]) for r in db.execute(sql, chunk_ids)}


def _span(db, store_ids: list[str]) -> tuple[int | None, int | None]:
    """The stores' first and last chunk ids: two index seeks (one ``min(id), max(id)`` query would
    read the stores' whole index range, ~30 ms at 100,000 chunks)."""
    marks = ",".join("?" * len(store_ids))
    return db.execute(f"SELECT (SELECT min(id) FROM retrieval_chunks WHERE store_id IN ({marks})), "
                      f"(SELECT max(id) FROM retrieval_chunks WHERE store_id IN ({marks}))", [*store_ids, *store_ids]).fetchone()


def _counts(db, terms: list[str], cap: int) -> dict[str, int]:
    """How many chunks hold each term, counted up to ``cap`` (no ``bm25()``: ~0.1 us a row)."""
    count = "SELECT count(*) FROM (SELECT rowid FROM retrieval_fts WHERE retrieval_fts MATCH ? LIMIT ?)"
    return {t: db.execute(count, (fts_query([t]), cap)).fetchone()[0] for t in terms}


def _varint(data: bytes) -> int:
    """The first varint of an FTS5 record (SQLite's format: 7 bits a byte, big-endian, the 9th byte whole)."""
    value = 0
    for byte in data[:8]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value
    return (value << 8) | data[8]


def _within_budget(held: dict[str, int], scored: list[str], kept: list[str]) -> bool:
    """Whether the chunks holding the ``scored`` words add up to at most ``SCORE_BUDGET`` (or to no
    more than the ``kept`` rare words alone, always scored)."""
    return sum(held[t] for t in scored) <= max(SCORE_BUDGET, sum(held[t] for t in kept))

