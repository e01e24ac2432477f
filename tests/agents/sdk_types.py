"""The Agents API's contract, from the openai SDK's own types (the OpenAPI document has no /agents paths).

* ``request_problems(body, Params)``: a request body against the SDK's ``TypedDict`` params (e.g.
  ``AgentCreateParams``): no key the type does not define (wire names: ``async``), every required key,
  literals, and the JSON types of the values, unions tried member by member;
* ``response_problems(data, Model)``: an object or event the server sends against the SDK's pydantic
  model (``Agent``, ``AgentSession``, the ``AgentSessionEvent`` union...), validated in strict JSON mode (missing
  fields, wrong JSON types with no coercion: ``"1"`` is not an integer nor ``1`` a boolean, unknown discriminators)
  plus no field the model does not define, at any depth;
* ``ErrorBody``: an error response's body, ``{"error": ErrorObject}`` (what the SDK reads into ``APIStatusError``).
"""

from __future__ import annotations

import collections.abc
import functools
import json
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from pydantic import BaseModel, TypeAdapter, ValidationError
from typing_extensions import NotRequired, Required, is_typeddict

from openai._models import BaseModel as SDKModel
from openai._utils import PropertyInfo
from openai.types.shared import ErrorObject

_SIMPLE = {str: str, int: int, float: (int, float), bool: bool, dict: dict, list: list}
_SEQUENCES = (list, collections.abc.Iterable, collections.abc.Sequence)


def request_problems(body: Any, params: Any, where: str = "body") -> list[str]:
    return _check(body, params, where)


def _check(value: Any, kind: Any, where: str) -> list[str]:
    origin = get_origin(kind)
    if kind in (Any, object):
        return []
    if origin is typing.Annotated or origin in (Required, NotRequired):
        return _check(value, get_args(kind)[0], where)
    if origin in (Union, types.UnionType):
        return _union(value, get_args(kind), where)
    if origin is Literal:
        return [] if value in get_args(kind) else [f"{where}: {value!r} is not one of {get_args(kind)}"]
    if kind is type(None):
        return [] if value is None else [f"{where}: must be null"]
    if is_typeddict(kind):
        return _typed_dict(value, kind, where)
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            return [f"{where}: must be an object"]
        return [p for key, item in value.items() for p in _check(item, get_args(kind)[1], f"{where}.{key}")]
    if origin in _SEQUENCES or getattr(origin, "__name__", "") == "SequenceNotStr":
        if not isinstance(value, list):
            return [f"{where}: must be a list"]
        return [p for i, item in enumerate(value) for p in _check(item, get_args(kind)[0], f"{where}[{i}]")]
    if kind in _SIMPLE:
        wrong = not isinstance(value, _SIMPLE[kind]) or (kind is not bool and isinstance(value, bool))
        return [f"{where}: must be {kind.__name__} (got {value!r:.60})"] if wrong else []
    return []


def _union(value: Any, members: tuple, where: str) -> list[str]:
    if value is None:
        return [] if type(None) in members else [f"{where}: must not be null"]
    found = [_check(value, member, where) for member in members if member is not type(None)]
    return [] if any(not problems for problems in found) else min(found, key=len)


def _typed_dict(value: Any, kind: Any, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: must be an object (got {value!r:.60})"]
    wire, required = _fields(kind)
    problems = [f"{where}.{key}: not a field of {kind.__name__}" for key in value if key not in wire]
    problems += [f"{where}.{key}: required by {kind.__name__}" for key in sorted(required - set(value))]
    return problems + [p for key, item in value.items() if key in wire for p in _check(item, wire[key], f"{where}.{key}")]


@functools.lru_cache(maxsize=None)
def _adapter(model: Any) -> TypeAdapter:
    return TypeAdapter(model)  # building one for a union of 34 events takes a while: once per type


@functools.lru_cache(maxsize=None)
def _fields(kind: Any) -> tuple[dict[str, Any], frozenset[str]]:
    """A TypedDict's keys on the wire (aliases applied) with their types, and the required ones."""
    wire, required = {}, set()
    for name, hint in get_type_hints(kind, include_extras=True).items():
        alias = next((meta.alias for meta in getattr(hint, "__metadata__", ()) if isinstance(meta, PropertyInfo)
                      and meta.alias), None)
        wire[alias or name] = hint
        # The SDK's modules postpone annotations, so TypedDict cannot see `Required[...]` (its __required_keys__
        # stays empty under total=False): the resolved hint says it.
        marked = get_origin(hint.__origin__ if get_origin(hint) is typing.Annotated else hint)
        if marked is Required or (name in kind.__required_keys__ and marked is not NotRequired):
            required.add(alias or name)
    return wire, frozenset(required)


class ErrorBody(SDKModel):
    """An error response's body as the SDK reads it (``APIStatusError.body``): ``{"error": {...}}``."""

    error: ErrorObject


def response_problems(data: Any, model: Any, where: str = "response") -> list[str]:
    try:  # strict JSON: what the SDK's client gets on the wire, no coercion of "1" to 1 or 1 to True
        parsed = _adapter(model).validate_json(json.dumps(data), strict=True)
    except ValidationError as error:
        return [f"{where}: {error}"]
    return _extras(parsed, where)


def _extras(value: Any, where: str) -> list[str]:
    if isinstance(value, BaseModel):
        problems = [f"{where}.{key}: not a field of {type(value).__name__}" for key in (value.model_extra or {})]
        for name in type(value).model_fields:
            problems += _extras(getattr(value, name), f"{where}.{name}")
        return problems
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _extras(item, f"{where}[{i}]")]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _extras(item, f"{where}.{key}")]
    return []
