"""A strict fake of the Direct Line 3.0 REST API, with a scriptable bot.

Use it in-process::

    fake = FakeDirectLine()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app))
    # connector config: {"base_url": FAKE_BASE_URL}, credentials: fake.secret

or on loopback: ``python -m botbridge_azure_directline.testing --port 8931``
(or ``serve(host, port)``), and point the connector's ``base_url`` at it.

What it enforces, as the service does: the secret only starts (or
reconnects to) conversations; a token works only for its own conversation and
only until it expires (by the fake's clock); refresh needs a live token;
activities need ``type`` and ``from.id``; reads honour the watermark, so a
client that ignores it sees old activities again. Errors have Direct Line's
shape ``{"error": {"code": ..., "message": ...}}``.

`fail_after_delivery(502)` answers like the service when the bot received
the activity and failed ("bot is unavailable or returned an error"): the
activity is in the conversation, the bot's turn ran. Stricter than the
service, so a client that re-posts is caught: an activity whose
`channelData.clientActivityID` was already posted is answered 400
`DuplicateActivity` (the real service accepts it and the bot answers the
same turn twice). `answer_posts_with_204` makes POST activities answer 204
with no body, as the swagger allows.

`FakeDirectLine.activity_checks` are called with ("posted", body) for every
activity the fake accepted from a client and ("read", activity) for every
activity it returns: the plugin's tests put the Bot Framework's own Activity
model there (botbuilder-schema), without the fake depending on it.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import secrets as _secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from botbridge.clock import Clock, SystemClock
from botbridge.fakes import BotFake

FAKE_BASE_URL = "http://directline.fake"
DEFAULT_SECRET = "FakeSecret0.cwA.xyz.Zr4kDm7F24cwABEsSz0w9A3HT1jhIo67glkty"
OPTIONS_TRIGGER = "show me the options"
BOT_ACCOUNT = {"id": "fake-bot", "name": "Fake Bot", "role": "bot"}
MAX_BODY = 262_144
ACTIVITY_TYPES = frozenset(
    {"message", "typing", "event", "endOfConversation", "conversationUpdate", "invoke", "messageReaction"}
)

ReplySpec = str | dict[str, Any]
# check(direction, activity), direction "posted" or "read"
ActivityCheck = Callable[[str, dict[str, Any]], None]
POSTED, READ = "posted", "read"


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def echo(text: str) -> str:
    return f"echo: {text}"


def options_activity() -> dict[str, Any]:
    return {
        "text": "What can I help you with?",
        "suggestedActions": {
            "actions": [
                {"type": "imBack", "title": "Billing", "value": "billing"},
                {"type": "imBack", "title": "Sales", "value": "sales"},
            ]
        },
    }


@dataclass
class Rule:
    """When a user's text contains `keyword` (case-insensitive), answer `replies` after `delay` seconds."""

    keyword: str
    replies: list[ReplySpec]
    delay: float = 0.0
    echo: bool = False


@dataclass
class FakeConversation:
    id: str
    activities: list[dict[str, Any]] = field(default_factory=list)
    # (due time, order, activity) of bot activities not yet visible
    pending: list[tuple[float, int, dict[str, Any]]] = field(default_factory=list)
    ended: bool = False

    def user_activities(self) -> list[dict[str, Any]]:
        return [a for a in self.activities if a.get("from", {}).get("role") != "bot"]

    def user_texts(self) -> list[str]:
        return [a.get("text", "") for a in self.user_activities() if a.get("type") == "message"]

    def bot_texts(self) -> list[str]:
        return [a.get("text", "") for a in self.activities if a.get("from", {}).get("role") == "bot"]


@dataclass
class _Token:
    conversation_id: str
    expires_at: float


class DirectLineError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"code": self.code, "message": self.message}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


_FAILURE_CODES = {
    400: "BadArgument",
    401: "BadArgument",
    403: "BadArgument",
    404: "BadArgument",
    429: "TooManyRequests",
    500: "ServiceError",
    502: "BotError",
    503: "ServiceError",
    504: "BotTimeout",
}


