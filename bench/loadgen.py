"""The load generator: signed SCG webhooks to one or more hosts, round trips timed at the SCG fake.

It reads one JSON spec (argument) and prints one JSON result. Modes:

- `closed`: C round trips in flight: each virtual phone posts a webhook,
  waits until the reply reached the SCG fake, then posts the next (full
  speed without building a backlog); `count` bounds it as well as `seconds`.
- `open`: webhooks at a fixed offered rate, evenly spaced, for `seconds`,
  whatever the answers (latency from the scheduled send time).
- `flood`: C connections posting webhooks back to back (accept capacity;
  replies are not waited for, a store-backed host builds a backlog).

Latency of one MO = MT arrival at the SCG fake − webhook send time − the
time the fakes spent on that turn. Completed/s counts MTs that arrived
within the window; a bounded drain follows the window.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from common import ESS_SECRET, contact_for, cpu_seconds, peak_rss_mib, text_for

from botbridge_scg.testing import EssAuth, FakeScg


@dataclass
class Spec:
    targets: list[str]  # webhook URLs; MOs alternate between them
    stream: str  # the SCG fake's arrival stream
    mode: str  # closed | open | flood
    seconds: float
    seq_base: int
    pool: int = 1000  # contacts, taking turns round-robin
    pool_prefix: str = "555"
    concurrency: int = 32
    rate: float = 0.0
    count: int | None = None
    drain: float = 10.0
    pids: dict[str, list[int]] = field(default_factory=dict)  # label -> pids whose CPU is measured
    timeout: float = 20.0


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Run:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.ess = FakeScg()
        self.auth = EssAuth.basic(ESS_SECRET)
        self.sent_at: dict[int, float] = {}
        self.status: dict[int, int] = {}
        self.arrivals: dict[int, tuple[float, float]] = {}
        self.waiters: dict[int, asyncio.Future[None]] = {}
        self.accepted_at: list[float] = []
        self.errors = 0
        self.next = 0

    def body(self, i: int) -> tuple[bytes, dict[str, str]]:
        contact = contact_for(i % self.spec.pool, self.spec.pool_prefix)
        event = self.ess.mo_event(text_for(self.spec.seq_base + i), contact)
        return self.ess.encode(event), self.ess.headers(event, self.auth)

    async def read_stream(self, session: aiohttp.ClientSession, ready: asyncio.Event) -> None:
        async with session.get(self.spec.stream, timeout=aiohttp.ClientTimeout(total=None)) as response:
            async for raw in response.content:
                line = raw.decode().strip()
                if line == "ready":
                    ready.set()
                    continue
                seq_text, arrived, fake = line.split()
                seq = int(seq_text) - self.spec.seq_base
                self.arrivals.setdefault(seq, (float(arrived), float(fake)))
                waiter = self.waiters.pop(seq, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    async def post(self, session: aiohttp.ClientSession, i: int, scheduled: float | None = None) -> bool:
        content, headers = self.body(i)
        target = self.spec.targets[i % len(self.spec.targets)]
        self.sent_at[i] = scheduled if scheduled is not None else time.monotonic()
        try:
            async with session.post(target, data=content, headers=headers) as response:
                await response.read()
                self.status[i] = response.status
        except (aiohttp.ClientError, TimeoutError):
            self.status[i] = 0
        if 200 <= self.status[i] < 300:
            self.accepted_at.append(time.monotonic())
            return True
        self.errors += 1
        return False

    def take(self) -> int | None:
        if self.spec.count is not None and self.next >= self.spec.count:
            return None
        i, self.next = self.next, self.next + 1
        return i

    async def closed_phone(self, session: aiohttp.ClientSession, deadline: float, wait: bool) -> None:
        loop = asyncio.get_running_loop()
        while time.monotonic() < deadline:
            i = self.take()
            if i is None:
                return
            if wait:
                self.waiters[i] = loop.create_future()
            if not await self.post(session, i):
                self.waiters.pop(i, None)
                continue
            if wait and i not in self.arrivals:
                try:
                    await asyncio.wait_for(
                        self.waiters[i], max(0.1, min(self.spec.timeout, deadline - time.monotonic()))
                    )
                except TimeoutError:
                    self.waiters.pop(i, None)

    async def open_loop(self, session: aiohttp.ClientSession, start: float) -> None:
        interval = 1.0 / self.spec.rate
        total = int(self.spec.rate * self.spec.seconds)
        tasks: set[asyncio.Task[bool]] = set()
        for i in range(total):
            due = start + i * interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.post(session, i, scheduled=due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            self.next = i + 1
        if tasks:
            await asyncio.wait(tasks, timeout=self.spec.timeout)

    async def main(self) -> dict[str, Any]:
        spec = self.spec
        connector = aiohttp.TCPConnector(limit=1024, force_close=False)
        timeout = aiohttp.ClientTimeout(total=spec.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            ready = asyncio.Event()
            reader = asyncio.create_task(self.read_stream(session, ready))
            await asyncio.wait_for(ready.wait(), 10)
            cpu0 = self.cpu()
            start = time.monotonic()
            deadline = start + spec.seconds
            if spec.mode == "open":
                await self.open_loop(session, start)
            else:
                wait = spec.mode == "closed"
                phones = [self.closed_phone(session, deadline, wait) for _ in range(spec.concurrency)]
                await asyncio.gather(*phones)
            end = min(time.monotonic(), deadline) if spec.mode != "open" else start + spec.seconds
            sent_end = time.monotonic()
            # drain: until every accepted MO has its reply, no progress for a while, or the bound
            drain_deadline = sent_end + spec.drain
            last, last_change = len(self.arrivals), time.monotonic()
            accepted = {i for i, s in self.status.items() if 200 <= s < 300}
            while time.monotonic() < drain_deadline and not accepted <= self.arrivals.keys():
                await asyncio.sleep(0.05)
                if len(self.arrivals) != last:
                    last, last_change = len(self.arrivals), time.monotonic()
                elif time.monotonic() - last_change > 3.0 and spec.mode != "flood":
                    break
            drained = time.monotonic()
            cpu1 = self.cpu()
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        return self.report(start, end, drained, cpu0, cpu1, accepted)

    def cpu(self) -> dict[str, float]:
        out = {}
        for label, pids in self.spec.pids.items():
            total = 0.0
            for pid in pids:
                try:
                    total += cpu_seconds(pid)
                except OSError:
                    pass
            out[label] = total
        out["loadgen"] = cpu_seconds(os.getpid())
        return out

    def report(
        self,
        start: float,
        end: float,
        drained: float,
        cpu0: dict[str, float],
        cpu1: dict[str, float],
        accepted: set[int],
    ) -> dict[str, Any]:
        spec = self.spec
        window = max(1e-9, end - start)
        in_window = sum(1 for t, _ in self.arrivals.values() if start <= t <= end)
        accepted_in_window = sum(1 for t in self.accepted_at if start <= t <= end)
        added, raw, fakes = [], [], []
        for i, (arrived, fake) in self.arrivals.items():
            sent = self.sent_at.get(i)
            if sent is None:
                continue
            raw.append(arrived - sent)
            fakes.append(fake)
            added.append(max(0.0, arrived - sent - fake))
        completed = len(self.arrivals)
        cpu = {label: cpu1[label] - cpu0.get(label, 0.0) for label in cpu1}
        result: dict[str, Any] = {
            "mode": spec.mode,
            "offered_rate": spec.rate if spec.mode == "open" else None,
            "concurrency": spec.concurrency if spec.mode != "open" else None,
            "targets": len(spec.targets),
            "window_s": round(window, 3),
            "drain_s": round(drained - end, 3),
            "sent": len(self.status),
            "accepted": len(accepted),
            "errors": self.errors,
            "accepted_per_s": round(accepted_in_window / window, 1),
            "completed": completed,
            "completed_per_s": round(in_window / window, 1),
            "lost_or_late": len(accepted - self.arrivals.keys()),
            "cpu_s": {k: round(v, 3) for k, v in cpu.items()},
            "cpu_ms_per_msg": {k: round(1000 * v / completed, 3) if completed else None for k, v in cpu.items()},
        }
        for name, values in (("added_ms", added), ("raw_ms", raw), ("fakes_ms", fakes)):
            result[name] = {
                f"p{q}": round(1000 * p, 2) if (p := percentile(values, q)) is not None else None for q in (50, 95, 99)
            }
        rss = {}
        for label, pids in spec.pids.items():
            try:
                rss[label] = round(sum(peak_rss_mib(pid) for pid in pids), 1)
            except OSError:
                rss[label] = None
        result["peak_rss_mib"] = rss
        return result


def main() -> None:
    spec = Spec(**json.loads(sys.argv[1]))
    import uvloop

    result = uvloop.run(Run(spec).main())
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
