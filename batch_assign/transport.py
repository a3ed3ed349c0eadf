"""An httpx transport on aiohttp's connection pool, with an exception mapping we can trust.

Why: on this machine httpx's own transport costs ~1.1 ms of CPU per request, aiohttp ~0.13 ms
(bench/throughput.py). httpx stays the client API; this transport only moves bytes. The mapping
keeps the phase of a failure, which the classifier (DESIGN section 3) depends on:

    aiohttp                                 httpx                  meaning
    ClientConnectorError (refused, DNS...)  ConnectError           never sent
    ConnectionTimeoutError                  ConnectTimeout         never sent
    SocketTimeoutError / ServerTimeoutError ReadTimeout            may have been applied
    ServerDisconnectedError                 RemoteProtocolError    may have been applied
    ClientPayloadError                      ReadError              may have been applied
    ClientResponseError (bad HTTP)          RemoteProtocolError    may have been applied
    ClientOSError (reset, broken pipe)      ReadError              may have been applied
    InvalidURL                              UnsupportedProtocol    never sent

(httpx-aiohttp 0.2.0 maps `ServerDisconnectedError` to `ConnectTimeout`, "never sent", which
would resend an assignment the server applied before dropping the connection.)
"""

from __future__ import annotations

import asyncio
import ssl
from types import TracebackType

import aiohttp
import httpx
import yarl

__all__ = ["AiohttpTransport", "map_exception"]


def map_exception(exc: BaseException) -> httpx.TransportError | None:
    """The httpx exception for an aiohttp/asyncio one (None: not a transport failure)."""
    try:
        message = str(exc) or type(exc).__name__
    except Exception:  # some aiohttp errors cannot describe themselves when half-built
        message = type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return httpx.ReadTimeout(message)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(message)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx.ReadError(message)
    if isinstance(exc, aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(message)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(message)
    if isinstance(exc, aiohttp.ClientOSError | ConnectionError):
        return httpx.ReadError(message)
    if isinstance(exc, aiohttp.ClientError):
        return httpx.TransportError(message)
    return None


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through one aiohttp session sized by `limits`."""

    def __init__(self, *, limits: httpx.Limits, verify: ssl.SSLContext | bool = True) -> None:
        self._limits = limits
        self._verify = verify
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}

    def _get_session(self, https: bool) -> aiohttp.ClientSession:
        if self._session is None:
            # Loading the CA bundle costs ~30 ms: only an https base URL needs it.
            verify = self._verify
            tls = httpx.create_ssl_context(verify=verify) if https and verify is True else verify
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                keepalive_timeout=self._limits.keepalive_expiry or 5.0,
                ssl=tls,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,  # httpx decodes per Content-Encoding
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        stream = request.stream
        # A ByteStream holds its body already: joining it skips aread()'s async generator.
        body = b"".join(stream) if isinstance(stream, httpx.ByteStream) else await request.aread()
        url = request.url
        try:
            async with self._get_session(url.scheme == "https").request(
                request.method,
                yarl.URL(str(url), encoded=True),  # httpx already percent-encoded it
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                timeout=self._timeout(timeout),
            ) as response:
                content = await response.read()
                status, headers, reason = response.status, response.raw_headers, response.reason
        except Exception as exc:
            mapped = map_exception(exc)
            if mapped is None:
                raise
            mapped.request = request
            raise mapped from exc
        extensions: dict[str, object] = {"http_version": b"HTTP/1.1"}
        if reason:
            extensions["reason_phrase"] = reason.encode()
        return httpx.Response(
            status, headers=list(headers), content=content, request=request, extensions=extensions
        )

    def _timeout(self, timeout: dict[str, float | None]) -> aiohttp.ClientTimeout:
        """httpx's timeout extension as aiohttp's (one object per distinct setting)."""
        key = (timeout.get("pool"), timeout.get("connect"), timeout.get("read"))
        found = self._timeouts.get(key)
        if found is None:
            found = self._timeouts[key] = aiohttp.ClientTimeout(
                total=None, connect=key[0], sock_connect=key[1], sock_read=key[2]
            )
        return found

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()
