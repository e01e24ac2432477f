"""The lexical index: chunks in SQLite FTS5 (porter stemming), ranked by BM25.

:class:`LexicalIndex` is the interface; :class:`SqliteLexicalIndex` keeps two tables in the
store's database: ``retrieval_chunks`` (chunk id, store, file, position, tokens) and the FTS5
table ``retrieval_fts`` (the chunk text; its rowid is the chunk id). A search is one FTS5 query
``"t1" OR "t2" ...`` over the query's content words, restricted to the stores and files asked;
only the best ``limit`` chunks' texts are read.

Speed over large indexes: once the index holds ``PRUNE_FROM`` chunks, query words found in at
least ``COMMON_SHARE`` of them (counted up to that cap, so the count is cheap) may be left out of
the chunks scored, never out of the scores, and only when that provably changes nothing
(``_pruned``): the rarer words' own ranking gives a floor under the answer's last score, the
commonest words whose ceilings (each word's IDF x (k1 + 1), the most ``bm25()`` can give it) add up
to less than that floor are left out, and every chunk holding any other word is ranked by the
whole query's ``bm25()``. So the order is ``ORDER BY bm25()``'s at any size (the same scores, but
for the last bit of a float: the words' parts are added in another order). Stores whose chunks
span fewer than ``PRUNE_FROM`` rowids (a small store in a large database) are scored whole, only
over the rowids between their first and last chunk; when the rarer words find too few chunks (a
filter few files pass), common words come back one at a time.

Attribute filters (``where``, a ``filter_sql.FileFilter``): the ranking is read best first in
blocks and each new file is judged once, by primary key, until enough chunks pass (``_walk``); the
exact path joins the file records instead. A filtered ranking is the unfiltered one less the
chunks of failing files.
"""

from __future__ import annotations

