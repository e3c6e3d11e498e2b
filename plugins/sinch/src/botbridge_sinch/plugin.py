"""The hook implementations botbridge finds through the `botbridge` entry point."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botbridge import hookimpl
from botbridge_sinch.channel import SinchChannel


@hookimpl
def register_channels(register: Callable[[type[Any]], None]) -> None:
    register(SinchChannel)


@hookimpl
def register_fakes(register: Callable[..., None]) -> None:
    def fake() -> Any:
        from botbridge_sinch.testing import SinchPhone

        return SinchPhone()

    register("channel", "sinch", fake)
