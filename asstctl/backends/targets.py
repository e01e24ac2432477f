"""Targets: where assistants live, and the SDK client that reaches them.

* embedded (the default): asstctl's own server, started in-process on a loopback
  port, data in ``.asstctl/server.sqlite3`` of the project — no key, no network;
* any Assistants-compatible server by ``base_url`` (``--base-url`` / ``OPENAI_BASE_URL``);
* Azure OpenAI (``azure: {api_version: ...}`` on the target).

The openai SDK is imported here, lazily, and nowhere on the CLI's start-up path; a target's client is a
:class:`~asstctl.backends.lean.LazyClient`, which imports it only when a call needs it (not for a no-op plan).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from asstctl.backends.lean import LazyClient
from asstctl.errors import ConfigError, TargetError
from asstctl.spec.project import Project, TargetConfig

@dataclass
class Target:
    name: str
    label: str  # for humans: "embedded (.asstctl/server.sqlite3)" or the base URL; never a key
    client: Any  # openai.OpenAI
    server: Any = None  # EmbeddedServer when embedded


def resolve_config(project: Project, name: str | None, base_url: str | None) -> TargetConfig:
    """The target to use: --base-url wins, then --target, then OPENAI_BASE_URL, then embedded."""
    if base_url:
        return TargetConfig(name="base-url", base_url=checked_url(base_url, "--base-url"))
    if name:
        if name not in project.targets:
            from asstctl.spec.files import shown

            known = ", ".join(sorted(project.targets)) or "none are defined"
            raise ConfigError(
                f"unknown target `{name}` (known: {known})",
                hint=f"Define it under `targets:` in {shown(project.root / 'asstctl.yaml')}.",
            )
        return project.targets[name]
    env_url = os.environ.get("OPENAI_BASE_URL")
    if env_url:
        return TargetConfig(name="env", base_url=checked_url(env_url, "$OPENAI_BASE_URL"))
    return TargetConfig(name="embedded", embedded=True)


@contextmanager
def open_target(
    project: Project,
    name: str | None = None,
    base_url: str | None = None,
    *,
    max_retries: int = 2,
    timeout: float = 60.0,
) -> Iterator[Target]:
    config = resolve_config(project, name, base_url)
    if config.embedded:
        with _embedded(project, config, max_retries, timeout) as target:
            yield target
        return
    target = _remote(config, max_retries, timeout)
    with target.client:  # closes its connection pool
        yield target


@contextmanager
def _embedded(project: Project, config: TargetConfig, max_retries: int, timeout: float) -> Iterator[Target]:
    from asstctl.spec.rules_check import check_rules
    from asstctl.server.embedded import DEFAULT_DB, start_server

    check_rules(project)
    db = project.root / (config.db or os.path.join(".asstctl", DEFAULT_DB))
    rules = str(project.engine_rules) if project.engine_rules else None
    server = start_server(str(db), rules_path=rules, upstream=project.engine)
    try:
        client = LazyClient(server.base_url, server.api_key, max_retries=max_retries, timeout=timeout)
        label = f"embedded server ({os.path.relpath(db, project.root)})"
        with client:
            yield Target(name=config.name, label=label, client=client, server=server)
    finally:
        server.stop()


def checked_url(url: str, origin: str) -> str:
    """``url`` when it is an http(s) URL; else a ConfigError at once, with the URL it probably means."""
    from urllib.parse import urlsplit

    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.netloc:
        return text
    bare = text.split("://", 1)[-1].strip("/")
    guess = f"http://{bare}" + ("" if bare.endswith("/v1") or "/" in bare else "/v1")
    raise ConfigError(f"{origin} `{url}` is not a URL: it needs http:// or https:// (did you mean `{guess}`?)",
                      hint="A base URL names the API root, e.g. http://127.0.0.1:8321/v1 for `asstctl serve`.")


NO_KEY = "asstctl-no-key"  # sent to a loopback server when $OPENAI_API_KEY is unset: `asstctl serve` without --api-key takes any


def is_loopback(url: str | None) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(url or "").hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _remote(config: TargetConfig, max_retries: int, timeout: float) -> Target:
    if is_openai(config.base_url) and not config.azure_api_version:
        raise TargetError(f"target `{config.name}` is {config.base_url}, OpenAI's own API, whose Assistants API "
                          f"was shut down on 2026-08-26 (it answers 404): {SHUTDOWN_HINT}")
    key_env = config.api_key_env or ("AZURE_OPENAI_API_KEY" if config.azure_api_version else "OPENAI_API_KEY")
    # a loopback server may need no key; a target that names its key variable does want that one
    api_key = os.environ.get(key_env) or (NO_KEY if is_loopback(config.base_url) and not config.api_key_env else None)
    if not api_key:
        raise ConfigError(
            f"target `{config.name}` ({config.base_url}) needs an API key and ${key_env} is not set",
            hint=f"Set it first: export {key_env}=...  (or use the embedded server: drop --target/--base-url)",
        )
    if config.azure_api_version:
        from openai import AzureOpenAI

        client = AzureOpenAI(
            azure_endpoint=config.base_url,
            api_key=api_key,
            api_version=config.azure_api_version,
            max_retries=max_retries,
            timeout=timeout,
        )
    else:
        client = LazyClient(
            config.base_url,
            api_key,
            organization=config.organization or os.environ.get("OPENAI_ORG_ID"),
            project=config.project or os.environ.get("OPENAI_PROJECT_ID"),
            max_retries=max_retries,
            timeout=timeout,
        )
    return Target(name=config.name, label=str(config.base_url), client=client)


def make_client(base_url: str, api_key: str, **options: Any):
    from openai import OpenAI

    return OpenAI(base_url=base_url, api_key=api_key, **options)


SHUTDOWN_HINT = (
    "use the embedded default (drop --target/--base-url), run `asstctl serve` and pass its URL with --base-url, "
    "or point at an Azure OpenAI or other Assistants-compatible base URL"
)


@contextmanager
def api_errors(client: Any, doing: str = "listing assistants") -> Iterator[None]:
    """Turn the SDK's errors for a whole-target call (``doing``: what asstctl was doing) into one clear TargetError."""
    import openai

    try:
        yield
    except openai.APIStatusError as error:
        raise TargetError(whole_target_problem(client, doing, error.status_code, _cause(error))) from None
    except openai.APIConnectionError as error:
        raise TargetError(whole_target_problem(client, doing, None, _cause(error))) from None


