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
        event = self._event
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            pass
