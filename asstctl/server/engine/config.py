"""Settings of the upstream engine: from ``asstctl serve`` flags or the ``engine:`` section of asstctl.yaml.

    engine:
      upstream: http://localhost:11434/v1      # an OpenAI-compatible Chat Completions API
      api_key_env: OLLAMA_API_KEY              # the variable holding its key (never the key itself)
      model_map: {"gpt-4*": "llama3.1:8b"}     # fnmatch pattern on the run's model -> upstream model
      azure: {api_version: "2024-10-21", deployments: {"gpt-4o": "my-gpt4o"}}  # Azure OpenAI only
      context_windows: {"gpt-4*": 131072}      # run's model pattern -> tokens of the model it maps to (truncation)
      embeddings: {model: text-embedding-3-small}  # file_search's dense retrieval, on the same upstream
      dialect: llama.cpp                       # a named profile of its quirks (default: learned from its refusals)
      limits: {idle_seconds: 120, turn_seconds: 600, reply_chars: 1000000}  # bounds on one model call
      api: responses                           # each turn on the Responses API (default: chat, Chat Completions)

Nothing here reads a key: :func:`resolve_key` does, once, when the engine is built. Imports the
standard library, ``asstctl.errors`` and, of this package, ``dialects`` and ``limits``.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from asstctl.errors import ConfigError
from asstctl.server.engine.dialects import PROFILES, profile
from asstctl.server.engine.limits import Limits

ENGINE_KEYS = ("upstream", "api_key_env", "model_map", "azure", "embeddings", "context_windows", "max_model_calls",
               "dialect", "limits", "api")
LIMIT_KEYS = ("idle_seconds", "turn_seconds", "reply_chars")
APIS = ("chat", "responses")  # the upstream API each turn runs on: Chat Completions, or the Responses API
AZURE_KEYS = ("api_version", "deployments")
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_AZURE_KEY_ENV = "AZURE_OPENAI_API_KEY"
LOOPBACK_PLACEHOLDER = "asstctl-no-key"  # sent to a loopback upstream when no key is set


@dataclass
class UpstreamConfig:
    url: str  # base URL: ".../v1" for OpenAI-compatible servers, the resource endpoint for Azure
    api_key_env: str | None = None
    model_map: list[tuple[str, str]] = field(default_factory=list)  # (fnmatch pattern, model), in order
    azure_api_version: str | None = None  # set: Azure OpenAI paths and the ``api-key`` header
    azure_deployments: dict[str, str] = field(default_factory=dict)  # model -> deployment (default: the model)
    context_windows: dict[str, int] = field(default_factory=dict)  # run's model pattern -> tokens (ServerConfig)
    embeddings: dict[str, Any] = field(default_factory=dict)  # {"model": name}: dense retrieval on this upstream
    max_model_calls: int | None = None  # model calls per run before it fails (ServerConfig; None: its default)
    dialect: str | None = None  # a named profile (dialects.PROFILES); None: learned from the upstream's refusals
    limits: Limits = field(default_factory=Limits)  # idle timeout, whole-turn limit, reply size cap
    api: str = "chat"  # one of APIS: "responses" runs each turn as POST /responses (engine/responses.py)

    @property
    def is_azure(self) -> bool:
        return self.azure_api_version is not None

    @property
    def is_openai(self) -> bool:
        """OpenAI's own API or Azure OpenAI (they know ``max_completion_tokens``; local servers may not)."""
        return self.is_azure or (urlsplit(self.url).hostname or "").endswith("openai.com")

    @property
    def host(self) -> str:
        """The upstream as named in messages: scheme, host and port, never credentials or path."""
        parts = urlsplit(self.url)
        host = parts.hostname or self.url
        return f"{host}:{parts.port}" if parts.port else host

    @property
    def key_env(self) -> str:
        return self.api_key_env or (DEFAULT_AZURE_KEY_ENV if self.is_azure else DEFAULT_KEY_ENV)

    @property
    def embeddings_model(self) -> str | None:
        """The model file_search embeds with on this upstream (None: lexical retrieval only)."""
        return self.embeddings.get("model") or None

    def upstream_model(self, model: str) -> str:
        """The run's model as the upstream knows it: the first matching ``model_map`` pattern wins."""
        for pattern, target in self.model_map:
            if fnmatch.fnmatchcase(model, pattern):
                return target
        return model

    def deployment(self, upstream_model: str) -> str:
        return self.azure_deployments.get(upstream_model, upstream_model)

    def context_window(self, model: str) -> int | None:
        for pattern, tokens in self.context_windows.items():
            if fnmatch.fnmatchcase(model, pattern):
                return tokens
        return None


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, where: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{where}: `{url}` is not an http(s) URL",
            hint="Give the upstream's base URL, e.g. http://localhost:11434/v1 or https://api.openai.com/v1.",
        )
    if parts.username or parts.password:
        raise ConfigError(f"{where}: the upstream URL must not carry credentials",
                          hint="Put the key in an environment variable and name it with --upstream-key-env / api_key_env.")
    return url.rstrip("/")


