"""What both floors share: a minimal Starlette relay doing per MO what botbridge does, and no more.

Per webhook: check the ESS bearer, read the JSON event, post the text to the
contact's Direct Line conversation (opened on its first MO), read the
activities after the watermark for the bot's answer, post that answer to
the SCG fake, then answer 200. No store, no queue, no retries.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from common import DL_API, ESS_SECRET, LOOPBACK, SCG_FROM, SCG_TOKEN, SEND_PATH
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# call(method, url, bearer, json_body, params) -> (status, decoded JSON body)
Call = Callable[[str, str, str, Any, dict[str, str] | None], Awaitable[tuple[int, Any]]]
DL_SECRET = "FakeSecret0.cwA.xyz.Zr4kDm7F24cwABEsSz0w9A3HT1jhIo67glkty"


@dataclass
class Conversation:
    id: str
    token: str
    watermark: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Relay:
    def __init__(self, call: Call, scg_url: str, dl_url: str) -> None:
        self.call = call
        self.scg_send = scg_url + SEND_PATH
        self.dl = dl_url + DL_API
        self.conversations: dict[str, Conversation] = {}
        self.opening: dict[str, asyncio.Lock] = {}

    async def conversation(self, contact: str) -> Conversation:
        found = self.conversations.get(contact)
        if found is not None:
            return found
        async with self.opening.setdefault(contact, asyncio.Lock()):
            found = self.conversations.get(contact)
            if found is None:
                status, data = await self.call("POST", self.dl + "/conversations", DL_SECRET, None, None)
                if status >= 300:
                    raise RuntimeError(f"start conversation answered {status}")
                found = self.conversations[contact] = Conversation(data["conversationId"], data["token"])
            return found

    async def turn(self, contact: str, text: str) -> None:
        conv = await self.conversation(contact)
        url = f"{self.dl}/conversations/{conv.id}/activities"
        async with conv.lock:
            activity = {"type": "message", "from": {"id": "u-" + contact.lstrip("+")}, "text": text}
            status, posted = await self.call("POST", url, conv.token, activity, None)
            if status >= 300:
                raise RuntimeError(f"post activity answered {status}")
            params = {"watermark": conv.watermark} if conv.watermark else None
            status, data = await self.call("GET", url, conv.token, None, params)
            if status >= 300:
                raise RuntimeError(f"get activities answered {status}")
            conv.watermark = data.get("watermark") or conv.watermark
        replies = [a.get("text") for a in data["activities"] if a.get("replyToId") == posted["id"]]
        for reply in replies:
            body = {"from": SCG_FROM, "to": [contact], "body": reply}
            status, _ = await self.call("POST", self.scg_send, SCG_TOKEN, body, None)
            if status >= 300:
                raise RuntimeError(f"SCG send answered {status}")

    async def webhook(self, request: Request) -> Response:
        # ESS authenticates with HTTP Basic; the secret is the password.
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            secret = ""
        if scheme.lower() != "basic" or not hmac.compare_digest(secret.encode(), ESS_SECRET.encode()):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        event = json.loads(await request.body())
        fields = event["event"]["fld-val-list"]
        if event["event"]["evt-tp"] == "mo_message_received":
            await self.turn(fields["from_address"], fields["message_body"])
        return JSONResponse({"status": "accepted"})


def app(relay: Relay, startup: Callable[[], Awaitable[None]], shutdown: Callable[[], Awaitable[None]]) -> Starlette:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        await startup()
        try:
            yield
        finally:
            await shutdown()

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/v1/webhooks/scg/{sender_id}", relay.webhook, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--scg-url", required=True)
    parser.add_argument("--dl-url", required=True)
    parser.add_argument("--transport", choices=["aiohttp", "httpx"], default="aiohttp")
    return parser.parse_args()


def run(application: Starlette, port: int) -> None:
    """Under the settings `botbridge serve` uses."""
    uvicorn.run(
        application, host=LOOPBACK, port=port, loop="uvloop", http="httptools", log_level="warning", access_log=False
    )
