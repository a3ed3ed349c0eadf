"""DESIGN section 3, table-tested: every status and every httpx error has exactly one class."""

from __future__ import annotations

import httpx
import pytest

from batch_assign.classify import classify_exception, classify_status
from batch_assign.records import RequestClass as C


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, C.SUCCESS),
        (201, C.SUCCESS),
        (400, C.PERMANENT),
        (404, C.PERMANENT),
        (409, C.PERMANENT),
        (422, C.PERMANENT),
        (401, C.FATAL),
        (403, C.FATAL),
        (429, C.NOT_APPLIED),
        (503, C.NOT_APPLIED),
        (500, C.AMBIGUOUS),
        (502, C.AMBIGUOUS),
        (504, C.AMBIGUOUS),
        (599, C.AMBIGUOUS),
        (302, C.PERMANENT),
        (418, C.PERMANENT),
    ],
    ids=str,
)
def test_status_classes(status: int, expected: C) -> None:
    """Each status code maps to the class DESIGN section 3 gives it."""
    assert expected == classify_status(status)


EXPECTED = {
    httpx.ConnectError: C.NOT_APPLIED,
    httpx.ConnectTimeout: C.NOT_APPLIED,
    httpx.PoolTimeout: C.NOT_APPLIED,
    httpx.ProxyError: C.NOT_APPLIED,
    httpx.ReadTimeout: C.AMBIGUOUS,
    httpx.WriteTimeout: C.AMBIGUOUS,
    httpx.ReadError: C.AMBIGUOUS,
    httpx.WriteError: C.AMBIGUOUS,
    httpx.CloseError: C.AMBIGUOUS,
    httpx.RemoteProtocolError: C.AMBIGUOUS,
    httpx.LocalProtocolError: C.PERMANENT,
    httpx.UnsupportedProtocol: C.FATAL,
    httpx.TooManyRedirects: C.PERMANENT,
    httpx.DecodingError: C.AMBIGUOUS,
    httpx.HTTPStatusError: C.AMBIGUOUS,
    httpx.TimeoutException: C.AMBIGUOUS,
    httpx.NetworkError: C.AMBIGUOUS,
    httpx.ProtocolError: C.AMBIGUOUS,
    httpx.TransportError: C.AMBIGUOUS,
    httpx.RequestError: C.AMBIGUOUS,
    httpx.HTTPError: C.AMBIGUOUS,
}


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _all_subclasses(sub)
    return found


def _instance(cls: type[httpx.HTTPError]) -> httpx.HTTPError:
    request = httpx.Request("POST", "https://example.invalid/")
    if issubclass(cls, httpx.HTTPStatusError):
        return cls("boom", request=request, response=httpx.Response(500, request=request))
    return cls("boom", request=request) if cls is not httpx.HTTPError else cls("boom")


def test_every_httpx_error_is_classified() -> None:
    """A new httpx exception class fails this test until someone decides what it means."""
    public = {
        c
        for c in _all_subclasses(httpx.HTTPError) | {httpx.HTTPError}
        if c.__module__.startswith("httpx")
    }
    assert set() == public - set(EXPECTED), "classify these new httpx errors"


@pytest.mark.parametrize(
    ("cls", "expected"), list(EXPECTED.items()), ids=lambda v: getattr(v, "__name__", str(v))
)
def test_exception_classes(cls: type[httpx.HTTPError], expected: C) -> None:
    """Connect-phase failures are safe to retry; anything after sending is ambiguous."""
    assert expected == classify_exception(_instance(cls))


def test_unknown_exceptions_are_ambiguous() -> None:
    """An error we do not know might have happened after sending: verify, never resend."""
    assert classify_exception(OSError("socket exploded")) == C.AMBIGUOUS
