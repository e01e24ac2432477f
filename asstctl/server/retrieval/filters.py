"""Attribute filters of vector store search (``ComparisonFilter`` / ``CompoundFilter``).

``check_filter`` validates a request's ``filters`` (400 with the offending path otherwise);
``matches`` applies one to a vector store file's ``attributes``. Comparisons: ``eq ne`` on any
scalar, ``gt gte lt lte`` on two numbers or two strings (a missing attribute never matches), ``in
nin`` against an array of strings/numbers. ``and`` / ``or`` combine filters (nesting allowed).
Integers must fit 64 bits (``MAX_INTEGER``; larger ones are a 400 naming the limit): the search
evaluates filters in SQL (``filter_sql``), and SQLite binds no larger integer.
"""

from __future__ import annotations

from typing import Any

from asstctl.server import validation as v
from asstctl.server.errors import invalid

COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin")
MAX_INTEGER = 2**63 - 1
ORDERED = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}


def check_filter(value: Any, param: str = "filters") -> None:
    v.check_type(value, param, "object")
    if value.get("type") in ("and", "or"):
        v.check_fields(value, ("type", "filters"), ("filters",), param)
        v.check_array(value["filters"], v.path(param, "filters"))
        for i, item in enumerate(value["filters"]):
            check_filter(item, v.path(v.path(param, "filters"), i))
        return
    v.check_fields(value, ("type", "key", "value"), ("type", "key", "value"), param)
    v.check_enum(value["type"], v.path(param, "type"), COMPARISONS + ("and", "or"))
    v.check_string(value["key"], v.path(param, "key"))
    _check_value(value["type"], value["value"], v.path(param, "value"))


def _check_value(op: str, value: Any, param: str) -> None:
    scalar = (str, int, float, bool)
    if op in ("in", "nin"):
        if not isinstance(value, list):
            raise invalid(param, f"Invalid value for '{param}': the '{op}' filter compares against an array "
                                 f"of strings or numbers, e.g. [\"a\", \"b\"]; got {v.type_of(value)}.", "invalid_type")
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise invalid(v.path(param, i), f"Invalid value for '{v.path(param, i)}': expected a string or "
                                                f"a number, got {v.type_of(item)}.", "invalid_type")
            _check_integer(item, v.path(param, i))
        return
    if not isinstance(value, scalar):
        raise invalid(param, f"Invalid value for '{param}': the '{op}' filter compares against a string, a "
                             f"number or a boolean; got {v.type_of(value)}.", "invalid_type")
    _check_integer(value, param)


def _check_integer(value: Any, param: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        raise invalid(param, f"Invalid value for '{param}': integers in filters are limited to 64 bits "
                             f"(at most {MAX_INTEGER} in magnitude); send a larger number as a decimal, "
                             f"e.g. {float(value):.6g}.", "integer_above_max_value")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def matches(attributes: dict[str, Any], rule: dict[str, Any]) -> bool:
    if rule["type"] in ("and", "or"):
        results = (matches(attributes, f) for f in rule["filters"])
        return all(results) if rule["type"] == "and" else any(results)
    op, expected = rule["type"], rule["value"]
    present = rule["key"] in attributes
    actual = attributes.get(rule["key"])
    if op == "eq":
        return present and _same(actual, expected)
    if op == "ne":
        return not (present and _same(actual, expected))
    if op in ("in", "nin"):
        found = present and any(_same(actual, item) for item in expected)
        return found == (op == "in")
    comparable = (_number(actual) and _number(expected)) or (isinstance(actual, str) and isinstance(expected, str))
    return present and comparable and ORDERED[op](actual, expected)


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps booleans apart from 0/1."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b
