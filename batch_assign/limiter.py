"""One rate limiter shared by every request of a run (GETs included).

It is a GCRA token bucket: each request is given a theoretical send time `1/rate` after the previous
one, `burst` requests may run early, and oversleeping never accumulates into a lower rate (the
schedule, not the wake-up time, sets the next slot). A 429 pauses the whole pool for `Retry-After`
and halves the rate; the rate then grows back by a twentieth of the target each second
(AIMD). Callers queue on a FIFO lock, so workers are served in arrival order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

import anyio
import structlog

__all__ = ["RateLimiter"]

_log = structlog.get_logger("batch_assign.limiter")
_MIN_FRACTION = 0.05  # never slow below 5 % of the target rate
_RECOVERY_PER_S = 0.05  # regain 5 % of the target rate per second without a 429


class RateLimiter:
    """Paces requests at `rate` per second (0 or inf: unlimited), with `burst` sent early at most."""

    def __init__(
        self,
        rate: float,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.target = rate if rate and math.isfinite(rate) and rate > 0 else math.inf
        self.rate = self.target
        default_burst = 1 if self.unlimited else math.ceil(self.target / 10)
        self.burst = max(burst if burst is not None else default_burst, 1)
        self._clock = clock
        self._sleep = sleep
        self._lock = anyio.Lock()
        self._tat = clock()  # theoretical arrival time of the next request
        self._paused_until = 0.0
        self._last_change = clock()
        self.pauses = 0

    @property
    def unlimited(self) -> bool:
        return math.isinf(self.target)

    async def acquire(self) -> None:
        """Wait for this request's slot."""
        if self.unlimited and self._paused_until <= 0:
            return
        async with self._lock:
            now = self._clock()
            if self._paused_until > now:
                await self._sleep(self._paused_until - now)
                now = self._clock()
            if self.unlimited:
                return
            self._recover(now)
            interval = 1.0 / self.rate
            tat = max(self._tat, now)
            allowed_at = tat - (self.burst - 1) * interval
            if allowed_at > now:
                await self._sleep(allowed_at - now)
            self._tat = tat + interval

    def rate_limited(self, retry_after: float | None) -> float:
        """A 429 arrived: pause everyone and halve the rate. Returns the pause in seconds.

        The 429s of requests already in flight during a pause count as one: the rate is halved
        once per pause, and the pool restarts after it with one request, not a burst.
        """
        now = self._clock()
        pause = retry_after if retry_after is not None else min(2.0 ** min(self.pauses, 6), 60.0)
        already_paused = now < self._paused_until
        self._paused_until = max(self._paused_until, now + pause)
        if already_paused:
            return self._paused_until - now
        self.pauses += 1
        if not self.unlimited:
            self._set_rate(max(self.rate / 2, self.target * _MIN_FRACTION), now, "rate_limited")
            self._tat = self._paused_until + (self.burst - 1) / self.rate
            self._last_change = self._paused_until  # recovery starts when the pause ends
        return pause

    def nearly_exhausted(self, limit: int | None, remaining: int | None) -> None:
        """`X-RateLimit-Remaining` says the server budget is almost gone: ease off before a 429."""
        if limit is None or remaining is None or self.unlimited or limit <= 0:
            return
        if remaining <= max(1, limit // 20) and self.rate > limit * 0.9:
            self._set_rate(max(limit * 0.9, self.target * _MIN_FRACTION), self._clock(), "budget")

    def _recover(self, now: float) -> None:
        if self.rate >= self.target:
            return
        elapsed = now - self._last_change
        if elapsed >= 1.0:
            gained = self.target * _RECOVERY_PER_S * math.floor(elapsed)
            self._set_rate(min(self.target, self.rate + gained), now, "recovering")

    def _set_rate(self, rate: float, now: float, why: str) -> None:
        if rate == self.rate:
            return
        _log.info("batch_assign.rate_changed", old=round(self.rate, 2), new=round(rate, 2), why=why)
        self.rate = rate
        self._last_change = now
