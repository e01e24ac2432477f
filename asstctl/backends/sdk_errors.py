"""The SDK's errors for a whole-target call as one clear TargetError (``api_errors``), for every backend.

Imports asstctl.errors; the SDK lazily.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from asstctl.errors import TargetError

SHUTDOWN_HINT = (
    "use the embedded default (drop --target/--base-url), run `asstctl serve` and pass its URL with --base-url, "
    "or point at an Azure OpenAI or other Assistants-compatible base URL"
)


NO_KEY = "asstctl-no-key"  # sent to a loopback server when $OPENAI_API_KEY is unset: `asstctl serve` without --api-key takes any


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