def resolve_key(config: UpstreamConfig) -> str:
    """The upstream's key from its environment variable; a loopback upstream may go without one."""
    key = (os.environ.get(config.key_env) or "").strip()
    if key:
        return key
    if is_loopback_url(config.url):
        return LOOPBACK_PLACEHOLDER
    raise ConfigError(
        f"the upstream {config.host} needs a key and ${config.key_env} is {'blank' if config.key_env in os.environ else 'not set'}",
        hint=f"export {config.key_env}=... before starting (or name another variable with "
             "--upstream-key-env / engine.api_key_env). Keys are never taken on the command line.",
    )


# -- command line ---------------------------------------------------------------------------
def parse_model_map_items(items: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """``PATTERN=MODEL`` items of ``--model-map``, in the order given."""
    pairs = []
    for item in items:
        pattern, sep, model = item.partition("=")
        if not sep or not pattern.strip() or not model.strip():
            raise ConfigError(f"--model-map `{item}`: expected PATTERN=MODEL, e.g. --model-map 'gpt-4*=llama3.1:8b'")
        pairs.append((pattern.strip(), model.strip()))
    return pairs


def from_flags(upstream: str, key_env: str | None, model_map: list[str] | tuple[str, ...],
               azure_api_version: str | None = None, embeddings_model: str | None = None,
               dialect: str | None = None, api: str | None = None) -> UpstreamConfig:
    return UpstreamConfig(
        dialect=dialect_name(dialect, "--upstream-dialect") if dialect else None,
        api=upstream_api("--upstream-api", api or "chat"),
        url=check_url(upstream, "--upstream"),
        api_key_env=_env_name(key_env, "--upstream-key-env") if key_env else None,
        model_map=parse_model_map_items(model_map),
        azure_api_version=azure_api_version or None,
        embeddings=embeddings_section("--embeddings-model", {"model": embeddings_model}) if embeddings_model else {},
    )


# -- asstctl.yaml ---------------------------------------------------------------------------
def from_project_section(path: Any, section: Any) -> UpstreamConfig | None:
    """The ``engine:`` section of asstctl.yaml; None when it names no upstream (offline engine)."""
    if section is None:
        return None
    where = f"{path}: engine"
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected a mapping, e.g. `engine: {{upstream: http://localhost:11434/v1}}`")
    unknown = sorted(set(section) - set(ENGINE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key `{unknown[0]}` (known: {', '.join(ENGINE_KEYS)})")
    if not section.get("upstream"):
        return None
    azure = _azure(where, section.get("azure"))
    return UpstreamConfig(
        url=check_url(_string(where, "upstream", section["upstream"]), f"{where}.upstream"),
        api_key_env=_env_name(_string(where, "api_key_env", section["api_key_env"]), f"{where}.api_key_env")
        if section.get("api_key_env") else None,
        model_map=list(_string_map(where, "model_map", section.get("model_map")).items()),
        azure_api_version=azure[0],
        azure_deployments=azure[1],
        context_windows=_context_windows(where, section.get("context_windows")),
        embeddings=embeddings_section(f"{where}.embeddings", section.get("embeddings")),
        max_model_calls=section.get("max_model_calls"),  # the asstctl.yaml schema checked it is a whole number
        dialect=dialect_name(_string(where, "dialect", section["dialect"]), f"{where}.dialect")
        if section.get("dialect") else None,
        limits=_limits(f"{where}.limits", section.get("limits")),
        api=upstream_api(f"{where}.api", section.get("api") or "chat"),
    )


def dialect_name(name: str, where: str) -> str:
    """A known dialect profile's name, or a ConfigError listing them."""
    if profile(name) is None:
        raise ConfigError(f"{where}: unknown dialect `{name}` (known: {', '.join(PROFILES)})",
                          hint="Leave it out to have the dialect learned from the upstream's refusals.")
    return name


def _limits(where: str, value: Any) -> Limits:
    if value is None:
        return Limits()
    if not isinstance(value, dict) or set(value) - set(LIMIT_KEYS):
        raise ConfigError(f"{where}: expected a mapping with {', '.join(LIMIT_KEYS)}, e.g. `limits: {{turn_seconds: 900}}`")
    for key, number in value.items():
        if isinstance(number, bool) or not isinstance(number, (int, float)) or number <= 0:
            raise ConfigError(f"{where}.{key}: expected a positive number, got {number!r}")
    if "reply_chars" in value:
        value = {**value, "reply_chars": int(value["reply_chars"])}
    return Limits(**value)


def upstream_api(where: str, value: Any) -> str:
    if value not in APIS:
        raise ConfigError(f"{where}: `{value}` is not an upstream API (known: {', '.join(APIS)})",
                          hint="`chat` sends each turn to /chat/completions, `responses` to /responses.")
    return value


def _azure(where: str, value: Any) -> tuple[str | None, dict[str, str]]:
    if value is None:
        return None, {}
    if not isinstance(value, dict) or not value.get("api_version"):
        raise ConfigError(f"{where}.azure: expected a mapping with `api_version`, e.g. `azure: {{api_version: \"2024-10-21\"}}`")
    unknown = sorted(set(value) - set(AZURE_KEYS))
    if unknown:
        raise ConfigError(f"{where}.azure: unknown key `{unknown[0]}` (known: {', '.join(AZURE_KEYS)})")
    return str(value["api_version"]), _string_map(f"{where}.azure", "deployments", value.get("deployments"))


def embeddings_section(where: str, value: Any) -> dict[str, str]:
    """``{model: NAME}``: the embeddings model file_search uses on the upstream ({} when not set)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or set(value) - {"model"}:
        raise ConfigError(f"{where}: expected `{{model: NAME}}`, e.g. `embeddings: {{model: text-embedding-3-small}}`")
    model = value.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"{where}: the embeddings model must be a non-empty name, e.g. text-embedding-3-small")
    return {"model": model.strip()}


def _string(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key}: expected a string, got {type(value).__name__}")
    return value


def _string_map(where: str, key: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(f"{where}.{key}: expected a mapping of names to names, e.g. {{\"gpt-4*\": \"llama3.1:8b\"}}")
    return dict(value)


def _context_windows(where: str, value: Any) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v > 0 for k, v in value.items()
    ):
        raise ConfigError(f"{where}.context_windows: expected model patterns mapped to token counts, e.g. {{\"llama3*\": 8192}}")
    return dict(value)


def _env_name(name: str, where: str) -> str:
    if not name.replace("_", "").isalnum() or not name.isascii() or name[0].isdigit():
        raise ConfigError(
            f"{where}: expected the name of an environment variable (letters, digits, _), not a key",
            hint="Name the variable that holds the key (e.g. OPENAI_API_KEY), never the key itself.",
        )
    return name
