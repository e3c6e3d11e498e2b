"""Log context: a correlation id that follows one MO through bot, MT and events.

Phone numbers are masked in every log line botbridge writes; secrets are
never logged at all.
"""

from __future__ import annotations

import contextvars
import logging

correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="-")

_factory = logging.getLogRecordFactory()


def _record_with_correlation(*args: object, **kwargs: object) -> logging.LogRecord:
    record = _factory(*args, **kwargs)
    record.correlation_id = correlation_id.get()
    return record


def install() -> None:
    """Give every log record a `correlation_id` attribute (idempotent)."""
    if logging.getLogRecordFactory() is not _record_with_correlation:
        logging.setLogRecordFactory(_record_with_correlation)


def mask(address: str) -> str:
    """`+14085551212` → `+14…212`: enough to tell contacts apart in a log, not to call them."""
    if len(address) <= 6:
        return "…"
    return f"{address[:3]}…{address[-3:]}"


install()
