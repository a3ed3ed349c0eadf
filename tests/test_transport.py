"""The aiohttp transport keeps the phase of every failure: one real-socket test per case."""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import aiohttp
import anyio
import httpx
import pytest
import yarl
from conftest import World, start_sandbox

from batch_assign import transport as transport_module
from batch_assign.classify import classify_exception
from batch_assign.job import LOOP_OPTIONS
from batch_assign.records import RequestClass
from batch_assign.sandbox import FaultRule
from batch_assign.transport import AiohttpTransport, map_exception

_T = TypeVar("_T")
LIMITS = httpx.Limits(max_connections=2, max_keepalive_connections=2)
LOOPS = ["asyncio", *(["uvloop"] if LOOP_OPTIONS["use_uvloop"] else [])]
_loop = {"use_uvloop": False}


@pytest.fixture(autouse=True, params=LOOPS)
def event_loop_kind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every case on asyncio's loop and on uvloop, which `run` uses where installed."""
    _loop["use_uvloop"] = request.param == "uvloop"
    yield
    _loop["use_uvloop"] = False


def run(go: Callable[[], Awaitable[_T]]) -> _T:
    return anyio.run(go, backend_options=dict(_loop))


def send(
    url: str, *, connect: float = 2.0, read: float = 2.0, workflow: str = "x"
) -> httpx.Response:
    """One request through the transport, as the client sends it."""

    async def go() -> httpx.Response:
        transport = AiohttpTransport(limits=LIMITS)
        try:
            request = httpx.Request(
                "POST",
                url,
                json={"workflowId": workflow},
                headers={"X-API-Key": "nxr_live_sandbox_local_key"},
            )
            request.extensions["timeout"] = {
                "connect": connect,
                "read": read,
                "write": read,
                "pool": connect,
            }
            response = await transport.handle_async_request(request)
            await response.aread()
            return response
        finally:
            await transport.aclose()

    return run(go)


@contextmanager
def raw_server(handle: Callable[[socket.socket], None]) -> Iterator[str]:
    """A one-connection-at-a-time TCP server on loopback whose behaviour `handle` decides."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                handle(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/x"
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def phase_of(url: str, **kwargs: Any) -> tuple[type[httpx.HTTPError], RequestClass]:
    with pytest.raises(httpx.HTTPError) as caught:
        send(url, **kwargs)
    return type(caught.value), classify_exception(caught.value)


def test_connection_refused_is_never_sent() -> None:
    """Nothing listening: ConnectError, safe to retry."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    assert (httpx.ConnectError, RequestClass.NOT_APPLIED) == phase_of(f"http://127.0.0.1:{port}/x")


def test_dropped_after_applying_is_ambiguous(world: World) -> None:
    """The server applied the move, then closed the connection: ambiguous, never 'not sent'."""
    rule = FaultRule("drop-after", rate=1.0)
    with start_sandbox(world.seed(), rules=(rule,)) as box:
        url = f"{box.url}/leads/{world.leads['ann']}/assign-workflow"

        async def go() -> type[BaseException]:
            transport = AiohttpTransport(limits=LIMITS)
            request = httpx.Request(
                "POST",
                url,
                json={"workflowId": world.workflows["alpha"]},
                headers={"X-API-Key": box.api_key},
            )
            request.extensions["timeout"] = {"connect": 2, "read": 2, "write": 2, "pool": 2}
            try:
                await transport.handle_async_request(request)
            except httpx.HTTPError as exc:
                return type(exc)
            finally:
                await transport.aclose()
            return type(None)

        kind = run(go)
        assert 1 == len(box.store.audit())
    assert httpx.RemoteProtocolError is kind
    assert RequestClass.AMBIGUOUS == classify_exception(httpx.RemoteProtocolError("x"))


def test_slow_answer_is_a_read_timeout(world: World) -> None:
    """The server applied the move and answers too late: ReadTimeout, ambiguous."""
    rule = FaultRule("slow-after", rate=1.0, delay_s=3)
    with start_sandbox(world.seed(), rules=(rule,)) as box:
        url = f"{box.url}/leads/{world.leads['ann']}/assign-workflow"
        assert (httpx.ReadTimeout, RequestClass.AMBIGUOUS) == phase_of(
            url, read=0.3, workflow=world.workflows["alpha"]
        )
        assert 1 == len(box.store.audit())


def test_truncated_body_is_ambiguous() -> None:
    """Headers arrive, the body is cut short: ReadError, ambiguous."""

    def truncate(conn: socket.socket) -> None:
        conn.sendall(
            b'HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"work'
        )

    with raw_server(truncate) as url:
        assert (httpx.ReadError, RequestClass.AMBIGUOUS) == phase_of(url)


def test_reset_after_reading_the_request_is_ambiguous() -> None:
    """The server read the request and reset the connection: ambiguous."""

    def reset(conn: socket.socket) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    with raw_server(reset) as url:
        kind, request_class = phase_of(url)
    assert RequestClass.AMBIGUOUS == request_class, kind


def test_garbage_answer_is_ambiguous() -> None:
    """Something that is not HTTP comes back: RemoteProtocolError, ambiguous."""

    def garbage(conn: socket.socket) -> None:
        conn.sendall(b"SSH-2.0-OpenSSH_9.0\r\n\r\n")

    with raw_server(garbage) as url:
        assert (httpx.RemoteProtocolError, RequestClass.AMBIGUOUS) == phase_of(url)


