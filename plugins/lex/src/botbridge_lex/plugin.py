"""The hook implementations botbridge finds through the `lex` entry point."""

from __future__ import annotations

from typing import Any

from botbridge import hookimpl
from botbridge_lex.bot import LexBot


@hookimpl
def register_bot_backends(register: Any) -> None:
    register(LexBot)
