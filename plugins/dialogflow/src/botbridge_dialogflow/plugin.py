"""The hooks botbridge finds through the `dialogflow` entry point."""

from __future__ import annotations

from typing import Any

from botbridge import hookimpl
from botbridge_dialogflow.bot import DialogflowBackend


@hookimpl
def register_bot_backends(register: Any) -> None:
    register(DialogflowBackend)
