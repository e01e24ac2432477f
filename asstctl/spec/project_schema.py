"""The JSON Schema (draft 2020-12) of ``asstctl.yaml``, the project file.

Validated like the specs (asstctl.spec.schema formats the errors: ``path:line:col``, did-you-mean for a
misspelled key), so ``projcet:`` or ``targets: {stg: {base_ur: ...}}`` is an error instead of a silently
ignored setting. ``asstctl schema --kind project`` prints it. Imports only asstctl.spec.schema.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

_STRING = {"type": "string", "minLength": 1}


def _text(description: str) -> dict[str, Any]:
    return {**_STRING, "description": description}


def _mapping(values: dict[str, Any], description: str) -> dict[str, Any]:
    """A mapping of free names (model patterns, deployment names...) to ``values``."""
    return {"type": "object", "additionalProperties": values, "description": description}


def _section(properties: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties, "description": description,
            **extra}


_AZURE = _section({"api_version": _text("The Azure OpenAI API version, e.g. \"2024-05-01-preview\".")},
                  "Azure OpenAI: `{api_version: ...}`.", required=["api_version"])
_TARGET = _section({
    "api": {"enum": ["assistants", "agents"],
            "description": "The API the target serves: `assistants` (the default) or `agents`, OpenAI's beta Agents "
                           "API (docs/agents.md)."},
    "embedded": {"type": "boolean", "description": "asstctl's own server, data under .asstctl/ (the default)."},
    "base_url": {**_STRING, "pattern": "^https?://",
                 "description": "An Assistants-compatible endpoint, e.g. http://127.0.0.1:8321/v1.",
                 "x-messages": {"pattern": "{name} must start with http:// or https:// (e.g. http://127.0.0.1:8321/v1)"}},
    "api_key_env": _text("The environment variable holding the key (never the key itself)."),
    "organization": _text("The OpenAI organization id header."),
    "openai_project": _text("The OpenAI project id header."),
    "azure": _AZURE,
    "db": _text("Embedded only: the database path, relative to the project root."),
}, "One place assistants live: `base_url` and `api_key_env`, or `embedded: true`.")
_ENGINE = _section({
    "upstream": _text("The Chat Completions endpoint runs are answered by, e.g. https://api.openai.com/v1."),
    "api_key_env": _text("The environment variable holding the upstream's key."),
    "model_map": _mapping(_STRING, "Model pattern → the upstream model that answers it."),
    "azure": _section({
        "api_version": _text("The Azure OpenAI API version."),
        "deployments": _mapping(_STRING, "Model name → Azure deployment name."),
    }, "Azure OpenAI as the upstream."),
    "embeddings": _section({"model": _text("The embeddings model file_search uses.")}, "Embeddings for file_search."),
    "context_windows": _mapping({"type": "integer", "minimum": 1}, "Model pattern → its context window in tokens."),
    "max_model_calls": {"type": "integer", "minimum": 1, "description": "Model calls one run may make at most."},
    "dialect": _text("A named profile of the upstream's quirks (openai, azure, llama.cpp, vllm, ollama, ...); "
                     "default: learned from its refusals."),
    "limits": _section({
        "idle_seconds": {"type": "number", "minimum": 0.1, "description": "Longest silence between chunks."},
        "turn_seconds": {"type": "number", "minimum": 0.1, "description": "Longest model call."},
        "reply_chars": {"type": "integer", "minimum": 1, "description": "Largest reply; beyond it ends incomplete."},
    }, "Bounds on one model call (docs/engine.md#faults)."),
    "api": {"type": "string", "enum": ["chat", "responses"],
            "description": "The upstream API turns run on: `chat` (Chat Completions, the default) or `responses`."},
}, "The embedded server's model engine (docs/engine.md).")
_PRICE = _section({"prompt": {"type": "number", "minimum": 0, "description": "Price of 1M prompt (input) tokens."},
                   "completion": {"type": "number", "minimum": 0, "description": "Price of 1M completion tokens."}},
                  "Prices of a model per 1M tokens: `{prompt: 2.50, completion: 10.00}`.", minProperties=1)
_TEST = _section({
    "grader": _section({"model": _text("The model that grades `rubric:` expectations, reached through engine.upstream "
                                       "(model_map applies).")}, "The model-graded expectations."),
    "prices": _mapping(_PRICE, "Model name or fnmatch pattern → prices per 1M tokens, for the cost `asstctl test` "
                               "reports (none by default: no cost shown)."),
}, "`asstctl test` settings (docs/conversations.md).")
PROPERTIES: dict[str, Any] = {
    "$schema": {"type": "string"},
    "project": {**_STRING, "pattern": r"\S", "maxLength": 512,
                "description": "The project's name; it tags everything asstctl manages: keep it stable (required).",
                "x-messages": {"pattern": "{name} must not be blank: a name for this project, e.g. `project: support-bots`",
                               "maxLength": "{name} is {value:,} characters long; it must be at most 512: it is the value "
                                            "of the `asstctl.project` tag on everything asstctl manages, and a metadata "
                                            "value holds at most 512 characters"}},
    "specs": _text("The folder of assistant specs, relative to this file (default: assistants)."),
    "vector_stores": _text("The folder of shared vector store specs (default: vector_stores)."),
    "engine_rules": _text("The offline engine's rules file (default: engine-rules.yaml when it exists)."),
    "allow_paths": {"type": "array", "items": _STRING,
                    "description": "Folders outside the project that specs may read files from, e.g. `[../shared]`."},
    "targets": _mapping(_TARGET, "Named targets for `--target NAME`."),
    "engine": _ENGINE,
    "test": _TEST,
}


@functools.lru_cache(maxsize=None)
def _schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "asstctl project file (asstctl.yaml)",
        "type": "object",
        "required": ["project"],
        "additionalProperties": False,
        "properties": PROPERTIES,
        "x-messages": {"required": "`project` is required: a name for this project, e.g. `project: support-bots`"},
    }


def shared_project_schema() -> dict[str, Any]:
    """The schema object every validation of a process shares (compiled once); do not change it."""
    return _schema()


def project_schema() -> dict[str, Any]:
    """The JSON Schema of asstctl.yaml (a fresh copy: callers may change it)."""
    return copy.deepcopy(_schema())
