"""`GET /v1/events/stream`: the account's events as Server-Sent Events.

The same bodies subscribers receive (`event: event`) and conversations'
changes (`event: conversation`), from a short buffer in the store, so any
host sharing the store serves any account and a client that reconnects with
`Last-Event-ID` misses nothing still in the buffer (an hour and more: each
host trims it hourly). A host reads the buffer when it wrote to it itself
and otherwise every half second; a comment line every 15 s keeps proxies
from closing an idle stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from botbridge.api.common import account, runtime
from botbridge.models import StreamItem

POLL = 0.5
HEARTBEAT = 15.0
BATCH = 200


def wanted(item: StreamItem, sender_id: str | None, contact: str | None) -> bool:
    data = item.data
    if data.get("type") == "conversation":
        fields = data.get("conversation", {})
        sender, parties = fields.get("sender_id"), {fields.get("contact")}
    else:
        fields = data.get("event", {}).get("event", {}).get("fld-val-list", {})
        sender, parties = fields.get("sender_id_id"), {fields.get("from_address"), fields.get("to_address")}
    return (sender_id is None or sender == sender_id) and (contact is None or contact in parties)


def frame(item: StreamItem) -> str:
    kind = str(item.data.get("type", "event"))
    body = item.data.get(kind, item.data)
    return f"id: {item.id}\nevent: {kind}\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"


async def event_stream(request: Request) -> Response:
    account_id = await account(request)
    rt = runtime(request)
    after = request.headers.get("last-event-id") or request.query_params.get("last_event_id") or None
    sender_id = request.query_params.get("sender_id") or None
    contact = request.query_params.get("contact") or None
    poll: float = getattr(rt, "stream_poll", POLL)
    heartbeat: float = getattr(rt, "stream_heartbeat", HEARTBEAT)

    async def frames() -> AsyncIterator[str]:
        nonlocal after
        yield "retry: 2000\n\n"  # how long an EventSource waits before reconnecting
        quiet_since = time.monotonic()
        while True:
            items = await rt.store.read_stream(account_id, after=after, limit=BATCH)
            for item in items:
                after = item.id
                if wanted(item, sender_id, contact):
                    quiet_since = time.monotonic()
                    yield frame(item)
            if len(items) == BATCH:
                continue  # more waiting: no pause
            if time.monotonic() - quiet_since >= heartbeat:
                quiet_since = time.monotonic()
                yield ": keepalive\n\n"
            await rt.stream_broadcast.wait(poll)

    headers: dict[str, Any] = {"cache-control": "no-cache", "x-accel-buffering": "no"}
    return StreamingResponse(frames(), media_type="text/event-stream", headers=headers)
