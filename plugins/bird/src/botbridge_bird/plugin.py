"""The hook implementations botbridge finds through the `bird` entry point."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botbridge import hookimpl
from botbridge_bird.channel import BirdChannel


@hookimpl
def register_channels(register: Any) -> None:
    register(BirdChannel)


@hookimpl
def register_fakes(register: Callable[..., None]) -> None:
    def fake() -> Any:
        from botbridge_bird.testing import BirdPhone

        return BirdPhone()

    register("channel", "bird", fake)
