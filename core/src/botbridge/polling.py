"""One scheduler for every conversation a bot backend must poll for late replies.

A backend whose bot can answer after the turn (Direct Line) reads each open
conversation again and again. One task per conversation costs a read per
conversation per interval: a thousand contacts in the last minute would be a
thousand reads a second. Here all of them share one task and, per budget
group (a connector), at most `budget` reads a second, evenly spaced. A
conversation is read `interval` seconds after its last activity, then twice
as long after each read that found nothing, up to `max_interval`; `window`
seconds after its last activity it is dropped. When more are due than the
budget allows, the one with the most recent activity is read first, so a
conversation that just had a turn is read promptly and a long-idle one waits.

Nothing here knows a provider: `read` is the backend's and says whether it
found activity. It lives in core so that any backend that has to pull late
replies shares the same budget rules and the same tests.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

from botbridge.clock import Clock

logger = logging.getLogger("botbridge.polling")

Read = Callable[[], Awaitable[bool]]
MAX_BACKOFF = 30  # a failing read waits at most this many intervals
# Reads of a group are spaced 1/budget apart, plus this, so that rounding
# never fits budget + 1 of them in one second.
SPACING_SLACK = 1e-9
NEVER = float("inf")


class ReadFailed(Exception):
    """Raised by a `read` that failed and said why itself: backed off, not logged again."""


@dataclass(frozen=True)
class Pace:
    """How one conversation is read: seconds, and `budget` reads a second for its group."""

    interval: float
    max_interval: float
    window: float
    budget: float


@dataclass(eq=False)
class _Watch:
    key: Hashable
    group: str
    read: Read
    pace: Pace
    last_activity: float
    quiet: int = 0  # reads in a row that found nothing
    failures: int = 0  # reads in a row that failed
    version: int = 0  # bumped on each reschedule: older heap entries are stale
    task: asyncio.Task[None] | None = None  # the read in flight

    def next_read(self, now: float) -> float:
        interval = min(self.pace.interval * 2.0 ** min(self.quiet, 30), max(self.pace.interval, self.pace.max_interval))
        # Due no later than the end of its window, where it is dropped.
        return min(now + interval * min(2.0**self.failures, MAX_BACKOFF), self.last_activity + self.pace.window)


Entry = tuple[float, int, int, _Watch]  # (due or -recency, tie-break, version, watch)


@dataclass
class _Group:
    next_read: float = 0.0  # the earliest time its budget allows its next read
    ready: list[Entry] = field(default_factory=list)  # due watches, most recent activity first


class PollScheduler:
    """Reads watched conversations within a per-group budget, on one task."""

    def __init__(
        self, clock: Clock, *, name: str = "late-replies", on_idle: Callable[[Hashable], None] | None = None
    ) -> None:
        self.clock = clock
        self.name = name
        self.on_idle = on_idle  # called with the key of a watch dropped at the end of its window
        self._watches: dict[Hashable, _Watch] = {}
        self._groups: dict[str, _Group] = {}
        self._timeline: list[Entry] = []
        self._seq = itertools.count()
        self._runner: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self._wake_at = NEVER
        self.reads = 0  # reads started, for metrics and benchmarks

    # --- what backends call ---

    def watch(self, key: Hashable, group: str, read: Read, pace: Pace) -> None:
        """Watch `key`, with activity now: its next read is `pace.interval` away."""
        now = self.clock.now()
        watch = self._watches.get(key)
        if watch is None:
            watch = self._watches[key] = _Watch(key, group, read, pace, now)
        watch.group, watch.read, watch.pace = group, read, pace
        watch.last_activity, watch.quiet = now, 0
        if watch.task is None:
            self._schedule(watch, watch.next_read(now))

    async def forget(self, key: Hashable) -> None:
        """Stop watching `key`; a read of it in flight (unless it is the caller) is cancelled."""
        watch = self._watches.pop(key, None)  # its heap entries are skipped when they come up
        if watch is not None and watch.task is not None and watch.task is not asyncio.current_task():
            watch.task.cancel()
            await asyncio.wait({watch.task})
        if not self._watches:
            self._kick.set()

    def watching(self, key: Hashable) -> bool:
        return key in self._watches

    def __len__(self) -> int:
        return len(self._watches)

    async def aclose(self) -> None:
        watches = list(self._watches.values())
        self._watches.clear()
        tasks = [t for t in (self._runner, *(w.task for w in watches)) if t is not None]
        self._runner = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    # --- scheduling ---

    def _schedule(self, watch: _Watch, due: float) -> None:
        watch.version += 1
        heapq.heappush(self._timeline, (due, next(self._seq), watch.version, watch))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name=f"{self.name}-scheduler")
        elif due < self._wake_at:
            self._kick.set()

    def _current(self, watch: _Watch, version: int) -> bool:
        return self._watches.get(watch.key) is watch and watch.version == version and watch.task is None

    def _idle(self, watch: _Watch, now: float) -> bool:
        if now - watch.last_activity < watch.pace.window:
            return False
        del self._watches[watch.key]
        if self.on_idle is not None:
            self.on_idle(watch.key)
        return True

    async def _run(self) -> None:
        try:
            while self._watches:
                now = self.clock.now()
                self._collect_due(now)
                wake = self._start_reads(now)
                if self._timeline:
                    wake = min(wake, self._timeline[0][0])
                await self._sleep_until(wake)
        finally:
            self._wake_at = NEVER

    def _collect_due(self, now: float) -> None:
        """Move due watches to their group's ready heap; drop the ones idle past their window."""
        while self._timeline and self._timeline[0][0] <= now:
            _, _, version, watch = heapq.heappop(self._timeline)
            if self._current(watch, version) and not self._idle(watch, now):
                group = self._groups.setdefault(watch.group, _Group())
                heapq.heappush(group.ready, (-watch.last_activity, next(self._seq), version, watch))

    def _start_reads(self, now: float) -> float:
        """Start what each group's budget allows now; return when a budget next allows one."""
        wake = NEVER
        for name, group in list(self._groups.items()):
            while group.ready and group.next_read <= now:
                _, _, version, watch = heapq.heappop(group.ready)
                if self._current(watch, version) and not self._idle(watch, now):
                    group.next_read = max(group.next_read, now) + 1.0 / watch.pace.budget + SPACING_SLACK
                    self.reads += 1
                    watch.task = asyncio.create_task(self._read(watch), name=f"{self.name}-read")
            if group.ready:
                wake = min(wake, group.next_read)
            elif group.next_read <= now:
                del self._groups[name]
        return wake

    async def _read(self, watch: _Watch) -> None:
        before = watch.last_activity
        try:
            found = await watch.read()
            watch.failures = 0
        except ReadFailed:
            watch.failures, found = watch.failures + 1, False
        except Exception:
            logger.exception("%s: reading %s failed", self.name, watch.key)
            watch.failures, found = watch.failures + 1, False
        finally:
            watch.task = None
        if self._watches.get(watch.key) is not watch:
            return  # forgotten meanwhile
        now = self.clock.now()
        if found:
            watch.last_activity, watch.quiet = now, 0
        elif watch.failures == 0 and watch.last_activity == before:
            watch.quiet += 1
        self._schedule(watch, watch.next_read(now))

    async def _sleep_until(self, wake: float) -> None:
        self._wake_at = wake
        self._kick.clear()
        waits: set[asyncio.Future[object]] = {asyncio.ensure_future(self._kick.wait())}
        if wake != NEVER:
            waits.add(asyncio.ensure_future(self.clock.sleep(max(0.0, wake - self.clock.now()))))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in waits:
                future.cancel()


__all__ = ["Pace", "PollScheduler", "Read", "ReadFailed"]
