"""One rate limiter shared by every request of a run (GETs included).

It is a GCRA token bucket: each request is given a theoretical send time `1/rate` after the previous
one, `burst` requests may run early, and oversleeping never accumulates into a lower rate (the
schedule, not the wake-up time, sets the next slot). A 429 pauses the whole pool for `Retry-After`
and cuts the rate; the rate then grows back by a twentieth of the target each second (AIMD).
Without `Retry-After` the pause is 1 s, doubling (up to a minute) only while each restart is
refused at once.
Callers queue on a FIFO lock, so workers are served in arrival order.

The limiter keeps a ceiling: the pace the server's limit allows, as far as we know it.
- Under a limit the server announces (`X-RateLimit-Limit`) the ceiling is 3 % below it.
- With no announced limit, the first 429 halves the rate and puts the ceiling 10 % under the rate
  that was refused; the rate climbs back quickly to that ceiling, not past it.
A 429 at or under the ceiling means the margin was too thin (timing jitter, or a limit just under
it): the ceiling drops by 10 %, and then creeps back up by 1 % (of the limit, or of itself) per
quiet second, so a run settles where 429s are rare (each costs a whole `Retry-After`) instead of
sawing between half and full speed. Refused again within a second of a pause, the limiter halves:
the limit is far lower than it learned. Under an announced limit, it takes that twice in a row (one
may still be jitter): an `X-RateLimit-Limit` per minute, or the size of the server's bucket, is no
per-second budget, and from then on the limiter learns from 429s as if none had been announced.
The first request of a run goes alone, paced or not: its answer may announce a limit, and a new
connection's set-up must not squeeze it against the second.

With no --rate (unlimited), requests go unpaced until the server shows its limit: an announced
budget running low starts pacing under `X-RateLimit-Limit`, and a 429 with no headers starts it
at half the rate that was refused (sends counted over the current second, at least 0.1 s of it).
Unpaced bursts against a limited server otherwise earn a whole-second pause every time the bucket
runs dry.
A 429 on the very answer whose headers just lowered the rate was earned at the old pace: it
pauses, but does not count as jitter.

A server whose bucket holds about one request (`X-RateLimit-Remaining: 0` while we pace under its
limit, or a 429 there) refuses the request after any one it handled late, however punctual the
client. From then on each answer to the latest request also holds the next one back: an interval
after the answer, less the quickest recent round trip (see `_anchor`). A request waiting for its
slot checks it again after each sleep, so such an answer, or a 429's pause, still holds it back.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel
import structlog

__all__ = ["RateLimiter", "precise_sleep"]

_log = structlog.get_logger("batch_assign.limiter")
_MIN_FRACTION = 0.05  # never slow below 5 % of the target rate
_RECOVERY_PER_S = 0.05  # regain 5 % of the target rate per second without a 429
_UNDER_LIMIT = 0.97  # pace under a limit the server announces: loop jitter must not make 429s
_JITTER_CUT = 0.9  # a 429 while already under the announced limit: timing jitter; cut 10 %...
_CEILING_RECOVERY_PER_S = 0.01  # ...then creep back up by 1 % of the limit per quiet second
_REFUSED_AGAIN_S = 1.0  # a 429 this soon after a pause ends: the limit is far lower, halve
_MIN_UNCAPPED_RATE = 1.0  # with no --rate, the floor in requests per second
_MIN_WINDOW_S = 0.1  # the shortest window an unpaced send rate is measured over
_ROUND_TRIPS = 32  # answers the quickest round trip is taken over (a slower server shows soon)
_UNPACED = -math.inf  # what acquire() returns for a request that was not paced


_SPIN_S = 0.0015  # the event loop's timers round up to the millisecond
_NAP_S = 0.0003  # the longest the loop is held by one nap near a deadline
_NAP_SLACK_S = 0.00008  # the kernel wakes a nap up to ~50 µs late (timer slack)


async def precise_sleep(seconds: float) -> None:
    """Sleep to within ~0.1 ms: the loop's timer for all but the last 1.5 ms, then short naps.

    asyncio's timers wake up to 1 ms late; at 100 requests/s that alone costs a burst-1 server
    ~5 % of its capacity, which no later request can take back. Near the deadline, blocking naps
    of at most 0.3 ms alternate with a pass of the loop (so I/O is still served), and the last
    80 µs are spun. Spinning all 1.5 ms cost 2 ms of CPU per request, a third of a core at
    100 requests/s; with the naps a sleep costs ~0.4 ms and wakes ~20 µs late (p99 ~0.1 ms).
    """
    deadline = time.monotonic() + seconds
    if seconds > _SPIN_S:
        await anyio.sleep(seconds - _SPIN_S)
    while (left := deadline - time.monotonic()) > 0:
        if left > _NAP_SLACK_S:
            # Deliberately blocking, for at most _NAP_S: the loop's timers cannot do 0.1 ms.
            time.sleep(min(left - _NAP_SLACK_S, _NAP_S))  # noqa: ASYNC251
        await anyio.lowlevel.checkpoint()


class RateLimiter:
    """Paces requests at `rate` per second, with `burst` sent early at most; `rate` 0 or inf:
    at the pace the server's limit allows, once it shows one. `pool`: how many requests may be
    in flight at once (the budget must cover them all)."""

    def __init__(
        self,
        rate: float,
        burst: int | None = None,
        *,
        pool: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.target = rate if rate and math.isfinite(rate) and rate > 0 else math.inf
        self.rate = self.target
        # Smooth by default: one request per interval. A server whose bucket holds one token
        # answers 429 to any two requests closer than 1/rate (with a whole-second Retry-After),
        # and capacity it was not asked for in time is lost: pacing must be early-proof and
        # punctual, hence `precise_sleep`.
        self.burst = max(burst if burst is not None else 1, 1)
        self._clock = clock
        self._sleep = sleep or precise_sleep
        self._lock = anyio.Lock()
        self._tat = clock()  # theoretical arrival time of the next request
        self._paused_until = 0.0
        self._last_change = clock()
        self._ceiling = math.inf  # the pace the server's limit allows, as far as we know it
        self._announced = math.inf  # X-RateLimit-Limit, once a response carried it
        self._last_release = -math.inf
        self._pause_ended = -math.inf  # when the last 429's pause ended
        self._in_flight = 0  # acquired and not yet answered
        self._pool = pool  # requests that may be in flight at once (grows if more are seen)
        self._refused_in_a_row = 0  # 429s that each came within a second of the last pause
        self._backoff = 0  # the same count, for the pause when no Retry-After comes
        self._first_answer: anyio.Event | None = None
        self._first_done = False  # the first request came back (or was never sent)
        self._cut_untried = False  # the budget just lowered the rate: no request went at it yet
        self._window_start = -math.inf  # unpaced sends in the current second: the rate a 429
        self._window_sent = 0  # refuses when nothing paced us yet
        self._last_window_rate = 0.0
        self.pauses = 0
        # Once the server's bucket shows it holds about one request (see `_anchor`), each answer
        # to the latest request also holds the next one back.
        self._anchored = False
        self._not_before = -math.inf
        self._round_trips: deque[float] = deque(maxlen=_ROUND_TRIPS)

    @property
    def unlimited(self) -> bool:
        """No --rate: requests go unpaced until the server shows its limit (headers or a 429)."""
        return math.isinf(self.target)

    @property
    def pacing(self) -> bool:
        return math.isfinite(self.rate)

    async def acquire(self) -> float:
        """Wait for this request's slot. Each acquire is followed by one `answered()`, given
        what acquire returned (the time a paced request was let go)."""
        if self._first_done and not self.pacing and self._paused_until <= 0:
            self._count_unpaced()
            sent = _UNPACED
        else:
            sent = await self._wait_turn()
        self._in_flight += 1
        if self._in_flight > self._pool:
            self._pool = self._in_flight
        return sent

    async def _wait_turn(self) -> float:
        async with self._lock:
            now = self._clock()
            if self._paused_until > now:
                await self._sleep(self._paused_until - now)
                now = self._clock()
            if self._first_answer is None:
                self._first_answer = anyio.Event()
                try:
                    return await self._send_one(now)
                except BaseException:  # cancelled before sending: do not hold the others back
                    self._first_answer.set()
                    self._first_done = True
                    raise
            if not self._first_answer.is_set():
                await self._first_answer.wait()
                now = self._clock()
            return await self._send_one(now)

    async def _send_one(self, now: float) -> float:
        if self.pacing:
            return await self._take_slot(now)
        self._count_unpaced()
        return _UNPACED

    async def _take_slot(self, now: float) -> float:
        """GCRA: wait for this request's slot and book the next one (the lock is held). Returns
        the time the request was let go. The slot is checked again after each sleep: an answer
        or a 429 that came meanwhile may have moved it."""
        arrived = now  # the schedule, not a late wake-up, sets the next slot
        while True:
            self._recover(now)
            interval = 1.0 / self.rate
            tat = max(self._tat, arrived)
            allowed_at = max(
                tat - (self.burst - 1) * interval, self._not_before, self._paused_until
            )
            if allowed_at <= now:
                break
            await self._sleep(allowed_at - now)
            now = self._clock()
        self._tat = tat + interval
        self._cut_untried = False
        if self.burst == 1:
            # A late wake-up is absorbed by the schedule, but never by sending the next
            # request closer than the server's own interval after this one.
            self._tat = max(self._tat, now + interval * _UNDER_LIMIT)
        self._last_release = now
        return now

    def answered(self, sent: float = -math.inf) -> None:
        """A request came back (with any answer, or none): the first one lets the rest go.
        `sent`: what its `acquire()` returned."""
        self._in_flight -= 1
        if self._anchored and sent == self._last_release and self.pacing and sent > _UNPACED:
            self._anchor(sent)
        if self._first_answer is not None and not self._first_answer.is_set():
            self._first_answer.set()
            self._first_done = True
            if self.pacing:
                # The first request arrived before its answer, however late a new connection
                # made it: one interval after the answer cannot squeeze the second against it.
                self._tat = max(self._tat, self._clock() + 1.0 / self.rate)

    def _anchor(self, sent: float) -> None:
        """Pace the next request from this answer, not only from this request's send time.

        The server stamped this request at most a round trip after it was sent, and later than
        usual if the round trip took longer than the quickest lately seen: so the next request
        goes no sooner than an interval after the answer, less that quickest round trip. A server
        whose bucket holds one token otherwise refuses the request after one it handled late:
        against such a server, a punctual script (one request at a time at 97 % of its rate,
        Retry-After honoured) reached 0.01-0.26 of the rate over six runs, and 0.90-0.93 with one
        or two 429s in 3,000 paced this way (the peers of bench/rate.py).
        """
        now = self._clock()
        self._round_trips.append(now - sent)
        quickest = min(self._round_trips)
        self._not_before = max(self._not_before, now - quickest + 1.0 / self.rate)

    def _start_anchoring(self, why: str) -> None:
        if not self._anchored:
            self._anchored = True
            _log.info("batch_assign.pacing_from_answers", why=why)

    def rate_limited(self, retry_after: float | None) -> float:
        """A 429 arrived: pause everyone and slow down. Returns the pause in seconds.

        Above the announced limit (or with none announced) the rate halves; under it, the jitter
        margin widens. The 429s of requests already in flight during a pause count as one, and
        the pool restarts after it with one request, not a burst.
        """
        now = self._clock()
        if now < self._paused_until:  # answers to requests sent before the pause: one 429
            if retry_after is not None:
                self._paused_until = max(self._paused_until, now + retry_after)
            return self._paused_until - now
        refused_again = now - self._pause_ended < _REFUSED_AGAIN_S
        # No Retry-After: 1 s, doubling only while the pool is refused again as soon as it
        # restarts (up to a minute); a 429 after a quiet spell starts over at 1 s.
        self._backoff = self._backoff + 1 if refused_again else 0
        pause = retry_after if retry_after is not None else min(2.0 ** min(self._backoff, 6), 60.0)
        self._paused_until = now + pause
        self.pauses += 1
        if not self.pacing:  # no --rate and no limit seen yet: what we sent at was refused
            self.rate = self._unpaced_rate(now)  # logged as `old` by the cut below
        # If the budget headers on this same answer already brought the rate under the limit,
        # the 429 was earned at the old pace: pause, but do not cut again.
        if not self._cut_untried:
            self._refused_in_a_row = self._refused_in_a_row + 1 if refused_again else 0
            if self._refused_in_a_row >= 2:
                # Twice refused as soon as the pool restarted: no jitter, the limit is far lower.
                # An announced X-RateLimit-Limit is then no per-second budget (a longer window,
                # or the bucket's size): learn from 429s as if none were announced.
                self._announced = math.inf
            announced = math.isfinite(self._announced)
            known = math.isfinite(self._ceiling) and self.rate <= self._ceiling
            if known and (announced or not refused_again):
                # At or under the pace we believed the limit allows: timing jitter (ours, the
                # network's or the server's), or a limit just under it. Each 429 costs a whole
                # Retry-After, so widen the margin rather than halve.
                self._ceiling = self.rate * _JITTER_CUT
                new_rate = self._ceiling
                self._start_anchoring("rate_limited")
            else:
                if not announced:  # what was refused, less a margin, caps the recovery
                    self._ceiling = self.rate * _JITTER_CUT
                new_rate = self.rate / 2
            self._set_rate(max(new_rate, self._floor()), now, "rate_limited")
        self._tat = self._paused_until + (self.burst - 1) / self.rate
        self._last_change = self._paused_until  # recovery starts when the pause ends
        self._pause_ended = self._paused_until
        return pause

    def nearly_exhausted(self, limit: int | None, remaining: int | None) -> None:
        """`X-RateLimit-Remaining` says the server's budget is almost gone (a twentieth of the
        limit left; unpaced, plus a request from every worker) while we send faster than its
        `X-RateLimit-Limit`: come down to just under that limit before a 429 does it."""
        if limit is None or remaining is None or limit <= 0:
            return
        ceiling = limit * _UNDER_LIMIT
        reserve = max(1, limit // 20)
        if not self.pacing:
            # Unpaced, each request the pool may have in flight can take a token before a pace
            # applies (answers are read in batches: those in flight right now undercount them).
            reserve += self._pool
        if remaining <= reserve and self.rate > ceiling:
            self._announced = limit
            self._ceiling = ceiling
            self._set_rate(max(ceiling, self._floor()), self._clock(), "budget")
            self._cut_untried = True
        elif remaining == 0 and self.pacing and not self._cut_untried:
            # Empty although we pace under its limit: the bucket holds about one request.
            self._start_anchoring("budget")

    def _recover(self, now: float) -> None:
        elapsed = now - self._last_change
        if elapsed < 1.0:
            return
        seconds = math.floor(elapsed)
        # The margin under the ceiling narrows again while no 429 comes: by 1 % of the announced
        # limit, or with none, of the learned ceiling itself, per quiet second.
        if math.isfinite(self._announced):
            scale, top_ceiling = self._announced, self._announced * _UNDER_LIMIT
        else:
            scale, top_ceiling = self._ceiling, self.target
        if self._ceiling < top_ceiling:
            step = scale * _CEILING_RECOVERY_PER_S * seconds
            self._ceiling = min(top_ceiling, self._ceiling + step)
        top = min(self.target, self._ceiling)
        if self.rate < top:
            gained = self._scale() * _RECOVERY_PER_S * seconds
            self._set_rate(min(top, self.rate + gained), now, "recovering")

    def _scale(self) -> float:
        """What recovery steps are fractions of: --rate, or with none, the limit as we know it."""
        if not self.unlimited:
            return self.target
        return self._ceiling if math.isfinite(self._ceiling) else self.rate

    def _floor(self) -> float:
        return _MIN_UNCAPPED_RATE if self.unlimited else self.target * _MIN_FRACTION

    def _count_unpaced(self) -> None:
        now = self._clock()
        if now - self._window_start >= 1.0:
            if self._window_sent:
                self._last_window_rate = self._window_sent / (now - self._window_start)
            self._window_start, self._window_sent = now, 0
        self._window_sent += 1

    def _unpaced_rate(self, now: float) -> float:
        """The rate unpaced requests went out at lately, over at least 0.1 s: a first burst that
        a server's bucket absorbed for a few milliseconds says little about its rate."""
        elapsed = now - self._window_start
        if elapsed < _MIN_WINDOW_S and self._last_window_rate:
            return self._last_window_rate
        return max(self._window_sent / max(elapsed, _MIN_WINDOW_S), _MIN_UNCAPPED_RATE)

    def _set_rate(self, rate: float, now: float, why: str) -> None:
        if rate == self.rate:
            return
        _log.info("batch_assign.rate_changed", old=_shown(self.rate), new=_shown(rate), why=why)
        if rate < self.rate:  # a slower pace applies from the very next request
            self._tat = max(self._tat, self._last_release + 1.0 / rate)
        self.rate = rate
        self._last_change = now


def _shown(rate: float) -> float | None:
    """A rate for the logs: None for unpaced (JSON has no infinity)."""
    return round(rate, 2) if math.isfinite(rate) else None
