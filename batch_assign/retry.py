"""The retry policy: a small layer over tenacity (DESIGN section 3, STYLE 6).

Only `NotAppliedError` is retried. Attempts are bounded by `max_attempts` *and* a deadline;
rate-limited attempts (429) do not use up the budget, since the shared limiter already paused the
pool for them. Waits are exponential with jitter, and a `Retry-After` overrides the wait.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import anyio
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
)
from tenacity.stop import stop_base

from batch_assign.errors import NotAppliedError

__all__ = ["DEADLINE_S", "MAX_RATE_LIMITED", "counts_against_budget", "retrying", "wait_after"]

DEADLINE_S = 900.0
"""Give up on one row after this long, however the attempts went."""
MAX_RATE_LIMITED = 100
"""Even free (429) attempts end somewhere."""

_BACKOFF_BASE_S = 0.5
_BACKOFF_MAX_S = 30.0


def _backoff(attempt: int) -> float:
    """0.5 s, 1 s, 2 s ... capped at 30 s, plus up to 50 % jitter so workers do not sync up."""
    wait = min(_BACKOFF_BASE_S * 2.0 ** max(attempt - 1, 0), _BACKOFF_MAX_S)
    return wait + random.uniform(0, wait / 2)


class _AttemptBudget(stop_base):
    """Stop after `max_attempts` attempts that were not rate limited."""

    def __init__(self, max_attempts: int) -> None:
        self.max_attempts = max_attempts
        self.free = 0

    def __call__(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, NotAppliedError) and exc.http_status == 429:
            self.free += 1
        return (
            state.attempt_number - self.free >= self.max_attempts or self.free >= MAX_RATE_LIMITED
        )


def wait_after(exc: BaseException | None, attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` raised `exc`."""
    if isinstance(exc, NotAppliedError):
        if exc.http_status == 429:
            return 0.0  # the limiter holds every worker until Retry-After has passed
        if exc.retry_after is not None:
            return exc.retry_after
    return _backoff(attempt)


def counts_against_budget(exc: BaseException) -> bool:
    """Rate-limited attempts are free; every other failed attempt uses one up."""
    return not (isinstance(exc, NotAppliedError) and exc.http_status == 429)


def _wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    return wait_after(exc, state.attempt_number)


def retrying(
    max_attempts: int,
    *,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    on_retry: Callable[[RetryCallState], None] | None = None,
    deadline_s: float = DEADLINE_S,
) -> AsyncRetrying:
    """A fresh tenacity controller for one row's requests."""
    return AsyncRetrying(
        retry=retry_if_exception_type(NotAppliedError),
        stop=_AttemptBudget(max_attempts) | stop_after_delay(deadline_s),
        wait=_wait,
        sleep=sleep,
        before_sleep=on_retry,
        reraise=True,
    )