class FakeDirectLine:
    """The Direct Line service plus one scripted bot behind it."""

    # Oracles the tests install on the class, so every fake a test makes is checked.
    activity_checks: ClassVar[tuple[ActivityCheck, ...]] = ()

    def __init__(
        self,
        *,
        secret: str = DEFAULT_SECRET,
        clock: Clock | None = None,
        token_lifetime: float = 1800.0,
        base_url: str = FAKE_BASE_URL,
    ) -> None:
        self.secret = secret
        self.clock: Clock = clock or SystemClock()
        self.token_lifetime = token_lifetime
        self.base_url = base_url
        self.conversations: dict[str, FakeConversation] = {}
        self.tokens: dict[str, _Token] = {}
        self.rules: list[Rule] = [Rule(OPTIONS_TRIGGER, [options_activity()])]
        self.echo_enabled = True
        self.requests: list[tuple[str, str]] = []
        self._failures: deque[tuple[int, float | None, str | None]] = deque()
        self._after_delivery: deque[int] = deque()
        self.answer_posts_with_204 = False
        self.duplicates: list[str] = []  # clientActivityIDs posted more than once
        self._order = itertools.count()
        self.app = Starlette(
            routes=[
                Route("/v3/directline/conversations", self._start, methods=["POST"]),
                Route("/v3/directline/tokens/refresh", self._refresh, methods=["POST"]),
                Route("/v3/directline/conversations/{cid}", self._reconnect, methods=["GET"]),
                Route("/v3/directline/conversations/{cid}/activities", self._post_activity, methods=["POST"]),
                Route("/v3/directline/conversations/{cid}/activities", self._get_activities, methods=["GET"]),
            ],
            exception_handlers={DirectLineError: self._error},
        )

    # --- scripting -------------------------------------------------------

    def add_rule(self, keyword: str, *replies: ReplySpec, delay: float = 0.0, echo: bool = False) -> Rule:
        """Answer texts containing `keyword` with `replies` (text or activity fields), `delay` seconds later."""
        rule = Rule(keyword.casefold(), list(replies), delay, echo)
        self.rules.insert(0, rule)
        return rule

    def push(self, conversation_id: str, reply: ReplySpec, *, delay: float = 0.0) -> None:
        """A proactive bot message, visible `delay` seconds from now (by the fake's clock)."""
        conversation = self._conversation(conversation_id)
        self._queue(conversation, self._bot_activity(conversation, reply, None), delay)

    def fail_next(self, status: int, *, retry_after: float | None = None, method: str | None = None) -> None:
        """Answer the next request (or the next with this HTTP `method`) with `status` and an error body."""
        self._failures.append((status, retry_after, method))

    def fail_after_delivery(self, status: int) -> None:
        """Take the next posted activity (the bot runs its turn), then answer `status` (502, 504)."""
        self._after_delivery.append(status)

    def expire_tokens(self) -> None:
        """Make every issued token expired now."""
        for token in self.tokens.values():
            token.expires_at = self.clock.now() - 1

    def conversation(self, conversation_id: str) -> FakeConversation:
        return self.conversations[conversation_id]

    # --- helpers ---------------------------------------------------------

    def _error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DirectLineError)
        return exc.response()

    def _conversation(self, conversation_id: str) -> FakeConversation:
        conversation = self.conversations.get(conversation_id)
        if conversation is None:
            raise DirectLineError(404, "BadArgument", "Conversation not found")
        return conversation

    def _timestamp(self) -> str:
        return datetime.fromtimestamp(self.clock.now(), UTC).isoformat().replace("+00:00", "Z")

    def _issue_token(self, conversation_id: str) -> dict[str, Any]:
        token = "fake-token." + _secrets.token_urlsafe(24)
        self.tokens[token] = _Token(conversation_id, self.clock.now() + self.token_lifetime)
        stream = self.base_url.replace("http", "ws", 1)
        return {
            "conversationId": conversation_id,
            "token": token,
            "expires_in": int(self.token_lifetime),
            "streamUrl": f"{stream}/v3/directline/conversations/{conversation_id}/stream?t={token}",
        }

    def _bearer(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise DirectLineError(401, "BadArgument", "Missing or malformed Authorization header")
        return credential.strip()

    def _authorize(self, request: Request, conversation_id: str | None, *, secret_ok: bool) -> str:
        """Check the bearer; returns "secret" or the token."""
        credential = self._bearer(request)
        if _secrets.compare_digest(credential.encode(), self.secret.encode()):
            if not secret_ok:
                raise DirectLineError(403, "BadArgument", "This operation requires a token")
            return "secret"
        token = self.tokens.get(credential)
        if token is None:
            raise DirectLineError(403, "BadArgument", "Invalid token or secret")
        if token.expires_at <= self.clock.now():
            raise DirectLineError(403, "TokenExpired", "Token expired")
        if conversation_id is not None and token.conversation_id != conversation_id:
            raise DirectLineError(403, "BadArgument", "Token not valid for this conversation")
        return credential

    def _maybe_fail(self, request: Request) -> None:
        self.requests.append((request.method, request.url.path))
        failure = next((f for f in self._failures if f[2] in (None, request.method)), None)
        if failure is not None:
            self._failures.remove(failure)
            status, retry_after, _ = failure
            headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
            code = _FAILURE_CODES.get(status, "ServiceError")
            raise DirectLineError(status, code, f"Injected failure {status}", headers)

    def _append(self, conversation: FakeConversation, activity: dict[str, Any]) -> dict[str, Any]:
        activity["id"] = f"{conversation.id}|{len(conversation.activities):07d}"
        activity.setdefault("timestamp", self._timestamp())
        conversation.activities.append(activity)
        return activity

    def _queue(self, conversation: FakeConversation, activity: dict[str, Any], delay: float) -> None:
        if delay <= 0:
            self._append(conversation, activity)
        else:
            heapq.heappush(conversation.pending, (self.clock.now() + delay, next(self._order), activity))

    def _release(self, conversation: FakeConversation) -> None:
        now = self.clock.now()
        while conversation.pending and conversation.pending[0][0] <= now:
            _, _, activity = heapq.heappop(conversation.pending)
            self._append(conversation, activity)

    def _bot_activity(self, conversation: FakeConversation, reply: ReplySpec, reply_to: str | None) -> dict[str, Any]:
        fields = {"text": reply} if isinstance(reply, str) else dict(reply)
        activity: dict[str, Any] = {
            "type": "message",
            "channelId": "directline",
            "from": dict(BOT_ACCOUNT),
            "conversation": {"id": conversation.id},
            **fields,
        }
        if reply_to is not None:
            activity["replyToId"] = reply_to
        return activity

    def _bot_turn(self, conversation: FakeConversation, activity: dict[str, Any]) -> None:
        if activity["type"] != "message":
            return
        if "value" in activity:  # a postBack/messageBack: the bot reads the value, not the text
            value = json.dumps(activity["value"], sort_keys=True)
            reply = f"value {value} with text {activity.get('text')!r}"
            self._append(conversation, self._bot_activity(conversation, reply, activity["id"]))
            return
        text = activity.get("text") or ""
        folded = text.casefold()
        for rule in self.rules:
            if rule.keyword in folded:
                for reply in rule.replies:
                    self._queue(conversation, self._bot_activity(conversation, reply, activity["id"]), rule.delay)
                if not rule.echo:
                    return
                break
        if self.echo_enabled:
            self._append(conversation, self._bot_activity(conversation, echo(text), activity["id"]))

    async def _json(self, request: Request) -> Any:
        body = await request.body()
        if len(body) > MAX_BODY:
            raise DirectLineError(413, "MessageSizeTooBig", "Activity too large")
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise DirectLineError(415, "BadArgument", "Content-Type must be application/json")
        try:
            return json.loads(body)
        except ValueError:
            raise DirectLineError(400, "BadSyntax", "Body is not valid JSON") from None

    # --- endpoints -------------------------------------------------------

    async def _start(self, request: Request) -> Response:
        self._maybe_fail(request)
        if self._authorize(request, None, secret_ok=True) != "secret":
            raise DirectLineError(403, "BadArgument", "A token cannot start another conversation")
        conversation_id = _secrets.token_hex(11).upper() + "-us"
        self.conversations[conversation_id] = FakeConversation(conversation_id)
        return JSONResponse(self._issue_token(conversation_id), status_code=201)

    async def _refresh(self, request: Request) -> Response:
        self._maybe_fail(request)
        token = self._authorize(request, None, secret_ok=False)
        return JSONResponse(self._issue_token(self.tokens[token].conversation_id))

    async def _reconnect(self, request: Request) -> Response:
        self._maybe_fail(request)
        conversation_id = request.path_params["cid"]
        self._authorize(request, conversation_id, secret_ok=True)
        self._conversation(conversation_id)
        return JSONResponse(self._issue_token(conversation_id))

    async def _post_activity(self, request: Request) -> Response:
        self._maybe_fail(request)
        conversation_id = request.path_params["cid"]
        self._authorize(request, conversation_id, secret_ok=True)
        conversation = self._conversation(conversation_id)
        data = await self._json(request)
        if not isinstance(data, dict):
            raise DirectLineError(400, "BadArgument", "Activity must be a JSON object")
        kind = data.get("type")
        if not isinstance(kind, str) or kind not in ACTIVITY_TYPES:
            raise DirectLineError(400, "MissingProperty", "Activity type is missing or unknown")
        sender = data.get("from")
        if not isinstance(sender, dict) or not isinstance(sender.get("id"), str) or not sender["id"].strip():
            raise DirectLineError(400, "MissingProperty", "Activity from.id is required")
        if "text" in data and not isinstance(data["text"], str):
            raise DirectLineError(400, "BadArgument", "Activity text must be a string")
        if "attachments" in data and not isinstance(data["attachments"], list):
            raise DirectLineError(400, "BadArgument", "Activity attachments must be a list")
        activity = {
            **data,
            "from": {**sender, "role": "user"},
            "channelId": "directline",
            "conversation": {"id": conversation_id},
        }
        activity.pop("id", None)
        client_id = _mapping(data.get("channelData")).get("clientActivityID")
        if isinstance(client_id, str) and any(
            _mapping(a.get("channelData")).get("clientActivityID") == client_id for a in conversation.activities
        ):
            self.duplicates.append(client_id)
            raise DirectLineError(400, "DuplicateActivity", "This activity was already posted (fake-only check)")
        for check in self.activity_checks:
            check(POSTED, data)
        self._append(conversation, activity)
        if kind == "endOfConversation":
            conversation.ended = True
        self._bot_turn(conversation, activity)
        if self._after_delivery:
            status = self._after_delivery.popleft()
            raise DirectLineError(status, _FAILURE_CODES.get(status, "ServiceError"), f"Injected failure {status}")
        if self.answer_posts_with_204:
            return Response(status_code=204)
        return JSONResponse({"id": activity["id"]})

    async def _get_activities(self, request: Request) -> Response:
        self._maybe_fail(request)
        conversation_id = request.path_params["cid"]
        self._authorize(request, conversation_id, secret_ok=True)
        conversation = self._conversation(conversation_id)
        raw = request.query_params.get("watermark")
        start = 0
        if raw not in (None, ""):
            if not raw.isdigit():
                raise DirectLineError(400, "BadArgument", "Invalid watermark")
            start = int(raw)
        self._release(conversation)
        body: dict[str, Any] = {"activities": conversation.activities[start:]}
        for activity in body["activities"]:
            for check in self.activity_checks:
                check(READ, activity)
        if conversation.activities:
            body["watermark"] = str(len(conversation.activities))
        return JSONResponse(body)


def client_factory(fake: FakeDirectLine) -> Callable[[], Any]:
    """A function building an `httpx.AsyncClient` wired in-process to `fake`."""
    import httpx

    def build() -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app), base_url=fake.base_url)

    return build


