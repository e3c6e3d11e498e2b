"""The entry point of `botbridge-scg`: registers the `scg` channel."""

from __future__ import annotations

from typing import Any

from botbridge import hookimpl
from botbridge_scg.channel import ScgChannel


@hookimpl
def register_channels(register: Any) -> None:
    register(ScgChannel)
