"""A target's SDK client, made on first use, and the reads a plan needs without it.

Importing the openai SDK takes about a second, longer than a whole no-op ``asstctl plan`` or ``status``
may take. :class:`LazyClient` stands where the SDK client would (``target.client``): the first attribute
it does not have itself (``client.beta``, ``client.files``, ...) makes the real ``openai.OpenAI`` and
hands it on, so writes use the SDK as always. Reads of whole lists (``get_list``) go over the standard
library's HTTP instead, with the same headers, the same retries (connection dropped, 408, 409, 429,
5xx; never after a refused connection) and, for whole-target failures, the same one clear TargetError.
Every answer is bounded (``MAX_ANSWER_BYTES``, ``MAX_PAGES``). Like the SDK's HTTP client, the reads go
through the proxy of $HTTP(S)_PROXY / $ALL_PROXY unless $NO_PROXY names the host (``proxy_for``; a tunnel,
CONNECT, for https), trust the certificates it trusts (``tls_context``: $SSL_CERT_FILE, $SSL_CERT_DIR, the
system's) and follow redirects as it does (the key only to its own origin). Azure targets always use the SDK.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from asstctl import __version__

PAGE_SIZE = 100
MAX_ANSWER_BYTES = 256 << 20  # one list page of 100 assistants with 256,000-character instructions fits
MAX_PAGES = 10_000
RETRY_STATUSES = (408, 409, 429)
TRANSIENT_ATTEMPTS = 6  # as asstctl.backends.assistants_v2.TRANSIENT
MAX_REDIRECTS = 20  # as the SDK's HTTP client (httpx)
REDIRECTS = (301, 302, 303, 307, 308)
CA_FILES = ("/etc/ssl/cert.pem", "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", "/etc/pki/tls/cert.pem",
            "/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/ca-bundle.pem")  # where httpcore looks, in its order
log = logging.getLogger("asstctl.http")


class HTTPFailure(Exception):
    """A read that failed: ``status`` (None: no answer at all) and the API's message (or the cause)."""

    def __init__(self, status: int | None, message: str, refused: bool = False, retry_after: float | None = None,
                 timeout: bool = False):
        super().__init__(message)
        self.status, self.message, self.refused, self.retry_after = status, message, refused, retry_after
        self.timeout = timeout


