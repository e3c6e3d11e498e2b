"""The entry point botbridge discovers: registers the Direct Line backend."""

from __future__ import annotations

from typing import Any

from botbridge import hookimpl
from botbridge_azure_directline.bot import DirectLineBot


@hookimpl
def register_bot_backends(register: Any) -> None:
    register(DirectLineBot)
