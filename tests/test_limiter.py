"""The shared limiter and the retry policy, on a controlled clock (only `precise_sleep` is timed
for real, a few milliseconds, and only from below)."""

from __future__ import annotations

import email.utils
import itertools
import time

import anyio
import anyio.lowlevel
import httpx
import pytest

from batch_assign.client import _rate_headers, _retry_after
from batch_assign.errors import NotAppliedError, PermanentError
from batch_assign.limiter import RateLimiter, precise_sleep
from batch_assign.retry import retrying

pytestmark = pytest.mark.anyio


class FakeClock:
    """A monotonic clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        await anyio.lowlevel.checkpoint()


def limiter(rate: float, burst: int | None = None) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter(rate, burst, clock=clock, sleep=clock.sleep), clock


async def times(lim: RateLimiter, clock: FakeClock, n: int) -> list[float]:
    stamps = []
    for _ in range(n):
        await lim.acquire()
        lim.answered()  # as the client does once a request comes back
        stamps.append(round(clock.now, 6))
    return stamps


async def quiet_seconds(lim: RateLimiter, clock: FakeClock, n: int) -> list[float]:
    """One request a second for `n` seconds with no 429: the rate after each, rounded."""
    seen = []
    for _ in range(n):
        clock.now += 1.0
        await lim.acquire()
        lim.answered()
        seen.append(round(lim.rate, 2))
    return seen


async def test_paces_evenly_at_the_rate() -> None:
    """rate 10, burst 1: one request every 100 ms, starting at once."""
    lim, clock = limiter(10, 1)
    assert [round(0.1 * i, 6) for i in range(6)] == await times(lim, clock, 6)


async def test_burst_goes_early_then_paces() -> None:
    """burst 3: three requests at once, then one every interval."""
    lim, clock = limiter(10, 3)
    assert await times(lim, clock, 5) == [0.0, 0.0, 0.0, 0.1, 0.2]


async def test_oversleeping_does_not_lower_the_rate() -> None:
    """Small overshoots (timer granularity) are absorbed by the schedule, not accumulated."""
    clock = FakeClock()

    async def sloppy_sleep(seconds: float) -> None:
        await clock.sleep(seconds + 0.00002)  # each wake-up is 20 µs late: 2 % of the interval

    lim = RateLimiter(1000, 1, clock=clock, sleep=sloppy_sleep)
    for _ in range(1000):
        await lim.acquire()
        lim.answered()
    assert clock.now < 1.0 + 0.001  # 1,000 requests in one second, give or take one wake-up


async def test_a_late_wake_up_never_squeezes_the_next_request() -> None:
    """A burst-1 server refuses two requests closer than its interval: one late wake-up must
    not be caught up by sending the next one early."""
    clock = FakeClock()
    late = [0.0, 0.0, 0.004, 0.0, 0.0]  # the third wake-up is 4 ms late

    async def sleep(seconds: float) -> None:
        await clock.sleep(seconds + (late.pop(0) if late else 0.0))

    lim = RateLimiter(100, 1, clock=clock, sleep=sleep)
    stamps = []
    for _ in range(6):
        await lim.acquire()
        lim.answered()
        stamps.append(clock.now)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 0.0097 - 1e-9  # never under the server's interval (our pace is 97 % of it)


async def answered_after(lim: RateLimiter, clock: FakeClock, round_trip: float) -> float:
    """Send one request; its answer comes `round_trip` later. Returns when it was sent."""
    sent = await lim.acquire()
    clock.now += round_trip
    lim.answered(sent)
    return sent


async def one_token_bucket(lim: RateLimiter, clock: FakeClock, how: str) -> None:
    """Show `lim` a server whose bucket holds about one request."""
    await times(lim, clock, 1)  # the first request goes alone
    if how == "budget":  # paced under the announced limit, and still nothing left
        lim.nearly_exhausted(limit=20, remaining=3)
        lim.nearly_exhausted(limit=20, remaining=0)
    else:  # a 429 while paced under the announced limit: jitter beat the margin
        lim.nearly_exhausted(limit=10, remaining=0)
        await times(lim, clock, 1)  # sent at the announced pace, and refused
        clock.now += lim.rate_limited(1.0)


@pytest.mark.parametrize("how", ["budget", "rate_limited"])
async def test_once_the_bucket_shows_one_token_a_late_answer_holds_the_next_request_back(
    how: str,
) -> None:
    """A one-token server refuses the request after one it handled late. Once the limiter has
    seen such a bucket, the next request goes an interval after the answer to the last one, less
    the quickest round trip: a slow answer (the server may have handled it late) delays it."""
    lim, clock = limiter(10, 1)
    await one_token_bucket(lim, clock, how)
    interval = 1 / lim.rate
    for _ in range(3):
        await answered_after(lim, clock, 0.005)  # quick answers change nothing
    late = await answered_after(lim, clock, 0.030)
    after = await answered_after(lim, clock, 0.005)
    assert after == pytest.approx(late + 0.030 - 0.005 + interval)
    assert await lim.acquire() == pytest.approx(after + interval)  # back to the plain pace


async def test_until_then_a_late_answer_changes_nothing() -> None:
    """Pacing from answers costs rate whenever round trips vary: only a bucket of about one
    request is worth it. A bucket of ten, or none announced, keeps the plain schedule."""
    lim, clock = limiter(10, 1)
    lim.nearly_exhausted(limit=20, remaining=9)
    await answered_after(lim, clock, 0.005)
    late = await answered_after(lim, clock, 0.030)
    assert await lim.acquire() == pytest.approx(late + 0.1)


async def test_an_answer_to_an_older_request_does_not_move_the_schedule() -> None:
    """With answers slower than the interval, the one that matters is already out: an answer to
    any request but the latest one says nothing about the next."""
    lim, clock = limiter(10, 1)
    await one_token_bucket(lim, clock, "budget")
    await answered_after(lim, clock, 0.005)  # the quickest round trip: 5 ms
    older = await lim.acquire()
    latest = await lim.acquire()
    clock.now += 0.05
    lim.answered(older)  # 150 ms after it was sent, and after the latest went
    assert await lim.acquire() == pytest.approx(latest + 0.1)


@pytest.mark.parametrize("news", ["late answer", "429"])
async def test_a_request_waiting_for_its_slot_honours_what_came_meanwhile(news: str) -> None:
    """The slot is checked again after each sleep: a late answer, or a 429's pause, that comes
    while the next request waits holds it back too (it used to go at its old slot)."""
    lim, clock = limiter(10, 1)
    await one_token_bucket(lim, clock, "budget")
    await answered_after(lim, clock, 0.001)
    sent = await lim.acquire()
    untold = [news]

    async def sleep(seconds: float) -> None:
        if not untold:
            await clock.sleep(seconds)
            return
        clock.now += 0.030  # 30 ms later, while the next request waits for its slot:
        if untold.pop() == "late answer":
            lim.answered(sent)  # the answer to the one before it
        else:
            lim.rate_limited(2.0)  # a 429 pauses everyone for 2 s
        await anyio.lowlevel.checkpoint()

    lim._sleep = sleep
    released = await lim.acquire()
    if news == "late answer":
        assert released == pytest.approx(sent + 0.030 - 0.001 + 0.1)
    else:
        assert released == pytest.approx(sent + 0.030 + 2.0)


@pytest.mark.parametrize(("rate", "second_at"), [(10, 0.4), (0, 0.3)])
async def test_the_first_request_goes_alone(rate: float, second_at: float) -> None:
    """Until the first answer (which may announce the server's limit), nobody else is sent; the
    second request then leaves one interval after that answer, or with no --rate, at once."""
    lim, clock = limiter(rate, 1)
    stamps: list[float] = []

    async def first() -> None:
        await lim.acquire()
        stamps.append(clock.now)
        await clock.sleep(0.3)  # a slow first answer (a new connection, say)
        lim.answered()

    async def other() -> None:
        await lim.acquire()
        stamps.append(clock.now)

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await anyio.lowlevel.checkpoint()
        tg.start_soon(other)
    assert stamps == [0.0, pytest.approx(second_at)]


async def test_a_first_request_cancelled_before_it_is_sent_does_not_hold_the_others() -> None:
    """The first request goes alone; if it is cancelled while waiting for its slot (a stop),
    the next request must not wait for an answer that will never come."""
    clock = FakeClock()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 1:
            await anyio.sleep_forever()  # the first request's wait, cancelled below
        await clock.sleep(seconds)

    clock.now = 1.0
    lim = RateLimiter(10, 1, clock=clock, sleep=sleep)
    clock.now = 0.0  # the first slot lies a second ahead: the first request waits for it
    with anyio.move_on_after(0.05):
        await lim.acquire()
    with anyio.fail_after(1):
        await lim.acquire()
    assert 2 == len(waits)


async def test_429s_from_jitter_widen_the_margin_then_it_narrows_again() -> None:
    """Under an announced limit a 429 means timing jitter beat our margin: cut 10 % (each 429
    costs a whole Retry-After), then creep back to 97 % of the limit, 1 % per quiet second."""
    lim, clock = limiter(100, 1)
    lim.nearly_exhausted(limit=100, remaining=0)
    assert lim.rate == 97.0
    await times(lim, clock, 2)  # requests went out at 97
    lim.rate_limited(1.0)
    assert lim.rate == pytest.approx(87.3)
    clock.now += 1.0  # the pause
    lim.rate_limited(1.0)  # jitter again: the margin widens again
    assert lim.rate == pytest.approx(78.57)
    clock.now += 1.0
    seen = await quiet_seconds(lim, clock, 25)
    assert seen[0] == pytest.approx(79.57)  # one quiet second: +1 % of the limit
    assert seen == sorted(seen)
    assert seen[-1] == 97.0  # never past 97 % of the announced limit


async def test_unlimited_never_sleeps() -> None:
    """rate 0 means no pacing at all, as long as the server shows no limit."""
    lim, clock = limiter(0)
    await times(lim, clock, 100)
    assert clock.sleeps == []
    lim.nearly_exhausted(limit=200, remaining=150)  # a limit, far from spent: still unpaced
    await times(lim, clock, 100)
    assert (clock.sleeps, lim.pacing) == ([], False)


async def test_unlimited_paces_under_an_announced_limit_once_the_budget_runs_low() -> None:
    """No --rate is no licence to burn the server's budget: once X-RateLimit-Remaining is nearly
    spent, requests are paced 3 % under X-RateLimit-Limit, and stay so."""
    lim, clock = limiter(0)
    await times(lim, clock, 50)
    lim.nearly_exhausted(limit=200, remaining=3)
    assert lim.rate == 194.0
    stamps = await times(lim, clock, 4)
    assert [b - a for a, b in itertools.pairwise(stamps)] == pytest.approx([1 / 194] * 3, abs=2e-6)
    clock.now += 30  # quiet for a long while: never back to unpaced, never past the limit
    await times(lim, clock, 2)
    assert lim.rate == 194.0


async def test_the_budget_must_cover_a_request_from_every_worker() -> None:
    """15 left of 200 is plenty for one request at a time, not for a pool of 16 (told, or seen):
    each worker may send again before the answers that tell us are read."""
    for told in (True, False):
        clock = FakeClock()
        lim = RateLimiter(0, pool=16 if told else 1, clock=clock, sleep=clock.sleep)
        await times(lim, clock, 1)
        lim.nearly_exhausted(limit=200, remaining=40)
        assert not lim.pacing
        if not told:
            for _ in range(16):
                await lim.acquire()
            for _ in range(16):  # a batch of answers, read before any worker sends again
                lim.answered()
        lim.nearly_exhausted(limit=200, remaining=15)
        assert lim.rate == 194.0


async def test_paced_at_the_limit_a_small_bucket_is_no_budget_running_out() -> None:
    """Paced at --rate 100 against a 100/s server whose bucket holds 10: 9 left is the bucket's
    size, not a budget running out; the pool's size only counts when nothing paces it."""
    clock = FakeClock()
    lim = RateLimiter(100, pool=16, clock=clock, sleep=clock.sleep)
    await times(lim, clock, 3)
    lim.nearly_exhausted(limit=100, remaining=9)
    assert lim.rate == 100.0
    lim.nearly_exhausted(limit=100, remaining=5)  # a twentieth of the limit: now it is
    assert lim.rate == 97.0


async def test_a_429_on_the_answer_that_announced_the_limit_does_not_cut_again() -> None:
    """The budget cut and a 429 on one answer: the 429 was earned at the old pace, so pause and
    restart at the announced pace, without the jitter cut."""
    lim, clock = limiter(0)
    await times(lim, clock, 60)
    lim.nearly_exhausted(limit=200, remaining=0)  # as the client reads the 429's headers
    assert lim.rate_limited(1.0) == 1.0
    assert lim.rate == 194.0
    stamps = await times(lim, clock, 2)
    assert stamps[0] == 1.0  # after the pause, at the announced pace
    lim.rate_limited(1.0)  # a request went at 194 and was refused: now it is jitter
    assert lim.rate == pytest.approx(174.6)


async def test_after_a_pause_the_pool_restarts_one_request_at_a_time() -> None:
    """Even with a burst allowed, and whether the 429 cut the rate or not."""
    for announce_first in (True, False):
        lim, clock = limiter(100, 10)
        await times(lim, clock, 10)
        if announce_first:
            lim.nearly_exhausted(limit=100, remaining=0)  # the cut comes with the 429
        lim.rate_limited(1.0)
        stamps = await times(lim, clock, 3)
        interval = 1 / lim.rate
        assert stamps == pytest.approx([1.0, 1.0 + interval, 1.0 + 2 * interval], abs=2e-6)


async def test_unlimited_without_headers_learns_from_the_first_429() -> None:
    """No --rate, no X-RateLimit headers: the rate unpaced requests went out at was refused;
    halve it, cap recovery 10 % under it, and grow back from there."""
    lim, clock = limiter(0)
    for _ in range(32):  # 32 requests over half a second: 64 per second
        await lim.acquire()
        lim.answered()
        clock.now += 1 / 64
    assert lim.rate_limited(1.0) == 1.0
    assert (lim.pacing, lim.rate) == (True, 32.0)
    clock.now += 1.0
    seen = await quiet_seconds(lim, clock, 12)
    assert seen == sorted(seen)
    assert seen[0] == pytest.approx(32 + 57.6 * 1.01 * 0.05, abs=0.01)  # 5 % of the ceiling
    assert max(seen) <= 57.6 * 1.01**12 + 0.01  # the ceiling (57.6) creeps 1 % a quiet second


async def test_429_pauses_everyone_and_halves_the_rate_once() -> None:
    """A 429 pauses the pool for Retry-After; the 429s of requests in flight do not halve again."""
    lim, clock = limiter(10, 1)
    await times(lim, clock, 3)  # t = 0.0, 0.1, 0.2
    assert lim.rate_limited(2.0) == 2.0
    lim.rate_limited(2.0)  # a second 429 from a request already in flight
    assert lim.rate == 5.0
    stamps = await times(lim, clock, 3)
    assert stamps == [2.2, 2.4, 2.6]  # after the pause, one at a time at the halved rate


async def test_429_without_retry_after_backs_off_exponentially() -> None:
    """No Retry-After: 1 s, then 2 s, then 4 s pauses."""
    lim, _clock = limiter(10, 1)
    pauses = []
    for _ in range(3):
        pauses.append(lim.rate_limited(None))
        await lim.acquire()
        lim.answered()
    assert pauses == [1.0, 2.0, 4.0]


async def test_without_retry_after_the_backoff_starts_over_after_a_quiet_spell() -> None:
    """The pause doubles only while the pool is refused as soon as it restarts: a 429 that comes
    after requests went through again pauses 1 s, not the run's n-th doubling (it used to grow
    to a minute per 429 over a long run against a server that sends no Retry-After)."""
    lim, clock = limiter(10, 1)
    pauses = []
    for _ in range(3):  # refused right after each restart: 1, 2, 4
        pauses.append(lim.rate_limited(None))
        await lim.acquire()
        lim.answered()
    clock.now += 5.0  # a quiet spell: requests go through
    pauses.append(lim.rate_limited(None))
    assert pauses == [1.0, 2.0, 4.0, 1.0]


async def test_answers_in_flight_during_a_pause_neither_lengthen_nor_double_it() -> None:
    lim, clock = limiter(10, 1)
    assert 1.0 == lim.rate_limited(None)
    clock.now += 0.5
    assert 0.5 == lim.rate_limited(None)  # sent before the pause: same pause, no doubling
    assert 1 == lim.pauses
    clock.now += 0.6  # the pause is over; refused again at once: now it doubles
    assert 2.0 == lim.rate_limited(None)


async def test_rate_recovers_gradually_to_the_target() -> None:
    """After a decrease the rate grows back by 5 % of the target each second up to 90 % of the
    refused rate, then by 1 % a second: never above the target."""
    lim, clock = limiter(100, 1)
    lim.rate_limited(0.0)
    assert lim.rate == 50.0
    seen = await quiet_seconds(lim, clock, 20)
    assert seen[:3] == [55.0, 60.0, 65.0]
    assert seen[7] == 90.0  # quickly back to 10 % under what was refused...
    assert seen[8] == 95.0  # ...a ceiling that crept up 1 % of itself each quiet second
    assert seen == sorted(seen)
    assert seen[-1] == 100.0


async def test_without_announced_limit_a_429_near_the_refused_rate_trims_instead_of_halving() -> (
    None
):
    """No X-RateLimit headers: the first 429 halves; one at the learned ceiling cuts 10 %, so the
    rate settles near the server's limit instead of sawing between half and full speed."""
    lim, clock = limiter(100, 1)
    lim.rate_limited(1.0)  # refused at 100
    assert lim.rate == 50.0
    clock.now += 1.0  # the pause
    await quiet_seconds(lim, clock, 4)  # four quiet seconds: 55, 60, 65, 70
    assert lim.rate == 70.0
    lim.rate_limited(1.0)  # refused at 70: the limit lies just under
    assert lim.rate == pytest.approx(63.0)
    clock.now += 1.0
    clock.now += 3.0  # refused again later on, not right after the pause
    lim.rate_limited(1.0)
    assert lim.rate == pytest.approx(56.7)


async def test_a_429_right_after_a_pause_halves() -> None:
    """Refused again within a second of restarting: the limit is far lower than learned."""
    lim, clock = limiter(100, 1)
    lim.rate_limited(1.0)
    clock.now += 1.0  # the pause ends
    await quiet_seconds(lim, clock, 8)
    assert lim.rate == 90.0
    lim.rate_limited(1.0)  # at the learned ceiling: trim
    assert lim.rate == pytest.approx(81.0)
    clock.now += 1.3  # the pause, then 0.3 s
    lim.rate_limited(1.0)  # the server's limit dropped: halve
    assert lim.rate == pytest.approx(40.5)


async def test_an_announced_limit_that_is_no_per_second_budget_is_soon_distrusted() -> None:
    """X-RateLimit-Limit: 600 may be per minute (10/s). Refused twice in a row as soon as the pool
    restarts under it, the limiter stops trusting it and halves, as with no headers, instead of
    trimming 10 % per 429 (40 429s from 582/s to 10/s); recovery is then scaled by what it
    learned, not by 600."""
    lim, clock = limiter(0)
    await times(lim, clock, 20)
    lim.nearly_exhausted(limit=600, remaining=0)
    assert lim.rate_limited(1.0) == 1.0  # on the announcing answer: pause only
    assert lim.rate == 582.0
    seen = []
    for _ in range(7):  # each restart refused within a fraction of a second
        clock.now += 1.0
        await times(lim, clock, 5)
        lim.rate_limited(1.0)
        seen.append(lim.rate)
    # One quick refusal may be jitter (trim 10 %); the second is not: halve from then on.
    assert seen == pytest.approx([523.8, 261.9, 130.95, 65.475, 32.7375, 16.36875, 8.184375])
    clock.now += 1.0
    lim.nearly_exhausted(limit=600, remaining=0)  # still announced on every answer: ignored
    quiet = await quiet_seconds(lim, clock, 3)
    learned = 16.36875 * 0.9  # 10 % under the last refused rate
    assert quiet[0] == pytest.approx(8.184375 + 0.05 * learned * 1.01, abs=0.01)
    assert max(quiet) < 16.36875  # recovering toward what it learned, not toward 582


async def test_one_quick_429_under_an_announced_limit_is_still_jitter() -> None:
    """A single 429 right after a pause, under an announced limit, trims; and a later quick
    refusal, after a 429 that came well clear of its pause, starts the count again."""
    lim, clock = limiter(100, 1)
    lim.nearly_exhausted(limit=100, remaining=0)
    await times(lim, clock, 2)
    lim.rate_limited(1.0)
    clock.now += 1.2
    await times(lim, clock, 1)
    lim.rate_limited(1.0)  # quick refusal, the first
    assert lim.rate == pytest.approx(97 * 0.9 * 0.9)
    clock.now += 5.0
    await times(lim, clock, 1)
    lim.rate_limited(1.0)  # well clear of the pause
    clock.now += 1.2
    await times(lim, clock, 1)
    before = lim.rate
    lim.rate_limited(1.0)  # quick again, but not twice in a row
    assert lim.rate == pytest.approx(before * 0.9)


async def test_slows_before_the_budget_runs_out() -> None:
    """X-RateLimit-Remaining near zero brings the rate under the server's limit."""
    lim, _ = limiter(100, 1)
    lim.nearly_exhausted(limit=50, remaining=1)
    assert lim.rate == 48.5
    lim2, _ = limiter(100, 1)
    lim2.nearly_exhausted(limit=None, remaining=None)  # no headers: nothing changes
    assert lim2.rate == 100.0


async def test_workers_are_served_in_turn() -> None:
    """Workers queue FIFO: none gets a second slot before every other waiting worker got one."""
    lim, _clock = limiter(10, 1)
    order: list[int] = []

    async def worker(n: int) -> None:
        for _ in range(5):
            await lim.acquire()
            lim.answered()
            order.append(n)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(worker, n)
    for start in range(0, 15, 3):
        assert {0, 1, 2} == set(order[start : start + 3])


async def test_rate_limited_retries_do_not_use_up_attempts() -> None:
    """Ten 429s then success, with max_attempts 2: the 429s were free."""
    calls = 0

    async def no_sleep(_: float) -> None:
        await anyio.lowlevel.checkpoint()

    async for attempt in retrying(2, sleep=no_sleep):
        with attempt:
            calls += 1
            if calls <= 10:
                raise NotAppliedError("HTTP 429", http_status=429, retry_after=1)
    assert calls == 11


async def test_other_retryable_errors_are_bounded_and_permanent_ones_are_not_retried() -> None:
    """503s stop after max_attempts; a 404 is raised at once."""
    calls = 0

    async def no_sleep(_: float) -> None:
        await anyio.lowlevel.checkpoint()

    with pytest.raises(NotAppliedError):
        async for attempt in retrying(3, sleep=no_sleep):
            with attempt:
                calls += 1
                raise NotAppliedError("HTTP 503", http_status=503)
    assert calls == 3
    with pytest.raises(PermanentError):
        async for attempt in retrying(3, sleep=no_sleep):
            with attempt:
                calls += 1
                raise PermanentError("HTTP 404", http_status=404)
    assert calls == 4


async def test_retry_after_sets_the_wait() -> None:
    """A Retry-After on a 503 is the wait before the next attempt."""
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)
        await anyio.lowlevel.checkpoint()

    with pytest.raises(NotAppliedError):
        async for attempt in retrying(2, sleep=record):
            with attempt:
                raise NotAppliedError("HTTP 503", http_status=503, retry_after=7)
    assert waits == [7]


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), ("0.5", 0.5), ("-3", 0.0), ("soon", None), ("nan", None), ("inf", None)],
)
def test_retry_after_header_is_read_as_seconds(header: str, expected: float | None) -> None:
    """Seconds as sent, never negative; anything that is no finite wait means back off."""
    assert _retry_after(httpx.Response(429, headers={"Retry-After": header})) == expected