import math
import re
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
K1_PLUS_1 = 2.2  # FTS5's bm25() k1 (1.2) + 1


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
        with self.store.sql() as db:
            kept, total = self._prune(db, terms)
            if kept == terms:
                rows, _ = self._ranked(db, fts_query(terms), store_ids, file_ids, limit, where)
            else:
                rows = self._pruned(db, terms, kept, total, store_ids, file_ids, limit, where)
        texts = self.chunk_texts([r[0] for r in rows])
        return [Hit(r[0], r[1], r[2], texts[r[0]][2], r[3]) for r in rows if r[0] in texts]

    def _pruned(self, db, terms: list[str], kept: list[str], total: int, store_ids, file_ids, limit: int,
                where: FileFilter | None) -> list[tuple]:
        """The best rows for ``terms`` in ``bm25()`` order, found without scoring the chunks that hold
        only the commonest words when that provably changes nothing.

        The kept (rare) words alone rank chunks whose whole-query scores are at least theirs: the
        ``limit``-th of them is a floor under the ``limit``-th score of the answer. A chunk holding
        only words left out scores at most the sum of their ceilings (``_ceiling``), so the words
        left out are the commonest whose ceilings add up to less than that floor (``_left_out``);
        the chunks holding any other word are ranked by their whole-query score (``_full_scores``).
        Stores whose chunks lie in fewer than ``PRUNE_FROM`` rowids are scored whole (a small store in
        a large database: only the rowids between its first and last chunk are read). When the
        rare words find fewer than ``limit`` chunks (a filter few files pass) or no word can be
        left out, the rarest common word left joins them and the floor is taken again; with every
        word in, that is the plain search."""
        marks = ",".join("?" * len(store_ids))
        lo, hi = db.execute(f"SELECT min(id), max(id) FROM retrieval_chunks WHERE store_id IN ({marks})", store_ids).fetchone()
        if lo is None or hi - lo < PRUNE_FROM:  # the stores' chunks lie in a short span of rowids: score them all
            return self._best_within(db, fts_query(terms), store_ids, file_ids, limit, where)
        use, rarest = set(kept), None
        while True:
            words = [t for t in terms if t in use]
            rows, _ = self._ranked(db, fts_query(words), store_ids, file_ids, limit, where)
            rest = [t for t in terms if t not in use]
            if not rest:
                return rows
            left = self._left_out(db, rest, total, rows[-1][3]) if len(rows) == limit else []
            if left:
                return self._full_scores(db, [t for t in terms if t not in left], left, store_ids, file_ids, limit,
                                         where)
            if rarest is None:  # the common words by how many chunks hold them (counted up to an eighth of the index)
                count = "SELECT count(*) FROM (SELECT rowid FROM retrieval_fts WHERE retrieval_fts MATCH ? LIMIT ?)"
                held = {t: db.execute(count, (fts_query([t]), total // 8)).fetchone()[0] for t in rest}
                rarest = sorted(rest, key=held.__getitem__)
            use.add(next(t for t in rarest if t not in use))

    @staticmethod
    def _left_out(db, common: list[str], total: int, floor: float) -> list[str]:
        """The commonest of ``common`` whose ceilings add up to less than ``floor``. Each is in at
        least ``COMMON_SHARE`` of the chunks; when that is not enough, each is counted, up to the
        number of chunks past which its ceiling is below ``floor`` / len(common) (a count that
        stops there is a lower bound, all a ceiling needs)."""
        cap = int(total * COMMON_SHARE)
        if _ceiling(total, [cap] * len(common)) < floor:
            return common
        odds = math.exp(floor / len(common) / K1_PLUS_1)  # ceiling(n) = floor / len(common) where (N - n) / n = odds
        enough = min(total, max(cap, int((total + 0.5 - 0.5 * odds) / (1 + odds)) + 1))
        count = "SELECT count(*) FROM (SELECT rowid FROM retrieval_fts WHERE retrieval_fts MATCH ? LIMIT ?)"
        held = sorted(((db.execute(count, (fts_query([t]), enough)).fetchone()[0], t) for t in common), reverse=True)
        return [t for n, (_, t) in enumerate(held) if _ceiling(total, [h for h, _ in held[:n + 1]]) < floor]

    def _full_scores(self, db, kept: list[str], common: list[str], store_ids, file_ids, limit: int,
                     where: FileFilter | None) -> list[tuple]:
        """The best ``limit`` chunks holding a ``kept`` word, by the score of the whole query."""
        rare, often = f"({fts_query(kept)})", f"({fts_query(common)})"
        both, _ = self._ranked(db, f"{rare} AND {often}", store_ids, file_ids, limit, where)
        alone, _ = self._ranked(db, f"{rare} NOT {often}", store_ids, file_ids, limit, where)
        return sorted(both + alone, key=lambda r: (-r[3], r[0]))[:limit]

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
        lo, hi = db.execute(f"SELECT min(id), max(id) FROM retrieval_chunks WHERE store_id IN ({marks})", store_ids).fetchone()
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

    @staticmethod
    def _prune(db, terms: list[str]) -> tuple[list[str], int]:
        """The query's terms without those in at least COMMON_SHARE of a large index's chunks (the
        rarest kept when all are), and the largest chunk id (at least the number of chunks)."""
        if len(terms) < 2:
            return terms, 0
        total = db.execute("SELECT max(id) FROM retrieval_chunks").fetchone()[0] or 0
        if total < PRUNE_FROM:
            return terms, total
        cap = int(total * COMMON_SHARE)
        count = "SELECT count(*) FROM (SELECT rowid FROM retrieval_fts WHERE retrieval_fts MATCH ? LIMIT ?)"
        found = {t: db.execute(count, (fts_query([t]), cap)).fetchone()[0] for t in terms}
        rare = [t for t in terms if found[t] < cap]
        return rare or [min(terms, key=found.__getitem__)], total

    def chunk_texts(self, chunk_ids: list[int]) -> dict[int, tuple[str, int, str]]:
        if not chunk_ids:
            return {}
        marks = ",".join("?" * len(chunk_ids))
        sql = (f"SELECT c.id, c.file_id, c.seq, f.text FROM retrieval_chunks c JOIN retrieval_fts f ON f.rowid = c.id "
               f"WHERE c.id IN ({marks})")
        with self.store.sql() as db:
            return {r[0]: (r[1], r[2], r[3]) for r in db.execute(sql, chunk_ids)}


def _ceiling(total: int, held: list[int]) -> float:
    """The most ``bm25()`` can give a chunk for words held by at least ``held`` chunks each, in an
    index of at most ``total`` chunks: FTS5 gives a word IDF * tf * (k1 + 1) / (tf + k1 * (1 - b + b *
    length / mean length)) (k1 = 1.2, b = 0.75), below IDF * (k1 + 1), with IDF = ln((N - n + 0.5) /
    (n + 0.5)) (1e-6 when not positive), which grows with N and falls with n. A hair is added so a
    rounding in FTS5's sum cannot tip a comparison."""
    idf = (max(1e-6, math.log((total - n + 0.5) / (n + 0.5))) for n in held)
    return sum(K1_PLUS_1 * i for i in idf) * (1 + 1e-9) + 1e-9
