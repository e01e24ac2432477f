"""Attribute filters evaluated in SQL, joined with the chunk ranking: a filtered search reads only
the file records of the chunks it ranks (by primary key), never the store's whole file list. The
lexical indexes join them (``tables`` + ``predicate``: SQLite's exact path, PostgreSQL's best
chunks) or judge a block of candidate files at a time (``passing``: SQLite's walk down FTS5's
ranking, the dense index's walk down its similarities).

:class:`FileFilter` compiles a request's ``filters`` (``asstctl.server.retrieval.filters``) into a
boolean SQL expression over a vector store file's record: the store's ``objects`` row of kind
``vector_store_file`` (parent = the vector store, id = the file, ``body`` = its JSON), with the
file ``completed`` and its ``attributes`` passing. The semantics are exactly ``filters.matches``:

- SQLite: ``json_each`` over the attributes (any key, quotes and dots included); a value's JSON
  type keeps booleans apart from 0/1 and numbers apart from strings; strings compare as SQLite's
  BINARY collation, which is code-point order (Python's). SQLite's JSON functions cut a string at a
  NUL character, so a record whose JSON holds an escaped NUL is judged by ``filters.matches``
  itself, through a Python SQL function (``asstctl_file_passes``).
- PostgreSQL: ``jsonb`` operators (``->`` with the key as a parameter); numbers compare as
  ``numeric``, strings with ``COLLATE "C"`` (code-point order, whatever the database's collation).
  ``jsonb`` cannot hold a NUL character, so a record whose JSON holds one is let through by the SQL
  and judged in Python (:meth:`FileFilter.recheck`): such rows come back with their body.

Integers in a filter must fit 64 bits (``check_filter`` says so): SQLite cannot bind larger ones.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from typing import Any, Iterable

from asstctl.server.retrieval.filters import matches

NUL = "\\u0000"  # a NUL character as it stands in a stored JSON body (json.dumps escapes it)
PASSES_FN = "asstctl_file_passes"
ORDER_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def passes(record: dict[str, Any] | None, rule: dict[str, Any]) -> bool:
    """A vector store file record passes: completed, and its attributes match ``rule``."""
    return bool(record) and record.get("status") == "completed" and matches(record.get("attributes") or {}, rule)


@functools.lru_cache(maxsize=64)
def _rule(text: str) -> dict[str, Any]:
    return json.loads(text)


def _passes_sql(body: str, rule_text: str) -> int:
    try:
        return int(passes(json.loads(body), _rule(rule_text)))
    except (ValueError, TypeError, AttributeError):  # a body that is not a file record: it does not pass
        return 0


def register(db: Any) -> None:
    """Make ``asstctl_file_passes(body, rule)`` known to a SQLite connection (idempotent, ~1 µs). SQLite
    refuses while a statement of the connection runs: a read within a filtered read, which made it first."""
    try:
        db.create_function(PASSES_FN, 2, _passes_sql, deterministic=True)
    except sqlite3.OperationalError:
        pass


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class FileFilter:
    """One request's ``filters`` for one store's database (``store.backend``)."""

    def __init__(self, rule: dict[str, Any], store: Any):
        self.rule = rule
        self.store = store
        self.postgres = getattr(store, "backend", None) == "postgres"
        self._judged: dict[tuple[str, str], bool] = {}  # (store, file) -> passes: one search's rankings share it

    def register(self, db: Any) -> None:
        """SQLite: make the filter's SQL function known to ``db``, the connection a read runs on (the store's, or
        a read-only one while another thread's transaction holds it: it had none, the filtered read failed)."""
        if not self.postgres:
            register(db)

    # -- SQL -------------------------------------------------------------------------------------
    def tables(self, chunk: str, obj: str = "o") -> str:
        """``JOIN objects {obj}``: the record of each chunk's file (alias ``chunk``), by primary key;
        put :meth:`predicate` in the WHERE clause."""
        on = f"{obj}.kind = 'vector_store_file' AND {obj}.parent = {chunk}.store_id AND {obj}.id = {chunk}.file_id"
        return f" JOIN objects {obj} ON {on}{self.lateral(obj)}"

    def lateral(self, obj: str) -> str:
        """PostgreSQL: the record parsed once per row (``{obj}_j.doc``, null when it holds a NUL)."""
        if not self.postgres:
            return ""
        return (f" JOIN LATERAL (SELECT strpos({obj}.body, '{NUL}') > 0 AS odd, CASE WHEN strpos({obj}.body, "
                f"'{NUL}') = 0 THEN {obj}.body::jsonb END AS doc OFFSET 0) {obj}_j ON TRUE")  # OFFSET 0: not inlined

    def odd_body(self, obj: str = "o") -> str:
        """A select column: the record's body when SQL could not judge it (PostgreSQL, NUL), else null."""
        return f"CASE WHEN {obj}_j.odd THEN {obj}.body END" if self.postgres else "NULL"

    def predicate(self, obj: str = "o") -> tuple[str, list[Any]]:
        """The SQL boolean: the record ``obj`` (an ``objects`` row) is completed and passes."""
        if self.postgres:
            doc = f"{obj}_j.doc"
            sql, args = self._pg(self.rule, f"({doc} -> 'attributes')")
            return f"({obj}_j.odd OR (({doc} ->> 'status') = 'completed' AND {sql}))", args
        sql, args = self._sqlite(self.rule, obj)
        return (f"(CASE WHEN instr({obj}.body, '{NUL}') > 0 THEN {PASSES_FN}({obj}.body, ?) "
                f"ELSE {sql} AND json_extract({obj}.body, '$.status') = 'completed' END)"), [json.dumps(self.rule), *args]

    def _sqlite(self, rule: dict[str, Any], obj: str) -> tuple[str, list[Any]]:
        kind = rule["type"]
        if kind in ("and", "or"):
            return _combine(kind, [self._sqlite(item, obj) for item in rule["filters"]])
        key, value = rule["key"], rule["value"]

        def exists(cond: str, cond_args: list[Any]) -> tuple[str, list[Any]]:
            return (f"EXISTS (SELECT 1 FROM json_each({obj}.body, '$.attributes') a WHERE a.key = ? AND ({cond}))",
                    [key, *cond_args])

        if kind in ("eq", "ne", "in", "nin"):
            sql, args = exists(*_sqlite_same([value] if kind in ("eq", "ne") else value))
            return (sql if kind in ("eq", "in") else f"NOT {sql}"), args
        if _number(value):
            return exists(f"a.type IN ('integer', 'real') AND a.atom {ORDER_OPS[kind]} ?", [value])
        if isinstance(value, str):
            return exists(f"a.type = 'text' AND a.atom {ORDER_OPS[kind]} ?", [value])
        return "FALSE", []  # a boolean is never ordered

    def _pg(self, rule: dict[str, Any], attrs: str) -> tuple[str, list[Any]]:
        kind = rule["type"]
        if kind in ("and", "or"):
            return _combine(kind, [self._pg(item, attrs) for item in rule["filters"]])
        key, value = rule["key"], rule["value"]
        if "\x00" in key:  # no record SQL judges holds a NUL: the key is absent from all of them
            return ("TRUE" if kind in ("ne", "nin") else "FALSE"), []

        def at(cond: str, cond_args: list[Any]) -> tuple[str, list[Any]]:  # ``x``: the attribute's value
            return f"(SELECT {cond} FROM (SELECT {attrs} -> ? AS x) s)", [*cond_args, key]  # in text order

        if kind in ("eq", "ne", "in", "nin"):
            sql, args = at(*_pg_same([value] if kind in ("eq", "ne") else value))
            return (sql if kind in ("eq", "in") else f"NOT {sql}"), args
        if _number(value):
            return at(f"CASE WHEN jsonb_typeof(x) = 'number' THEN x::numeric {ORDER_OPS[kind]} ?::numeric "
                      "ELSE FALSE END", [_pg_number(value)])
        if isinstance(value, str):
            op = ORDER_OPS[kind]
            if "\x00" in value:  # s (no NUL) against p + NUL + rest orders as s against p, never equal
                value, op = value.split("\x00", 1)[0], {"gt": ">", "gte": ">", "lt": "<=", "lte": "<="}[kind]
            return at(f"CASE WHEN jsonb_typeof(x) = 'string' THEN (x #>> '{{}}') COLLATE \"C\" {op} ? "
                      "ELSE FALSE END", [value])
        return "FALSE", []

    # -- reading records by primary key -----------------------------------------------------------
    def passing(self, store_id: str, file_ids: Iterable[str], conn: Any = None) -> set[str]:
        """Those files of the store that pass, by primary key (one query per 500 ids not judged yet, per
        5,000 on PostgreSQL; on ``conn``, a PostgreSQL connection, when given: a walk holding one reads on it)."""
        names = list(dict.fromkeys(file_ids))
        wanted, found = [n for n in names if (store_id, n) not in self._judged], set()
        where, args = self.predicate("o") if wanted else ("", [])
        step = 5000 if self.postgres else 500  # PostgreSQL: one array parameter (psycopg parses each placeholder)
        for start in range(0, len(wanted), step):
            part = wanted[start:start + step]
            if self.postgres:  # one index lookup per id (given ``= ANY``, the planner may read the whole store)
                sql = (f"SELECT o.id, {self.odd_body('o')} FROM unnest(?::text[]) AS u(id), LATERAL (SELECT o.id, "
                       "o.body FROM objects o WHERE o.kind = 'vector_store_file' AND o.parent = ? AND o.id = u.id "
                       f"LIMIT 1) o{self.lateral('o')} WHERE {where}")
                values = [part, store_id, *args]
            else:
                sql = (f"SELECT o.id, NULL FROM objects o WHERE o.kind = 'vector_store_file' AND o.parent = ? "
                       f"AND o.id IN ({','.join('?' * len(part))}) AND {where}")
                values = [store_id, *part, *args]
            if conn is not None:
                rows = conn.execute(sql.replace("?", "%s"), values).fetchall()
            elif self.postgres:
                rows = self.store._fetch(sql, values)
            else:
                with self.store.reading() as db:
                    self.register(db)
                    rows = db.execute(sql, values).fetchall()
            found.update(row[0] for row in rows if self.recheck(row[1]))
        self._judged.update(((store_id, n), n in found) for n in wanted)
        return {n for n in names if self._judged[(store_id, n)]}

    def recheck(self, odd_body: str | None) -> bool:
        """A row the SQL let through: True unless its body (given when SQL could not judge it) fails."""
        return odd_body is None or passes(json.loads(odd_body), self.rule)


