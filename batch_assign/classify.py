"""DESIGN section 3 as one pure function: what a status code or transport error means for a row.

httpx names the phase that failed: `ConnectError`, `ConnectTimeout`, `PoolTimeout` and `ProxyError`
never left this machine, so they are safe to retry; read/write errors, read/write timeouts and
remote protocol errors happen after the request may have reached the server, so they are ambiguous.
"""

from __future__ import annotations

import httpx

from batch_assign.records import RequestClass

__all__ = ["classify_exception", "classify_status"]

_PERMANENT = frozenset({400, 404, 409, 422})
_FATAL = frozenset({401, 403})
_NOT_APPLIED = frozenset({429, 503})

# Most specific first: the first base class an exception matches decides.
_EXCEPTION_CLASSES: tuple[tuple[type[httpx.HTTPError], RequestClass], ...] = (
    (httpx.ConnectError, RequestClass.NOT_APPLIED),
    (httpx.ConnectTimeout, RequestClass.NOT_APPLIED),
    (httpx.PoolTimeout, RequestClass.NOT_APPLIED),
    (httpx.ProxyError, RequestClass.NOT_APPLIED),
    (httpx.UnsupportedProtocol, RequestClass.FATAL),
    (httpx.LocalProtocolError, RequestClass.PERMANENT),
    (httpx.TooManyRedirects, RequestClass.PERMANENT),
    (httpx.DecodingError, RequestClass.AMBIGUOUS),
    (httpx.HTTPStatusError, RequestClass.AMBIGUOUS),  # callers classify the status instead
    # ReadTimeout, WriteTimeout, ReadError, WriteError, CloseError, RemoteProtocolError and any
    # unnamed transport failure: the request may have been applied.
    (httpx.HTTPError, RequestClass.AMBIGUOUS),
)


def classify_status(status: int) -> RequestClass:
    """The class of an HTTP status code for a write (POST assign-workflow)."""
    if 200 <= status < 300:
        return RequestClass.SUCCESS
    if status in _FATAL:
        return RequestClass.FATAL
    if status in _NOT_APPLIED:
        return RequestClass.NOT_APPLIED
    if status in _PERMANENT or 300 <= status < 500:
        return RequestClass.PERMANENT
    return RequestClass.AMBIGUOUS  # 500, 502, 504 and any other 5xx


def classify_exception(exc: BaseException) -> RequestClass:
    """The class of an exception raised while sending; unknown errors count as ambiguous."""
    for base, request_class in _EXCEPTION_CLASSES:
        if isinstance(exc, base):
            return request_class
    return RequestClass.AMBIGUOUS
