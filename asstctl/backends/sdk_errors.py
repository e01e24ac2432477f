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


@contextmanager
def api_errors(client: Any, doing: str = "listing assistants") -> Iterator[None]:
    """Turn the SDK's errors for a whole-target call (``doing``: what asstctl was doing) into one clear TargetError."""
    import openai

    where = str(getattr(client, "base_url", "the target")).rstrip("/")
    try:
        yield
    except openai.AuthenticationError:
        raise TargetError(f"{where} refused the API key (401): check $OPENAI_API_KEY "
                          "(or the variable named by the target's api_key_env)") from None
    except openai.PermissionDeniedError:
        raise TargetError(f"{where} denied access to assistants (403): check the key's project and permissions") from None
    except openai.NotFoundError:
        raise TargetError(not_found(where)) from None
    except openai.APIConnectionError as error:
        raise TargetError(f"cannot reach {where} ({_cause(error)}): is the server running? "
                          "Start one with `asstctl serve`, or drop --base-url to use the embedded default") from None
    except openai.APIStatusError as error:
        raise TargetError(f"{where} answered {error.status_code} while {doing}: {_cause(error)}") from None


def not_found(where: str) -> str:
    """Why a base URL answered 404 on /assistants, and what to do: OpenAI's shutdown only for OpenAI's API."""
    from urllib.parse import urlsplit

    parts = urlsplit(where)
    if (parts.hostname or "").endswith("api.openai.com"):
        return (f"{where} does not serve the Assistants API (404 on /assistants; OpenAI's own API "
                f"has answered 404 since the 2026-08-26 shutdown): {SHUTDOWN_HINT}")
    if not parts.path.rstrip("/").endswith("/v1") and "/openai" not in parts.path:
        return (f"{where} does not serve the Assistants API (404 on /assistants); base URLs usually end in /v1: "
                f"did you mean `{where}/v1`? (`asstctl serve` prints its base URL)")
    return (f"{where} does not serve the Assistants API (404 on {where}/assistants): check the base URL "
            "(`asstctl serve` prints its own), or point at another Assistants-compatible server")


def _cause(error: BaseException) -> str:
    """The innermost message of an error chain (e.g. "Connection refused"), never a key."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:200]
