"""What workers know about a failing store: since when, why, and what to log.

Workers never end over a store error; they wait it out (see
`Engine._settle`). This records the outage so `/readyz` can say workers are
stalled, and keeps the log to one line when it starts, one every
`LOG_EVERY` seconds while it lasts, and one when the store answers again.
"""

from __future__ import annotations

import logging
import time

logger = logging.getLogger("botbridge.engine")

LOG_EVERY = 30.0
# A blip shorter than this is not worth failing readiness over.
NOT_READY_AFTER = 1.0


class StoreWaits:
    def __init__(self) -> None:
        self.failing_since: float | None = None
        self.reason = ""
        self.failures = 0
        self._logged_at = 0.0

    def failed(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        self.failures += 1
        self.reason = f"{what}: {type(exc).__name__}: {exc}"[:300]
        if self.failing_since is None:
            self.failing_since = now
            self._logged_at = now
            logger.warning("store failed %s; workers wait and retry", self.reason)
        elif now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            logger.warning(
                "store still failing after %.0f s (%d tries); last: %s",
                now - self.failing_since,
                self.failures,
                self.reason,
            )

    def answered(self) -> None:
        if self.failing_since is not None:
            logger.warning("store answers again after %.1f s; workers resume", time.monotonic() - self.failing_since)
            self.failing_since = None
            self.failures = 0

    def problem(self) -> str | None:
        if self.failing_since is None or time.monotonic() - self.failing_since < NOT_READY_AFTER:
            return None
        return f"workers are waiting for the store ({time.monotonic() - self.failing_since:.0f} s): {self.reason}"
