"""Targets: where assistants live, and the SDK client that reaches them.

* embedded (the default): asstctl's own server, started in-process on a loopback
  port, data in ``.asstctl/server.sqlite3`` of the project — no key, no network;
* any Assistants-compatible server by ``base_url`` (``--base-url`` / ``OPENAI_BASE_URL``);
* Azure OpenAI (``azure: {api_version: ...}`` on the target);
* OpenAI's beta Agents API (``api: agents`` on the target): ``Target.client`` is then the Agents backend
  (asstctl.backends.agents), which the reconciler and the runner take wherever they take a client.

The openai SDK is imported here, lazily, and nowhere on the CLI's start-up path; a target's client is a
:class:`~asstctl.backends.lean.LazyClient`, which imports it only when a call needs it (not for a no-op plan).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from asstctl.backends.lean import LazyClient
from asstctl.backends.sdk_errors import NO_KEY, SHUTDOWN_HINT, is_openai
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
        if name and getattr(project.targets.get(name), "api", None) == "agents":  # --base-url is an Assistants API
            raise ConfigError(f"--base-url and --target {name} together: --base-url names an Assistants API "
                              f"endpoint, and target `{name}` is an `api: agents` target",
                              hint=f"Drop --base-url, or set `base_url` of target `{name}` in asstctl.yaml.")
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
    if config.api != "agents" and is_openai(config.base_url) and not config.azure_api_version:
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
        client = (make_client if config.api == "agents" else LazyClient)(
            config.base_url,
            api_key,
            organization=config.organization or os.environ.get("OPENAI_ORG_ID"),
            project=config.project or os.environ.get("OPENAI_PROJECT_ID"),
            max_retries=max_retries,
            timeout=timeout,
        )
    if config.api == "agents":
        from asstctl.backends.agents import Agents

        return Target(name=config.name, label=f"{config.base_url} (Agents API)", client=Agents(client))
    return Target(name=config.name, label=str(config.base_url), client=client)


def make_client(base_url: str, api_key: str, **options: Any):
    from openai import OpenAI

    return OpenAI(base_url=base_url, api_key=api_key, **options)
