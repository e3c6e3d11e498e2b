"""Wake every waiter at once (the live streams of this host when it wrote to the stream buffer)."""

from __future__ import annotations

import asyncio


class Broadcast:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seconds: float) -> None:
        """Return when `notify` is called, or after `seconds`."""
        # asyncio.wait, not wait_for: on Python 3.11 wait_for can lose the cancel of
        # a client that went away if it lands as the event is set.
        waiter = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait({waiter}, timeout=seconds)
        finally:
            waiter.cancel()
