"""Log context: a correlation id that follows one MO through bot, MT and events.

Phone numbers are masked in every log line botbridge writes; secrets are
never logged at all.
"""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime

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


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, correlation id, message."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "correlation_id": getattr(record, "correlation_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str, fmt: str) -> None:
    """Logging for `botbridge serve`: plain lines or JSON lines, with correlation ids."""
    install()
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per outbound request is noise at INFO; botbridge logs what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)


install()