def test_connect_timeout_is_never_sent() -> None:
    """aiohttp's connect timeout maps to ConnectTimeout: safe to retry."""
    mapped = map_exception(aiohttp.ConnectionTimeoutError("connect timed out"))
    assert isinstance(mapped, httpx.ConnectTimeout)
    assert RequestClass.NOT_APPLIED == classify_exception(mapped)


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _all_subclasses(sub)
    return found


def test_every_aiohttp_client_error_maps_to_an_httpx_transport_error() -> None:
    """No aiohttp error escapes unmapped; the connect phase stays 'never sent', the rest not."""
    never_sent = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
    for cls in _all_subclasses(aiohttp.ClientError) | {aiohttp.ClientError}:
        try:
            exc = cls.__new__(cls)
            Exception.__init__(exc, "boom")
        except TypeError:
            continue
        mapped = map_exception(exc)
        assert isinstance(mapped, httpx.TransportError), cls
        expected_safe = issubclass(cls, never_sent)
        assert expected_safe == (classify_exception(mapped) is RequestClass.NOT_APPLIED), cls


# --- answers: the response the client reads -------------------------------------------------


def answer_with(head: bytes, body: bytes) -> Callable[[socket.socket], None]:
    def handle(conn: socket.socket) -> None:
        conn.sendall(head + b"\r\n\r\n" + body)

    return handle


def test_a_plain_answer_is_read_and_closed() -> None:
    """The usual answer: body, headers (repeated ones kept, in order) and status as httpx has them."""
    body = b'{"success":true,"workflowRunId":"r1"}'
    head = (
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Seen: 1\r\nX-Seen: 2\r\n"
        b"Content-Length: " + str(len(body)).encode()
    )
    assert transport_module._FAST_RESPONSE  # httpx's internals are as the fast path expects
    with raw_server(answer_with(head, body)) as url:
        response = send(url)
    assert (201, "Created", body) == (
        response.status_code,
        response.reason_phrase,
        response.content,
    )
    assert {"success": True, "workflowRunId": "r1"} == response.json()
    assert ["1", "2"] == response.headers.get_list("x-seen")
    assert response.is_closed
    assert response.is_stream_consumed


def test_a_compressed_answer_is_decoded() -> None:
    """A proxy may gzip the body although we never asked: httpx decodes it as usual."""
    body = gzip.compress(b'{"success":true}')
    head = (
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: " + str(len(body)).encode()
    )
    with raw_server(answer_with(head, body)) as url:
        assert {"success": True} == send(url).json()


def test_a_chunked_answer_is_read_whole() -> None:
    """No Content-Length, chunked transfer: the whole body, nothing invented in the headers."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked"
    with raw_server(answer_with(head, b'5\r\n{"a":\r\n2\r\n1}\r\n0\r\n\r\n')) as url:
        response = send(url)
    assert ({"a": 1}, None) == (response.json(), response.headers.get("content-length"))


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ([(b"Content-Type", b"application/json"), (b"Content-Length", b"2")], b"{}"),
        ([(b"Content-Type", b"text/plain; charset=latin-1")], "caf\u00e9".encode("latin-1")),
        ([(b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2"), (b"Content-Length", b"0")], b""),
    ],
)
def test_the_fast_response_is_the_response_httpx_builds(
    headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    request = httpx.Request("GET", "http://127.0.0.1/x")
    extensions: dict[str, object] = {"http_version": b"HTTP/1.1", "reason_phrase": b"OK"}
    fast = transport_module._read_response(200, headers, body, request, extensions)
    slow = httpx.Response(
        200, headers=list(headers), content=body, request=request, extensions=extensions
    )
    assert (fast.content, fast.text, fast.encoding) == (slow.content, slow.text, slow.encoding)
    assert [(k, v) for k, v in slow.headers.multi_items() if k != "content-length"] == [
        (k, v) for k, v in fast.headers.multi_items() if k != "content-length"
    ]
    assert (fast.is_closed, fast.is_stream_consumed) == (slow.is_closed, slow.is_stream_consumed)
    assert fast.read() == body
    assert list(fast.iter_bytes()) == list(slow.iter_bytes())


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/api/public/leads/0b7c2a9e-54a4-4c4e-9a51-1a7c3b0f3a10/assign-workflow",
        "https://api.nexor.example/api/public/leads/X",
        "https://api.nexor.example:8443/a%20b/c",
        "http://[::1]:9000/api/leads/x",
        "http://user:secret@127.0.0.1:8080/api/x",
        "http://localhost/api/workflows?limit=200&offset=0",
        "http://localhost/",
    ],
)
def test_the_url_aiohttp_gets_is_the_url_httpx_built(url: str) -> None:
    transport = AiohttpTransport(limits=LIMITS)
    parsed = httpx.URL(url)
    expected = yarl.URL(str(parsed), encoded=True)
    for _ in range(2):  # the second time from the cached origin
        got = transport._yarl_url(parsed)
        assert (str(got), got.raw_path, got.raw_query_string) == (
            str(expected),
            expected.raw_path,
            expected.raw_query_string,
        )