def test_retry_after_as_an_http_date_is_the_time_left() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    wait = _retry_after(httpx.Response(429, headers={"Retry-After": when}))
    assert wait is not None
    assert 28 <= wait <= 30


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "7"}, (100, 7)),
        ({"x-ratelimit-remaining": " 0 ", "X-RATELIMIT-LIMIT": "5"}, (5, 0)),
        ({"X-RateLimit-Limit": "1.5", "X-RateLimit-Remaining": "many"}, (None, None)),
        ({"X-RateLimit-Reset": "1700000000"}, (None, None)),
    ],
)
def test_rate_headers_are_read_whatever_their_case(
    headers: dict[str, str], expected: tuple[int | None, int | None]
) -> None:
    """The budget headers the limiter slows down on: any case, numbers only."""
    assert _rate_headers(httpx.Response(200, headers=headers)) == expected


def test_auto_concurrency_grows_until_the_rate_is_reached() -> None:
    """Below the target rate with steady latency, in-flight doubles; at the target it holds."""
    from batch_assign.autoscale import ConcurrencyController

    controller = ConcurrencyController(200, start=8, maximum=64)
    controller.step(rate=80, latency=0.1)
    assert 16 == controller.limiter.total_tokens
    controller.step(rate=160, latency=0.1)
    assert 32 == controller.limiter.total_tokens
    controller.step(rate=195, latency=0.1)  # within 5 % of the target: enough
    assert 32 == controller.limiter.total_tokens
    controller.step(rate=100, latency=0.1)
    controller.step(rate=100, latency=0.1)
    assert 64 == controller.limiter.total_tokens  # never past the ceiling


def test_auto_concurrency_stops_when_latency_climbs() -> None:
    """When more in flight only makes answers slower, the API is queueing: stop growing."""
    from batch_assign.autoscale import ConcurrencyController

    controller = ConcurrencyController(0, start=8, maximum=256)  # no rate target
    controller.step(rate=80, latency=0.1)
    assert 16 == controller.limiter.total_tokens
    controller.step(rate=90, latency=0.2)
    assert 16 == controller.limiter.total_tokens


async def test_precise_sleep_never_wakes_early_and_lets_the_loop_run() -> None:
    """Real clock, no upper bound asserted: it never returns before its deadline, and other
    tasks keep running through the naps of its last stretch."""
    passes = 0

    async def other_task() -> None:
        nonlocal passes
        while True:
            passes += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(other_task)
        for seconds in (0.0, 0.0005, 0.001, 0.003):
            before, started = passes, time.monotonic()
            await precise_sleep(seconds)
            assert time.monotonic() - started >= seconds
            if seconds >= 0.001:
                assert passes > before
        tg.cancel_scope.cancel()
