"""The hooks botbridge finds through the `dialogflow` entry point."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botbridge import hookimpl
from botbridge_dialogflow.bot import DialogflowBackend


@hookimpl
def register_bot_backends(register: Any) -> None:
    register(DialogflowBackend)


@hookimpl
def register_fakes(register: Callable[..., None]) -> None:
    def fake() -> Any:
        from botbridge_dialogflow.testing import DialogflowScript

        return DialogflowScript()

    register("bot", "GOOGLE_DIALOG_FLOW", fake)
