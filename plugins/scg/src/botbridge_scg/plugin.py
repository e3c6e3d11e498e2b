"""The entry point of `botbridge-scg`: registers the `scg` channel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botbridge import hookimpl
from botbridge_scg.channel import ScgChannel


@hookimpl
def register_channels(register: Any) -> None:
    register(ScgChannel)


@hookimpl
def register_fakes(register: Callable[..., None]) -> None:
    def fake() -> Any:
        from botbridge_scg.testing import ScgPhone

        return ScgPhone()

    register("channel", "scg", fake)
