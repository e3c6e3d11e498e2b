"""The hook implementations botbridge finds through the `lex` entry point."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botbridge import hookimpl
from botbridge_lex.bot import LexBot


@hookimpl
def register_bot_backends(register: Any) -> None:
    register(LexBot)


@hookimpl
def register_fakes(register: Callable[..., None]) -> None:
    def fake() -> Any:
        from botbridge_lex.testing import LexScript

        return LexScript()

    register("bot", "AMAZON_LEX", fake)
