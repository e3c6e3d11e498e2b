"""`botbridge tail`: a host's live stream in the terminal, one line per event.

Reads `GET /v1/events/stream` with an account's API key and reconnects by
itself with `Last-Event-ID`, so a restarting host loses the reader nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any, TextIO

import httpx


def register(commands: Any) -> None:
    tail = commands.add_parser("tail", help="print a host's live events, one line each (as an account sees them)")
    tail.add_argument(
        "--url",
        default=os.environ.get("BOTBRIDGE_URL", "http://127.0.0.1:8000"),
        help="the host (default: $BOTBRIDGE_URL or %(default)s)",
    )
    tail.add_argument(
        "--key", default=None, help="the account's API key (default: $BOTBRIDGE_API_KEY; never put it in a script)"
    )
    tail.add_argument("--sender", help="only this sender's events (default: every sender)")
    tail.add_argument("--contact", help="only events from or to this contact (default: everyone)")
    tail.add_argument("--json", action="store_true", help="print each event's JSON (default: a readable line)")
    tail.add_argument("--count", type=int, default=0, help="stop after this many events (default: 0, never)")
    tail.set_defaults(func=_tail)


def describe(kind: str, body: dict[str, Any]) -> str:
    """One line for a person: time, what happened, who, the gist."""
    if kind == "conversation":
        return f"conversation {body.get('id')}  {body.get('contact')}  {body.get('state')}"
    inner = body.get("event", {})
    fields = inner.get("fld-val-list", {})
    what = inner.get("evt-tp", "?")
    when = inner.get("timestamp", "")
    parties = f"{fields.get('from_address', '?')} → {fields.get('to_address', '?')}"
    if what in ("mo_message_received", "mo_message_dropped"):
        gist = repr(fields.get("message_body", ""))
    elif what == "bot_error":
        gist = fields.get("reason_description", "")
    else:
        gist = f"{fields.get('previous_state', '')} → {fields.get('new_state', '')}"
        if fields.get("reason_description") not in (None, "", "SUCCESS"):
            gist += f" ({fields['reason_description']})"
    return f"{when}  {what:<30} {parties}  {gist}"


async def frames(
    client: httpx.AsyncClient, params: dict[str, str], after: str | None
) -> AsyncIterator[tuple[str, str, str]]:
    headers = {"last-event-id": after} if after else {}
    async with client.stream("GET", "/v1/events/stream", params=params, headers=headers) as response:
        if response.status_code != 200:
            await response.aread()
            raise PermissionError(f"the host answered {response.status_code}: {response.text[:200]}")
        fields: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line == "":
                if "data" in fields:
                    yield fields.get("id", ""), fields.get("event", "event"), fields["data"]
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.strip()


async def follow(args: argparse.Namespace, key: str, out: TextIO) -> int:
    params = {k: v for k, v in (("sender_id", args.sender), ("contact", args.contact)) if v}
    after, shown, pause = None, 0, 0.5
    # the host sends a comment every 15 s: a minute of silence is a dead connection
    timeout = httpx.Timeout(10.0, read=60.0)
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=args.url, headers=headers, timeout=timeout) as client:
        while True:
            try:
                async for event_id, kind, data in frames(client, params, after):
                    after, pause = event_id or after, 0.5
                    print(data if args.json else describe(kind, json.loads(data)), file=out, flush=True)
                    shown += 1
                    if args.count and shown >= args.count:
                        return 0
            except PermissionError as exc:
                print(f"botbridge tail: {exc}", file=sys.stderr)
                return 1
            except httpx.TransportError as exc:
                print(f"botbridge tail: {type(exc).__name__}; reconnecting in {pause:.1f}s", file=sys.stderr)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 10.0)


def _tail(args: argparse.Namespace) -> int:
    key = args.key or os.environ.get("BOTBRIDGE_API_KEY")
    if not key:
        print("botbridge tail: give the account's API key in BOTBRIDGE_API_KEY (or --key)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(follow(args, key, sys.stdout))
    except KeyboardInterrupt:
        return 0
