"""The hook implementations botbridge finds through the `bird` entry point."""

from __future__ import annotations

from typing import Any

from botbridge import hookimpl
from botbridge_bird.channel import BirdChannel


@hookimpl
def register_channels(register: Any) -> None:
    register(BirdChannel)
