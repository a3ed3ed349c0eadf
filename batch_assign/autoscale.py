"""`--concurrency auto`: grow the requests in flight until the rate is reached or latency says stop.

Every half second the controller compares the achieved request rate with the target. Below 95 %
of it, and while latency is still within 25 % of the best seen (the API is not yet queueing), it
doubles the requests allowed in flight (starting from 8). When latency climbs past that, more in
flight would only queue at the server, so it stops growing. A slow API (100-500 ms) thus still
gets its full rate budget.
"""

from __future__ import annotations

import math
import time

import anyio
import structlog

__all__ = ["AUTO_MAX", "AUTO_START", "ConcurrencyController"]

AUTO_START = 8
AUTO_MAX = 256
_INTERVAL_S = 0.5
_GROWTH = 2.0

_log = structlog.get_logger("batch_assign.autoscale")


class ConcurrencyController:
    """Owns the capacity limiter that bounds requests in flight; `run()` adapts it."""

    def __init__(
        self, target_rate: float, *, start: int = AUTO_START, maximum: int = AUTO_MAX
    ) -> None:
        self.limiter = anyio.CapacityLimiter(start)
        self.target = target_rate if target_rate > 0 else math.inf
        self.maximum = maximum
        self._requests = 0
        self._latency_sum = 0.0
        self._best_latency = math.inf

    def observe(self, seconds: float) -> None:
        """One request finished after `seconds`."""
        self._requests += 1
        self._latency_sum += seconds

    async def run(self) -> None:
        last = time.monotonic()
        while True:
            await anyio.sleep(_INTERVAL_S)
            now = time.monotonic()
            requests, latency_sum = self._requests, self._latency_sum
            self._requests, self._latency_sum = 0, 0.0
            if not requests:
                last = now
                continue
            self.step(requests / (now - last), latency_sum / requests)
            last = now

    def step(self, rate: float, latency: float) -> None:
        """Decide from one interval's achieved rate and mean latency."""
        self._best_latency = min(self._best_latency, latency)
        current = int(self.limiter.total_tokens)
        if rate >= 0.95 * self.target or current >= self.maximum:
            return
        if latency > 1.25 * self._best_latency:
            return  # the API is queueing: more in flight would not go faster
        grown = min(self.maximum, max(current + 1, math.ceil(current * _GROWTH)))
        self.limiter.total_tokens = grown
        _log.info(
            "batch_assign.concurrency_changed",
            old=current,
            new=grown,
            rate=round(rate, 1),
            latency_ms=round(latency * 1000, 1),
        )
