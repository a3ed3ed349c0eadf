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
from collections.abc import Sequence
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


def _str_headers(headers: httpx.Headers) -> list[tuple[str, str]]:
    """The request's headers as aiohttp takes them: `multi_items()` without its charset sniffing
    (every header we send is ASCII)."""
    try:
        return [(key.decode("ascii"), value.decode("ascii")) for key, value in headers.raw]
    except UnicodeDecodeError:
        return headers.multi_items()


def _read_response(
    status: int,
    headers: Sequence[tuple[bytes, bytes]],
    content: bytes,
    request: httpx.Request,
    extensions: dict[str, object],
) -> httpx.Response:
    """An `httpx.Response` already read and closed, as `Response(content=...)` makes it for a body
    with no Content-Encoding (less the Content-Length that would invent for a chunked body), but
    without `read()`'s decoder chain: ~10 µs, 4 % of a row's CPU.

    It stores the body where `read()` would (`_content`, httpx's own attribute), so it is used only
    when `_probe_read_response()` shows the result matches httpx's public path.
    """
    response = httpx.Response(
        status,
        headers=headers,
        stream=httpx.ByteStream(content),
        request=request,
        extensions=extensions,
    )
    response._content = content
    response.is_stream_consumed = True
    response.is_closed = True
    return response


def _probe_read_response() -> bool:
    """Does `_read_response` give what `httpx.Response(content=...)` gives? (httpx internals)"""
    request = httpx.Request("POST", "http://127.0.0.1/probe")
    headers = [(b"Content-Type", b"application/json"), (b"Content-Length", b"8"), (b"X-A", b"1")]
    body = b'{"a": 1}'
    extensions: dict[str, object] = {"http_version": b"HTTP/1.1", "reason_phrase": b"Created"}
    try:
        fast = _read_response(201, headers, body, request, extensions)
        slow = httpx.Response(
            201, headers=list(headers), content=body, request=request, extensions=extensions
        )
        return (
            fast.read() == slow.read() == body
            and fast.json() == slow.json()
            and fast.headers.multi_items() == slow.headers.multi_items()
            and (fast.is_closed, fast.is_stream_consumed)
            == (slow.is_closed, slow.is_stream_consumed)
            and (fast.status_code, fast.reason_phrase, fast.http_version)
            == (slow.status_code, slow.reason_phrase, slow.http_version)
            and fast.request is request
        )
    except Exception:  # httpx's internals changed: take the public path
        return False


_FAST_RESPONSE = _probe_read_response()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through one aiohttp session sized by `limits`."""

    def __init__(self, *, limits: httpx.Limits, verify: ssl.SSLContext | bool = True) -> None:
        self._limits = limits
        self._verify = verify
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}
        self._origins: dict[tuple[str, bytes, bytes], yarl.URL] = {}

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
                self._yarl_url(url),
                headers=_str_headers(request.headers),
                data=body or None,
                allow_redirects=False,
                timeout=self._timeout(timeout),
            ) as response:
                content = await response.read()
                status, headers, reason = response.status, response.raw_headers, response.reason
                encoded = "Content-Encoding" in response.headers
        except Exception as exc:
            mapped = map_exception(exc)
            if mapped is None:
                raise
            mapped.request = request
            raise mapped from exc
        extensions: dict[str, object] = {"http_version": b"HTTP/1.1"}
        if reason:
            extensions["reason_phrase"] = reason.encode()
        if encoded or not _FAST_RESPONSE:  # httpx decodes the body
            return httpx.Response(
                status,
                headers=list(headers),
                content=content,
                request=request,
                extensions=extensions,
            )
        return _read_response(status, headers, content, request, extensions)

    def _yarl_url(self, url: httpx.URL) -> yarl.URL:
        """`url` as aiohttp's URL type, already percent-encoded by httpx (no re-quoting).

        Parsing the whole URL again costs ~4 % of a row's CPU; the path is put on a parsed origin
        instead (a public yarl call). A query or fragment takes the full parse.
        """
        if url.query or url.fragment:
            return yarl.URL(str(url), encoded=True)
        key = (url.scheme, url.userinfo, url.netloc)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = yarl.URL(str(url.copy_with(path="/")), encoded=True)
        return origin.with_path(url.raw_path.decode("ascii"), encoded=True)

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