class LazyClient:
    """An ``openai.OpenAI`` made when first needed (thread-safe); ``get_list`` reads without it."""

    def __init__(self, base_url: str, api_key: str, *, max_retries: int = 2, timeout: float = 60.0,
                 organization: str | None = None, project: str | None = None):
        self.base_url = base_url.rstrip("/") + "/"
        self.api_key = api_key
        self._options = {"max_retries": max_retries, "timeout": timeout, "organization": organization,
                         "project": project}
        self._made: Any = None
        self._making = threading.Lock()

    # --- the SDK client, on first use ------------------------------------------------------------------

    @property
    def sdk(self) -> Any:
        with self._making:
            if self._made is None:
                from openai import OpenAI

                options = {name: value for name, value in self._options.items() if value is not None}
                self._made = OpenAI(base_url=self.base_url, api_key=self.api_key, **options)
            return self._made

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_made", "_making", "_options"):
            raise AttributeError(name)
        return getattr(self.sdk, name)

    def close(self) -> None:
        if self._made is not None:
            self._made.close()

    def __enter__(self) -> "LazyClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- reads -----------------------------------------------------------------------------------------

    @property
    def reads_lean(self) -> bool:
        """Whether ``get_list`` can reach the target: directly or through an http:// proxy (a socks:// or
        https:// proxy, which the SDK's HTTP client speaks, leaves the reads to the SDK)."""
        proxy = proxy_for(self.base_url)
        return proxy is None or proxy.scheme == "http"

    def get_list(self, path: str, params: dict[str, Any] | None = None, *, paged: bool = True) -> tuple[list[dict[str, Any]], int]:
        """Every item of the list at ``path`` (``after`` the last id while ``has_more``), and the number of
        requests it took. Raises HTTPFailure."""
        items: list[dict[str, Any]] = []
        query = {"limit": PAGE_SIZE, **(params or {})} if paged else dict(params or {})
        for requests in range(1, MAX_PAGES + 1):
            page = self.get_json(path, query)
            data = page.get("data") if isinstance(page, dict) else None
            if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
                raise HTTPFailure(200, f"GET {path} answered something that is not a list of objects")
            items.extend(data)
            if not paged or not page.get("has_more") or not data:
                return items, requests
            query["after"] = data[-1].get("id")
        raise HTTPFailure(200, f"GET {path} had more than {MAX_PAGES:,} pages (MAX_PAGES)")

    def get_json(self, path: str, query: dict[str, Any]) -> Any:
        """One GET, retried as the SDK path retries a list (the SDK's ``max_retries``, each time again up to
        ``TRANSIENT_ATTEMPTS`` times: asstctl.backends.assistants_v2.transient_retries) after a dropped
        connection, 408, 409, 429 and 5xx; a timeout only ``max_retries`` times, a refused connection never."""
        retries = self._options["max_retries"]
        attempts, timeouts = TRANSIENT_ATTEMPTS * (retries + 1), 0
        for attempt in range(attempts):
            try:
                return self._get(path, query)
            except HTTPFailure as failure:
                timeouts += failure.timeout
                transient = (failure.status is None and not failure.refused) or failure.status in RETRY_STATUSES \
                    or (failure.status or 0) >= 500
                if not transient or attempt == attempts - 1 or timeouts > retries:
                    raise
                wait = failure.retry_after if failure.retry_after is not None else min(0.1 * 2 ** attempt, 2.0)
            time.sleep(wait)
        raise AssertionError("unreachable")

    def _get(self, path: str, query: dict[str, Any]) -> Any:
        from urllib.parse import urlencode, urljoin

        url = self.base_url + path.lstrip("/") + ("?" + urlencode(query) if query else "")
        headers = self._headers()
        for _ in range(MAX_REDIRECTS + 1):  # followed as the SDK follows them (httpx: GET stays GET)
            answer, body = self._exchange(url, path, headers)
            location = answer.getheader("location")
            if answer.status not in REDIRECTS or not location:
                break
            moved = urljoin(url, location)
            if _origin(moved) != _origin(url) and not _https_upgrade(url, moved):
                headers.pop("Authorization", None)  # the key goes to its own origin only, as with the SDK
            url = moved
        else:
            raise HTTPFailure(answer.status, f"GET {path} was redirected more than {MAX_REDIRECTS} times "
                                             "(MAX_REDIRECTS)")
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        if answer.status >= 400:
            raise HTTPFailure(answer.status, _message(data) or f"HTTP {answer.status}", retry_after=_retry_after(answer))
        if data is None:
            raise HTTPFailure(answer.status, f"GET {path} answered something that is not JSON")
        return data

    def _exchange(self, url: str, path: str, headers: dict[str, str]) -> tuple[Any, bytes]:
        """One request and its whole (bounded) answer, through the proxy the SDK would use (``proxy_for``)."""
        import http.client
        import ssl
        from urllib.parse import urlsplit

        parts, timeout = urlsplit(url), self._options["timeout"]
        target = parts.path + ("?" + parts.query if parts.query else "")
        proxy = proxy_for(url)
        if proxy is not None and proxy.scheme != "http":
            raise HTTPFailure(None, f"the proxy for {parts.scheme}://{parts.netloc} is not an http:// proxy")
        sent = dict(headers)
        if proxy is None and parts.scheme == "https":
            connection: Any = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                                          context=tls_context())
        elif proxy is None:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        elif parts.scheme == "https":  # a tunnel through the proxy (CONNECT), TLS to the target inside it
            connection = http.client.HTTPSConnection(proxy.hostname, proxy.port or 80, timeout=timeout,
                                                     context=tls_context())
            connection.set_tunnel(parts.hostname, parts.port, headers=_proxy_headers(proxy))
        else:  # the proxy forwards the request, asked for by its absolute URL
            connection = http.client.HTTPConnection(proxy.hostname, proxy.port or 80, timeout=timeout)
            target, sent = url, {**sent, **_proxy_headers(proxy)}
        try:
            connection.request("GET", target, headers=sent)
            answer = connection.getresponse()
            length = _length(answer)
            if length > MAX_ANSWER_BYTES:
                raise HTTPFailure(answer.status, f"GET {path} answered more than {MAX_ANSWER_BYTES >> 20} MB "
                                                 "(MAX_ANSWER_BYTES)")
            # with a length, read() raises IncompleteRead for an answer cut off (retried); without, it is bounded
            body = answer.read() if length >= 0 else answer.read(MAX_ANSWER_BYTES + 1)
        except TimeoutError:
            raise HTTPFailure(None, f"timed out after {timeout:g} s", timeout=True) from None
        except ConnectionRefusedError as error:
            raise HTTPFailure(None, str(error) or "connection refused", refused=True) from None
        except ssl.SSLCertVerificationError as error:  # never retried: trying again changes nothing
            raise HTTPFailure(None, f"{error.verify_message or error} (trusted: $SSL_CERT_FILE, $SSL_CERT_DIR or "
                                    "the system's certificates)", refused=True) from None
        except OSError as error:  # timeouts, resets, unknown hosts, a proxy refusing CONNECT
            refused = "Name or service not known" in str(error) or "nodename nor servname" in str(error)
            raise HTTPFailure(None, str(error) or type(error).__name__, refused=refused) from None
        except http.client.HTTPException as error:
            raise HTTPFailure(None, f"{type(error).__name__}: {error}") from None
        finally:
            connection.close()
        log.info('HTTP Request: GET %s://%s%s "%s %s"', parts.scheme, parts.netloc, parts.path, answer.status,
                 answer.reason)
        if len(body) > MAX_ANSWER_BYTES:
            raise HTTPFailure(answer.status, f"GET {path} answered more than {MAX_ANSWER_BYTES >> 20} MB "
                                             "(MAX_ANSWER_BYTES)")
        return answer, body

    def _headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.api_key}", "OpenAI-Beta": "assistants=v2",
                   "Accept": "application/json", "User-Agent": f"asstctl/{__version__}"}
        if self._options["organization"]:
            headers["OpenAI-Organization"] = self._options["organization"]
        if self._options["project"]:
            headers["OpenAI-Project"] = self._options["project"]
        return headers