class DirectLineScript(BotFake):
    """The fake as the demo and end-to-end tests drive it: a scripted Azure bot."""

    type = "AZURE_BOT_DIRECT_LINE"
    options_trigger = OPTIONS_TRIGGER

    def __init__(self, fake: FakeDirectLine | None = None) -> None:
        self.fake = fake or FakeDirectLine()
        self.app = self.fake.app

    def connector_body(self, sender_id: str, base_url: str) -> dict[str, Any]:
        return {
            "type": self.type,
            "sender_id": sender_id,
            "credentials": self.fake.secret,
            "config": {"base_url": base_url},
        }

    def sessions(self) -> set[str]:
        return set(self.fake.conversations)


def serve(host: str = "127.0.0.1", port: int = 8931, *, secret: str = DEFAULT_SECRET) -> None:
    """Run the fake on a loopback port until interrupted."""
    import uvicorn

    fake = FakeDirectLine(secret=secret, base_url=f"http://{host}:{port}")
    uvicorn.run(fake.app, host=host, port=port, log_level="warning")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A strict fake of the Direct Line 3.0 API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8931)
    parser.add_argument("--secret", default=DEFAULT_SECRET)
    args = parser.parse_args(argv)
    serve(args.host, args.port, secret=args.secret)


if __name__ == "__main__":
    main()
