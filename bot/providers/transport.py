"""An httpx transport on aiohttp's connection pool: httpx's API for the vendor clients, at a quarter
of the CPU per request.

httpx's own pool (httpcore on anyio and h11) costs ~1.4 ms of CPU per request with 64 in flight,
aiohttp's (already installed with discord.py) ~0.35 ms, on loopback; at the 10,000-job peak the
bot's polling was bound by it (docs/performance.md). Requests and responses stay httpx objects, so
the clients, their parsers and their tests do not change. aiohttp's errors become httpx's, keeping
the line `classify_transport_error` draws: only a request that never left may be sent again.
"""

from __future__ import annotations

import ssl
import urllib.request
from typing import Any

import aiohttp
import certifi
import httpx
from yarl import URL

# Set by aiohttp from the body and URL; httpx's copies are dropped so they cannot disagree.
_COMPUTED_HEADERS = frozenset({"host", "content-length", "transfer-encoding"})
# Never added by aiohttp on its own: the request carries httpx's headers and nothing else.
_SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through one aiohttp session (made on first use, in the running loop).

    Bodies are read whole (vendor APIs answer small JSON documents); compressed answers are left
    compressed for httpx to decode from their headers, as its own transport does.
    """

    def __init__(self, *, max_connections: int, keepalive_seconds: float = 15.0, trust_env: bool = True) -> None:
        self._max_connections = max_connections
        self._keepalive_seconds = keepalive_seconds
        self._trust_env = trust_env
        # The CAs httpx trusts. Loading them takes ~25 ms: done here, at startup as httpx's own
        # transport does, not on the event loop in the middle of the first request.
        self._ssl = ssl.create_default_context(cafile=certifi.where())
        self._proxies: dict[tuple[str, str], str | None] = {}
        self._session: aiohttp.ClientSession | None = None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=0, keepalive_timeout=self._keepalive_seconds,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=_SKIP_AUTO_HEADERS,
            )
            # aiohttp resends a GET once when a kept-alive connection drops; here one call is one
            # request, and whether to ask again is the poller's decision (backoff, breaker, metrics).
            # No public switch exists; tests/providers/test_transport.py notices if this stops working.
            if hasattr(self._session, "_retry_connection"):
                self._session._retry_connection = False
        return self._session

    def _proxy_for(self, url: httpx.URL) -> str | None:
        """The proxy the environment names for this origin (HTTP(S)_PROXY, NO_PROXY), as httpx
        would use it; read once per origin, since aiohttp's own `trust_env` reads the environment
        and ~/.netrc on a worker thread for every request."""
        key = (url.scheme, url.host)
        if key not in self._proxies:
            proxy = None
            if self._trust_env and not urllib.request.proxy_bypass(url.host):
                proxy = urllib.request.getproxies().get(url.scheme)
            self._proxies[key] = proxy
        return self._proxies[key]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        headers = [(name, value) for name, value in request.headers.multi_items()
                   if name.lower() not in _COMPUTED_HEADERS]
        try:
            async with self._session_now().request(
                request.method, URL(str(request.url), encoded=True), headers=headers, data=body or None,
                allow_redirects=False, timeout=_timeout(request.extensions.get("timeout")),
                proxy=self._proxy_for(request.url),
            ) as answer:
                content = await answer.read()
                return httpx.Response(
                    answer.status, headers=list(answer.raw_headers), content=content, request=request,
                    extensions={"http_version": b"HTTP/1.1", "reason_phrase": (answer.reason or "").encode()},
                )
        except aiohttp.ClientError as exc:
            raise _as_httpx_error(exc, request) from exc
        except TimeoutError as exc:  # a bare timeout: somewhere after the request was handed over
            raise httpx.ReadTimeout(str(exc) or "timed out", request=request) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _timeout(extension: Any) -> aiohttp.ClientTimeout:
    """httpx's per-request timeouts. aiohttp's `connect` covers the wait for a pooled connection and
    the connect itself (httpx's pool + connect); `sock_read` is httpx's read."""
    if not isinstance(extension, dict):
        return aiohttp.ClientTimeout(total=None)
    connect, pool, read = extension.get("connect"), extension.get("pool"), extension.get("read")
    return aiohttp.ClientTimeout(
        total=None,
        connect=None if connect is None and pool is None else (connect or 0.0) + (pool or 0.0),
        sock_connect=connect,
        sock_read=read,
    )


def _as_httpx_error(exc: aiohttp.ClientError, request: httpx.Request) -> httpx.TransportError:
    """Never-sent failures (no connection, or none in time) as httpx's connect errors; everything
    after the request may have left as read/protocol errors, which a submit treats as unsure."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, unreachable, DNS, TLS handshake
        return httpx.ConnectError(message, request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(message, request=request)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError,
                        aiohttp.ClientResponseError)):
        return httpx.RemoteProtocolError(message, request=request)
    return httpx.ReadError(message, request=request)
