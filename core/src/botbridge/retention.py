"""History is kept BOTBRIDGE_HISTORY_DAYS and then forgotten, by the host itself; the live
stream's buffer an hour.

Each host purges at start and then every hour; hosts sharing a store may all
do it (deleting what is already gone is harmless). A failing store is only
logged: the next round tries again.
"""

from __future__ import annotations

import asyncio
import logging

from botbridge.clock import Clock
from botbridge.store import Store

logger = logging.getLogger("botbridge.retention")

EVERY = 3600.0
# The live stream's buffer: what a reconnecting client can still catch up on (an hour, up to two).
STREAM_KEEP = 3600.0


class Retention:
    def __init__(self, store: Store, clock: Clock, days: float) -> None:
        self.store = store
        self.clock = clock
        self.days = days
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def purge(self) -> int:
        now = self.clock.now()
        await self.store.trim_stream(now - STREAM_KEEP)
        gone = await self.store.purge_history(now - self.days * 86400.0)
        if gone:
            logger.info("forgot %d history records older than %g days", gone, self.days)
        return gone

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="retention")

    async def stop(self) -> None:
        # A flag beside the cancel: on Python 3.11 asyncio.wait_for, which store
        # clients use inside their calls, loses a cancel that lands just as its
        # inner await finishes; the purge then returns normally and, without the
        # flag, the task would go on to sleep an hour while the host waits for it.
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.purge()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("purging history failed (tried again in an hour): %s", exc)
            if self._stopping:
                return
            await self.clock.sleep(EVERY)
