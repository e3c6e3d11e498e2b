"""Every installed provider fake, found through the `register_fakes` hook, plus a subscriber."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from botbridge.fakes import BotFake, ChannelFake, digits
from botbridge.plugins import Plugins
from botbridge.settings import Settings
from botbridge.signing import verify_standard_webhook

_FAKES = sorted(Plugins.discover(Settings(load_plugins="azure_directline,dialogflow,lex,sinch,bird,scg")).fakes.items())
CHANNELS = {name: factory for (kind, name), factory in _FAKES if kind == "channel"}
BOTS = {name: factory for (kind, name), factory in _FAKES if kind == "bot"}


class Subscriber:
    """A customer's event webhook: verifies the Standard Webhooks signature, keeps the events."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.events: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/events", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        verify_standard_webhook(self.secret, request.headers, body, now=time.time())
        self.events.append(json.loads(body))
        return Response(status_code=204)

    def of(self, evt_tp: str, sender_id: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e["event"]["evt-tp"] == evt_tp
            and (sender_id is None or e["event"]["fld-val-list"]["sender_id_id"] == sender_id)
        ]


__all__ = ["BOTS", "CHANNELS", "BotFake", "ChannelFake", "Subscriber", "digits"]
