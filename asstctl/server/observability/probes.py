"""``/readyz``: does the database answer, and (opt-in, ``--ready-checks-upstream``) the model upstream?

Each check runs off the loop, one at a time per check however many probes arrive (a probe that comes while
one is in flight waits for that one), and a probe waits ``READY_TIMEOUT`` seconds at most for each: a
replica whose database or upstream hangs is reported unready, never left hanging itself. The upstream check
is one ``GET {upstream}/models`` (Azure: ``GET {endpoint}/openai/models?api-version=...``), the cheapest call
every OpenAI-compatible server answers; only its status matters (200: ready), its body is not read.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from typing import Any, Callable

from asstctl.server.aio import within
from asstctl.errors import ConfigError

READY_TIMEOUT = 2.0  # seconds /readyz waits for each check


class Probes:
    def __init__(self, state: Any):
        self.state = state
        self.upstream = _upstream_request(state) if getattr(state.config, "ready_checks_upstream", False) else None
        self._running: dict[str, asyncio.Future] = {}

    async def ready(self) -> tuple[bool, str]:
        checks = [self._check("database", lambda: self.state.store._fetch("SELECT 1"))]
        if self.upstream is not None:
            checks.append(self._check("upstream", self._get_models))
        results = await asyncio.gather(*checks)
        return all(ok for ok, _ in results), "; ".join(detail for _, detail in results)

    async def _check(self, name: str, call: Callable[[], Any]) -> tuple[bool, str]:
        try:
            await one_at_a_time(self._running, name, call, READY_TIMEOUT)
        except asyncio.TimeoutError:
            return False, f"the {name} did not answer within {READY_TIMEOUT:g} s"
        except _Unready as why:
            return False, f"the {name} {why}"
        except Exception as error:  # noqa: BLE001 - any failure of the check means not ready
            return False, f"the {name} failed: {type(error).__name__}"
        return True, f"the {name} answers"

    def _get_models(self) -> None:
        url, headers = self.upstream
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # as the engine: no proxy
        try:
            with opener.open(urllib.request.Request(url, headers=headers), timeout=READY_TIMEOUT) as answer:
                status = answer.status
        except urllib.error.HTTPError as error:
            status = error.code
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise _Unready(f"cannot be reached: {type(reason).__name__}") from None
        if status != 200:
            raise _Unready(f"answered GET /models with HTTP {status}")


async def one_at_a_time(running: dict[str, asyncio.Future], name: str, call: Callable[[], Any],
                         timeout: float) -> Any:
    """``call()``'s result, off the loop, waited for ``timeout`` seconds at most (``asyncio.TimeoutError``);
    one call per ``name`` in flight (kept in ``running``): whoever comes while it runs waits for that one."""
    future = running.get(name)
    if future is None or future.done():
        future = running[name] = asyncio.ensure_future(asyncio.to_thread(call))
    return await within(asyncio.shield(future), timeout)


class _Unready(Exception):
    pass


def _upstream_request(state: Any) -> tuple[str, dict[str, str]]:
    """The URL and headers of the upstream's GET /models (never logged: the headers hold its key)."""
    config = getattr(state.engine, "config", None)
    if getattr(config, "url", None) is None:
        raise ConfigError("--ready-checks-upstream needs an upstream, and this server answers with the offline "
                          "engine", hint="Give --upstream URL (or engine.upstream in asstctl.yaml), or drop "
                                         "--ready-checks-upstream.")
    key = getattr(state.engine, "secret", None)
    if config.is_azure:
        return (f"{config.url.rstrip('/')}/openai/models?api-version={config.azure_api_version}",
                {"api-key": key} if key else {})
    return f"{config.url.rstrip('/')}/models", {"authorization": f"Bearer {key}"} if key else {}
