"""The shared late-reply scheduler, on a fake clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Hashable
from typing import Any

import pytest

from botbridge.clock import FakeClock
from botbridge.polling import Pace, PollScheduler, ReadFailed

pytestmark = pytest.mark.anyio
START = 1_700_000_000.0
DEFAULTS = Pace(interval=1.0, max_interval=15.0, window=60.0, budget=20.0)


class Reads:
    """Read functions that note when each key was read and answer as told."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.log: list[tuple[float, Hashable]] = []
        self.answers: dict[Hashable, list[Any]] = {}  # per key: True/False or an exception, in order

    def of(self, key: Hashable) -> Any:
        async def read() -> bool:
            self.log.append((self.clock.now() - START, key))
            answers = self.answers.get(key)
            answer = answers.pop(0) if answers else False
            if isinstance(answer, BaseException):
                raise answer
            return bool(answer)

        return read

    def times(self, key: Hashable) -> list[float]:
        return [round(t, 3) for t, k in self.log if k == key]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def scheduler(clock: FakeClock) -> AsyncIterator[PollScheduler]:
    scheduler = PollScheduler(clock)
    yield scheduler
    await scheduler.aclose()


async def settle() -> None:
    for _ in range(30):  # the scheduler wakes, starts reads, the reads run, the scheduler sleeps again
        await asyncio.sleep(0)


async def run_for(clock: FakeClock, seconds: float) -> None:
    """Let `seconds` pass, stopping at every sleeper's deadline exactly."""
    end = clock.now() + seconds
    await settle()
    while True:
        deadline = clock.next_deadline
        if deadline is None or deadline > end:
            clock.advance(end - clock.now())
            await settle()
            return
        clock.advance(max(0.0, deadline - clock.now()))
        await settle()


def busiest_second(times: list[float]) -> int:
    return max((sum(1 for s in times if t <= s < t + 1) for t in times), default=0)


async def test_an_idle_conversation_is_read_less_and_less_often_then_dropped(
    scheduler: PollScheduler, clock: FakeClock
) -> None:
    dropped: list[Hashable] = []
    scheduler.on_idle = dropped.append
    reads = Reads(clock)
    scheduler.watch("c1", "conn", reads.of("c1"), DEFAULTS)
    await run_for(clock, 70)
    assert reads.times("c1") == pytest.approx([1, 3, 7, 15, 30, 45], abs=1e-6)
    assert not scheduler.watching("c1") and dropped == ["c1"]
    await run_for(clock, 30)
    assert len(reads.log) == 6  # nothing reads it any more


async def test_a_read_that_finds_activity_starts_the_intervals_again(
    scheduler: PollScheduler, clock: FakeClock
) -> None:
    reads = Reads(clock)
    reads.answers["c1"] = [False, False, True]
    scheduler.watch("c1", "conn", reads.of("c1"), DEFAULTS)
    await run_for(clock, 12)
    assert reads.times("c1") == pytest.approx([1, 3, 7, 8, 10], abs=1e-6)


async def test_a_new_turn_makes_the_next_read_soon_and_extends_the_window(
    scheduler: PollScheduler, clock: FakeClock
) -> None:
    reads = Reads(clock)
    scheduler.watch("c1", "conn", reads.of("c1"), DEFAULTS)
    await run_for(clock, 20)  # read at 1, 3, 7, 15; the next one due at 30
    scheduler.watch("c1", "conn", reads.of("c1"), DEFAULTS)  # the contact wrote again at 20
    await run_for(clock, 2)
    assert reads.times("c1") == pytest.approx([1, 3, 7, 15, 21], abs=1e-6)
    await run_for(clock, 70)
    assert max(reads.times("c1")) == pytest.approx(65, abs=1e-6)  # 21, 23, 27, 35, 50, 65: the window counts from 20
    assert not scheduler.watching("c1")


async def test_a_connectors_reads_keep_to_its_budget_and_fresh_conversations_go_first(
    scheduler: PollScheduler, clock: FakeClock
) -> None:
    reads = Reads(clock)
    pace = Pace(interval=1.0, max_interval=15.0, window=60.0, budget=5.0)
    for n in range(100):  # a hundred turns in the same moment
        scheduler.watch(f"old{n}", "conn", reads.of(f"old{n}"), pace)
    await run_for(clock, 10)
    scheduler.watch("fresh", "conn", reads.of("fresh"), pace)  # a turn now, behind a long queue
    await run_for(clock, 10)
    times = [t for t, _ in reads.log]
    assert busiest_second(times) <= 5
    assert len(times) >= 5 * 19  # and the budget is used, not wasted
    # its read is due at 11: the next free place of the budget, before every older one
    assert reads.times("fresh")[0] == pytest.approx(11, abs=1e-6)


async def test_each_connector_has_its_own_budget(scheduler: PollScheduler, clock: FakeClock) -> None:
    reads = Reads(clock)
    busy = Pace(interval=1.0, max_interval=15.0, window=60.0, budget=2.0)
    for n in range(50):
        scheduler.watch(("busy", n), "busy-connector", reads.of(("busy", n)), busy)
    scheduler.watch("quiet", "quiet-connector", reads.of("quiet"), DEFAULTS)
    await run_for(clock, 4)
    assert reads.times("quiet") == pytest.approx([1, 3], abs=1e-6)
    assert busiest_second([t for t, k in reads.log if k != "quiet"]) <= 2


async def test_failing_reads_back_off_and_are_logged_once_by_whoever_knows_why(
    scheduler: PollScheduler, clock: FakeClock, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING, logger="botbridge.polling")
    reads = Reads(clock)
    reads.answers["c1"] = [ReadFailed(), ReadFailed(), RuntimeError("a bug"), True]
    scheduler.watch("c1", "conn", reads.of("c1"), DEFAULTS)
    await run_for(clock, 20)
    # 1, then 2 and 4 intervals of 1 s after failures, then 8 after the third
    assert reads.times("c1")[:5] == pytest.approx([1, 3, 7, 15, 16], abs=1e-6)
    logged = [r for r in caplog.records if r.name == "botbridge.polling"]
    assert len(logged) == 1 and "a bug" in (logged[0].exc_text or "")


async def test_forget_cancels_a_read_in_flight_and_aclose_stops_everything(clock: FakeClock) -> None:
    scheduler = PollScheduler(clock)
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow_read() -> bool:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return False

    reads = Reads(clock)
    scheduler.watch("slow", "conn", slow_read, DEFAULTS)
    scheduler.watch("other", "conn", reads.of("other"), DEFAULTS)
    await run_for(clock, 1.1)
    assert started.is_set()
    await scheduler.forget("slow")
    assert cancelled.is_set() and not scheduler.watching("slow") and scheduler.watching("other")
    await scheduler.aclose()
    assert len(scheduler) == 0
    before = len(reads.log)
    await run_for(clock, 20)
    assert len(reads.log) == before


async def test_a_read_may_forget_its_own_conversation(scheduler: PollScheduler, clock: FakeClock) -> None:
    async def refused() -> bool:
        await scheduler.forget("c1")  # e.g. the bot refused the credentials
        return False

    scheduler.watch("c1", "conn", refused, DEFAULTS)
    await run_for(clock, 2)
    assert not scheduler.watching("c1")
    assert scheduler.reads == 1