def read_error(client: Any, failure: Any, doing: str, not_found_message: str | None = None) -> TargetError:
    """The TargetError of a failed read of the lean client (``asstctl.backends.lean.HTTPFailure``)."""
    if failure.status == 404 and not_found_message:
        return TargetError(not_found_message)
    return TargetError(whole_target_problem(client, doing, failure.status, failure.message))


def whole_target_problem(client: Any, doing: str, status: int | None, cause: str) -> str:
    """What a failed whole-target call means and what to do (``status`` None: no answer at all)."""
    where = str(getattr(client, "base_url", "the target")).rstrip("/")
    if status == 401 and getattr(client, "api_key", None) == NO_KEY:
        return (f"{where} wants an API key (401) and $OPENAI_API_KEY is not set: export "
                "OPENAI_API_KEY=<the server's key>, or name its variable with the target's api_key_env in asstctl.yaml")
    if status == 401:
        return f"{where} refused the API key (401): check $OPENAI_API_KEY (or the variable named by the target's api_key_env)"
    if status == 403:
        return f"{where} denied access to assistants (403): check the key's project and permissions"
    if status == 404:
        return not_found(where)
    if status is None:
        return (f"cannot reach {where} ({cause}): is the server running? "
                "Start one with `asstctl serve`, or drop --base-url to use the embedded default")
    return f"{where} answered {status} while {doing}: {cause}"


def not_found(where: str) -> str:
    """Why a base URL answered 404 on /assistants, and what to do: OpenAI's shutdown only for OpenAI's API."""
    from urllib.parse import urlsplit

    parts = urlsplit(where)
    if is_openai(where):
        return (f"{where} does not serve the Assistants API (404 on /assistants; OpenAI's own API "
                f"has answered 404 since the 2026-08-26 shutdown): {SHUTDOWN_HINT}")
    if not parts.path.rstrip("/").endswith("/v1") and "/openai" not in parts.path:
        return (f"{where} does not serve the Assistants API (404 on /assistants); base URLs usually end in /v1: "
                f"did you mean `{where}/v1`? (`asstctl serve` prints its base URL)")
    return (f"{where} does not serve the Assistants API (404 on {where}/assistants): check the base URL "
            "(`asstctl serve` prints its own), or point at another Assistants-compatible server")


def is_openai(url: str | None) -> bool:
    """Whether ``url`` is OpenAI's own API (api.openai.com), where the Assistants API no longer exists."""
    from urllib.parse import urlsplit

    host = urlsplit(url or "").hostname or ""
    return host == "api.openai.com" or host.endswith(".api.openai.com")


def _cause(error: BaseException) -> str:
    """The innermost message of an error chain (e.g. "Connection refused"), never a key."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:200]
