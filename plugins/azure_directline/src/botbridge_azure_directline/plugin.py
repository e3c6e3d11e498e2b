"""The entry point botbridge discovers: registers the Direct Line backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botbridge import hookimpl
from botbridge_azure_directline.bot import DirectLineBot


@hookimpl
def register_bot_backends(register: Any) -> None:
    register(DirectLineBot)


@hookimpl
def register_fakes(register: Callable[..., None]) -> None:
    def fake() -> Any:
        from botbridge_azure_directline.testing import DirectLineScript

        return DirectLineScript()

    register("bot", "AZURE_BOT_DIRECT_LINE", fake)