def _combine(kind: str, parts: list[tuple[str, list[Any]]]) -> tuple[str, list[Any]]:
    if not parts:  # all([]) / any([])
        return ("TRUE" if kind == "and" else "FALSE"), []
    joiner = " AND " if kind == "and" else " OR "
    return "(" + joiner.join(sql for sql, _ in parts) + ")", [arg for _, args in parts for arg in args]


def _sqlite_same(values: list[Any]) -> tuple[str, list[Any]]:
    """The attribute row ``a`` equals one of ``values`` (booleans only equal booleans)."""
    conds, args = [], []
    flags = {v for v in values if isinstance(v, bool)}
    conds += [f"a.type = '{'true' if flag else 'false'}'" for flag in sorted(flags)]
    numbers = [v for v in values if _number(v)]
    if numbers:
        conds.append(f"(a.type IN ('integer', 'real') AND a.atom IN ({','.join('?' * len(numbers))}))")
        args += numbers
    strings = [v for v in values if isinstance(v, str)]
    if strings:
        conds.append(f"(a.type = 'text' AND a.atom IN ({','.join('?' * len(strings))}))")
        args += strings
    return (" OR ".join(conds) or "FALSE"), args


def _pg_same(values: list[Any]) -> tuple[str, list[Any]]:
    """The jsonb value ``x`` equals one of ``values`` (booleans only equal booleans)."""
    flags = sorted({"true" if v else "false" for v in values if isinstance(v, bool)})
    numbers = [_pg_number(v) for v in values if _number(v)]
    strings = [v for v in values if isinstance(v, str) and "\x00" not in v]  # no record SQL judges holds NUL
    return ("CASE jsonb_typeof(x) WHEN 'boolean' THEN x #>> '{}' = ANY(?::text[]) "
            "WHEN 'number' THEN x::numeric = ANY(?::numeric[]) "
            "WHEN 'string' THEN x #>> '{}' = ANY(?::text[]) ELSE FALSE END"), [flags, numbers, strings]


def _pg_number(value: int | float) -> str:
    """A number as PostgreSQL ``numeric`` text: an int exactly, a float by its shortest repr."""
    return str(value) if isinstance(value, int) else repr(value)