def proxy_for(url: str) -> Any:
    """The proxy the SDK's HTTP client (httpx, which reads ``urllib.request.getproxies()``) would use for
    ``url``, as a split URL, or None: $HTTPS_PROXY / $HTTP_PROXY by scheme, else $ALL_PROXY, unless $NO_PROXY
    names the host."""
    from urllib.parse import urlsplit
    from urllib.request import getproxies, proxy_bypass_environment

    proxies = getproxies()
    parts = urlsplit(url)
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or proxy_bypass_environment(parts.hostname or "", proxies):
        return None
    return urlsplit(proxy if "://" in proxy else f"http://{proxy}")


def _proxy_headers(proxy: Any) -> dict[str, str]:
    """Proxy-Authorization for a proxy URL with user:password (never logged)."""
    import base64
    from urllib.parse import unquote

    if proxy.username is None:
        return {}
    user = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
    return {"Proxy-Authorization": "Basic " + base64.b64encode(user.encode()).decode("ascii")}


def tls_context() -> Any:
    """The certificates the SDK's HTTP client trusts (httpcore's default context): $SSL_CERT_FILE, else
    $SSL_CERT_DIR, else the system's (through truststore on Windows and macOS, when it is installed)."""
    import os
    import platform
    import ssl

    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    if platform.system() in ("Windows", "Darwin"):
        try:
            import truststore
        except ImportError:
            pass
        else:
            return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    paths = ssl.get_default_verify_paths()  # compiled in; not $SSL_CERT_* (above)
    cafile = paths.openssl_cafile if os.path.isfile(paths.openssl_cafile) else None
    capath = paths.openssl_capath if os.path.isdir(paths.openssl_capath) else None
    if not cafile and not capath:
        cafile = next(filter(os.path.isfile, CA_FILES), None)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile or capath:
        context.load_verify_locations(cafile, capath)
    return context


def _origin(url: str) -> tuple[str, str, int | None]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or ""), parts.port or {"http": 80, "https": 443}.get(parts.scheme)


def _https_upgrade(url: str, moved: str) -> bool:
    """``moved`` is ``url``'s own host on https (port 80 to 443): the SDK keeps the key for it."""
    return _origin(url) == ("http", _origin(moved)[1], 80) and _origin(moved)[0::2] == ("https", 443)


def _length(answer: Any) -> int:
    """The answer's Content-Length, -1 when it has none (or a malformed one)."""
    try:
        return int(answer.getheader("content-length") or -1)
    except ValueError:
        return -1


def _retry_after(answer: Any) -> float | None:
    """The wait a 429/503 asks for (``retry-after-ms`` or ``retry-after`` in seconds), as the SDK honours it:
    only when it is between 0 and 60 seconds."""
    for header, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            wait = float(answer.getheader(header) or "") * scale
        except ValueError:
            continue
        if 0 <= wait <= 60:
            return wait
    return None


def _message(data: Any) -> str | None:
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"][:500]
    return None
