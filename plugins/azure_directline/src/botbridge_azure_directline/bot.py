"""The Azure Bot Service backend, over the Direct Line 3.0 REST API.

One botbridge conversation is one Direct Line conversation. `open` starts it
with the connector's secret and keeps the conversation's token; `send` posts
the user's message as an activity and reads the bot's answers after the
watermark. Answers that come later are read by the backend's one
late-reply scheduler (`botbridge.polling`), within a budget of reads a second
per connector, and handed to `session.deliver_late`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx

from botbridge.bot import BotBackend, BotSession
from botbridge.clock import Clock
from botbridge.errors import BotCredentialsInvalid, BotError, ConfigInvalid
from botbridge.http import RetryPolicy, call_with_retry
from botbridge.models import InboundMessage, Reply
from botbridge.polling import Pace, PollScheduler, ReadFailed
from botbridge_azure_directline.activities import bot_replies, message_back, sender_id

logger = logging.getLogger("botbridge_azure_directline")

CONNECTOR_TYPE = "AZURE_BOT_DIRECT_LINE"
DEFAULT_BASE_URL = "https://directline.botframework.com"
API = "/v3/directline"

_SECRET = re.compile(r"^[A-Za-z0-9._~+/=-]{16,1024}$")

# Connector config keys of this backend, with their defaults (seconds).
DEFAULTS: dict[str, float] = {
    "reply_wait": 5.0,  # how long `send` polls for the replies to its turn
    "poll_interval": 1.0,  # between two reads of the activities
    "late_reply_window": 60.0,  # the poller stops after this long without activity
    # An idle conversation is read less and less often, up to this interval:
    # a thousand open conversations must not cost a thousand reads a second.
    "late_reply_max_interval": 15.0,
    # Late-reply reads a second for all the connector's conversations together
    # (reads/s, not seconds): past it, those with the most recent turn go first.
    "late_reply_budget": 20.0,
}
LIMITS: dict[str, tuple[float, float]] = {
    "reply_wait": (0.0, 60.0),
    "poll_interval": (0.01, 60.0),
    "late_reply_window": (0.0, 86400.0),
    "late_reply_max_interval": (0.01, 3600.0),
    "late_reply_budget": (0.1, 1000.0),
}


class TokenExpired(BotError):
    """403 `TokenExpired`: the conversation's token died early; the secret reconnects."""


def _error_code(response: httpx.Response) -> str | None:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    return error.get("code") if isinstance(error, dict) else None


def derive_user_id(contact: str, salt: str) -> str:
    """A stable, opaque `from.id` for a contact: never the phone number itself."""
    digest = hmac.new(salt.encode(), contact.encode(), hashlib.sha256).hexdigest()
    return "bb-" + digest[:32]


def _number(config: dict[str, Any], key: str) -> float:
    value = config.get(key, DEFAULTS[key])
    return float(value)


@dataclass
class _Live:
    """What the backend holds for one open Direct Line conversation."""

    session: BotSession
    conversation_id: str
    user_id: str
    token: str
    expires_at: float
    refresh_at: float
    watermark: str | None
    last_activity: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def from_state(cls, session: BotSession, now: float) -> _Live:
        state = session.state
        try:
            return cls(
                session=session,
                conversation_id=str(state["conversation_id"]),
                user_id=str(state["user_id"]),
                token=str(state["token"]),
                expires_at=float(state["token_expires_at"]),
                refresh_at=float(state["token_refresh_at"]),
                watermark=state.get("watermark"),
                last_activity=now,
            )
        except (KeyError, TypeError, ValueError):
            raise BotError("the Direct Line conversation was not opened", retryable=False) from None

    @property
    def key(self) -> tuple[str, str]:
        return (self.session.connector.id, self.conversation_id)

    def save(self) -> None:
        self.session.state.update(
            conversation_id=self.conversation_id,
            user_id=self.user_id,
            token=self.token,
            token_expires_at=self.expires_at,
            token_refresh_at=self.refresh_at,
            watermark=self.watermark,
        )

    def take_token(self, data: Any, now: float) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("token"), str):
            raise BotError("Direct Line answered without a token", retryable=True)
        lifetime = _lifetime(data)
        self.token = data["token"]
        self.expires_at = now + lifetime
        self.refresh_at = now + _refresh_after(lifetime)
        self.save()


def _lifetime(data: dict[str, Any]) -> float:
    value = data.get("expires_in")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return 1800.0  # the documented lifetime, when the service does not say


def _refresh_after(lifetime: float) -> float:
    # Renew with a margin: 5 minutes, or half the lifetime of a short token.
    return max(lifetime - 300.0, lifetime / 2)


class DirectLineBot(BotBackend):
    """Connector type `AZURE_BOT_DIRECT_LINE`: credentials are the Direct Line secret."""

    type = CONNECTOR_TYPE
    accepts_media = True  # MO media go to the bot as attachments with their URL
    description = "Azure Bot Service through Direct Line 3.0"

    retry_policy: ClassVar[RetryPolicy] = RetryPolicy()
    timeout: ClassVar[float] = 10.0
    # POST activities waits for the bot's turn: up to ~15 s before a 502/504.
    post_timeout: ClassVar[float] = 20.0

    def __init__(self, http: httpx.AsyncClient, clock: Clock) -> None:
        super().__init__(http, clock)
        # Keyed by (connector id, Direct Line conversation id): the id comes from
        # a tenant's bot service, so on its own it could name another tenant's
        # conversation (and hand over its token and its late replies).
        self._live: dict[tuple[str, str], _Live] = {}
        self._late = PollScheduler(clock, name="directline-late-replies", on_idle=self._idle)

    # --- configuration ----------------------------------------------------

    def validate_credentials(self, credentials: str, config: dict[str, Any]) -> None:
        if not isinstance(credentials, str) or not credentials:
            raise ConfigInvalid("credentials", "the Direct Line secret is required")
        if any(c.isspace() for c in credentials):
            raise ConfigInvalid("credentials", "the Direct Line secret must not contain whitespace")
        if not _SECRET.match(credentials):
            raise ConfigInvalid(
                "credentials",
                "does not look like a Direct Line secret (16-1024 characters of A-Z a-z 0-9 . _ - ~ + / =)",
            )
        base_url = config.get("base_url")
        if base_url is not None:
            parts = urlsplit(base_url) if isinstance(base_url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigInvalid("config.base_url", "must be an http(s) URL")
            if parts.query or parts.fragment:
                raise ConfigInvalid("config.base_url", "must not carry a query or fragment")
        for key, (low, high) in LIMITS.items():
            if key in config:
                value = config[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                    unit = "reads a second" if key == "late_reply_budget" else "seconds"
                    raise ConfigInvalid(f"config.{key}", f"must be a number of {unit} between {low:g} and {high:g}")
        salt = config.get("user_id_salt")
        if salt is not None and (not isinstance(salt, str) or not salt):
            raise ConfigInvalid("config.user_id_salt", "must be a non-empty string")

    def _base(self, session: BotSession) -> str:
        base = session.config.get("base_url") or DEFAULT_BASE_URL
        return str(base).rstrip("/") + API

    # --- HTTP ---------------------------------------------------------------

    async def _call(
        self,
        what: str,
        method: str,
        url: str,
        bearer: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        seconds: float | None = None,
        policy: RetryPolicy | None = None,
    ) -> Any:
        headers = {"authorization": f"Bearer {bearer}"}

        async def send() -> httpx.Response:
            response = await self.http.request(
                method, url, headers=headers, json=json, params=params, timeout=seconds or self.timeout
            )
            # An expired token is not a wrong secret: refused before anything was done.
            if response.status_code == 403 and _error_code(response) == "TokenExpired":
                raise TokenExpired(f"Direct Line {what}: the conversation's token expired", status_code=403)
            return response

        response = await call_with_retry(
            send,
            f"Direct Line {what}",
            clock=self.clock,
            policy=policy or self.retry_policy,
            error=BotError,
            credentials_error=BotCredentialsInvalid,
        )
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise BotError(f"Direct Line {what} answered with a body that is not JSON", retryable=True) from None

    async def _ensure_token(self, live: _Live, *, reconnect: bool = False) -> None:
        """Renew the conversation's token before it expires (or reconnect if it has)."""
        now = self.clock.now()
        if now < live.refresh_at and not reconnect:
            return
        base = self._base(live.session)
        if now < live.expires_at and not reconnect:
            data = await self._call("token refresh", "POST", f"{base}/tokens/refresh", live.token)
        else:
            # Too late to refresh: the secret reconnects to the same conversation.
            url = f"{base}/conversations/{quote(live.conversation_id, safe='')}"
            params = {"watermark": live.watermark} if live.watermark else None
            data = await self._call("reconnect", "GET", url, live.session.credentials, params=params)
        live.take_token(data, self.clock.now())

    async def _with_token(self, live: _Live, call: Callable[[str], Awaitable[Any]]) -> Any:
        """`call(token)`; a token the service says expired is replaced through the secret, once."""
        try:
            await self._ensure_token(live)
            return await call(live.token)
        except TokenExpired:
            logger.info("token of %s expired early: reconnecting with the secret", live.conversation_id)
        await self._ensure_token(live, reconnect=True)
        return await call(live.token)

    async def _read(self, live: _Live) -> list[dict[str, Any]]:
        """The activities after the watermark; advances the watermark (caller holds the lock)."""
        url = f"{self._base(live.session)}/conversations/{quote(live.conversation_id, safe='')}/activities"
        params = {"watermark": live.watermark} if live.watermark else None
        data = await self._with_token(
            live, lambda token: self._call("get activities", "GET", url, token, params=params)
        )
        if not isinstance(data, dict):
            raise BotError("Direct Line activities answer is not an object", retryable=True)
        activities = [a for a in data.get("activities") or [] if isinstance(a, dict)]
        watermark = data.get("watermark")
        if isinstance(watermark, (str, int)) and not isinstance(watermark, bool) and str(watermark):
            live.watermark = str(watermark)
            live.save()
        if activities:
            live.last_activity = self.clock.now()
        return activities

    # --- the BotBackend interface -----------------------------------------

    async def open(self, session: BotSession) -> None:
        data = await self._call(
            "start conversation", "POST", f"{self._base(session)}/conversations", session.credentials
        )
        if not isinstance(data, dict) or not isinstance(data.get("conversationId"), str):
            raise BotError("Direct Line answered without a conversationId", retryable=True)
        salt = session.config.get("user_id_salt") or session.connector.id
        now = self.clock.now()
        live = _Live(
            session=session,
            conversation_id=data["conversationId"],
            user_id=derive_user_id(session.contact, salt),
            token="",
            expires_at=now,
            refresh_at=now,
            watermark=None,
            last_activity=now,
        )
        live.take_token(data, now)

    def _attach(self, session: BotSession) -> _Live:
        """The live record of a session's conversation; the newest session wins."""
        conversation_id = session.state.get("conversation_id")
        live = self._live.get((session.connector.id, conversation_id)) if isinstance(conversation_id, str) else None
        if live is None:
            live = _Live.from_state(session, self.clock.now())
        else:
            live.session = session
            live.save()
        return live

    async def send(self, session: BotSession, message: InboundMessage) -> list[Reply]:
        live = self._attach(session)
        live.last_activity = self.clock.now()
        answer = message.postback or message.text
        activity: dict[str, Any] = {
            "type": "message",
            "from": {"id": live.user_id},
            "text": answer,
            "channelData": {
                # the same id on a retried post lets a bot drop the duplicate
                "clientActivityID": message.id,
                "botbridge": {
                    "message_id": message.id,
                    "conversation_id": session.conversation_id,
                    "sender_id": message.sender_id,
                    "channel": message.channel,
                },
            },
        }
        if message.media:
            # Attachment.name is a string or absent (botbuilder-schema): never null
            activity["attachments"] = [
                {"contentType": m.content_type or "application/octet-stream", "contentUrl": m.url}
                | ({"name": m.caption} if m.caption else {})
                for m in message.media
            ]
        chosen = message_back(answer)
        if chosen is not None:  # messageBack: the bot gets both the text and the value
            text, activity["value"] = chosen
            if text:
                activity["text"] = text
            else:
                del activity["text"]
        url = f"{self._base(session)}/conversations/{quote(live.conversation_id, safe='')}/activities"
        # Posting runs the bot's turn: a 502/504/timeout may come after the bot
        # got it, so it is never posted twice; the activities tell what happened.
        post_policy = dataclasses.replace(self.retry_policy, idempotent=False)
        unknown: BotError | None = None
        async with live.lock:
            try:
                posted = await self._with_token(
                    live,
                    lambda token: self._call(
                        "post activity",
                        "POST",
                        url,
                        token,
                        json=activity,
                        seconds=self.post_timeout,
                        policy=post_policy,
                    ),
                )
            except BotError as exc:
                if not exc.outcome_unknown or isinstance(exc, BotCredentialsInvalid):
                    raise
                logger.warning("posting to %s: %s; reading its replies, not posting again", live.conversation_id, exc)
                posted, unknown = {}, exc
        posted_id = posted.get("id") if isinstance(posted, dict) else None
        refused = False
        try:
            replies = await self._collect(live, posted_id, message.id, _number(session.config, "reply_wait"))
        except BotCredentialsInvalid:
            refused = True
            raise
        except BotError as exc:
            # The bot has the message: failing the turn now would make core send it
            # again (a duplicate turn). Its replies come through the poller instead.
            logger.warning("reading the replies of %s failed, left to the poller: %s", live.conversation_id, exc)
            replies = []
        finally:
            # Watched from the end of the turn's own reads (also when the turn
            # timed out): the first late read comes `poll_interval` after them.
            if not refused:
                self._keep_polling(live)
        if not replies and unknown is not None:
            # Still marked outcome_unknown: core answers with the fallback, never re-runs the turn.
            raise unknown
        return replies

    async def _collect(self, live: _Live, posted_id: Any, client_id: str, wait: float) -> list[Reply]:
        """Read until the bot answered this turn, or `wait` seconds passed.

        Without the posted activity's id (a 204 with no body, a post whose
        answer was lost) it is found among the activities by our
        `clientActivityID`; failing that, any bot message answers the turn.
        """
        deadline = self.clock.now() + wait
        interval = _number(live.session.config, "poll_interval")
        replies: list[Reply] = []
        while True:
            async with live.lock:
                activities = await self._read(live)
            if posted_id is None:
                posted_id = next((a.get("id") for a in activities if _client_id(a) == client_id), None)
            from_bot = [a for a in activities if sender_id(a) != live.user_id]
            replies.extend(bot_replies(from_bot, live.user_id))
            if posted_id is None:
                answered = bool(replies)
            else:
                answered = any(a.get("replyToId") == posted_id for a in from_bot)
            untagged = bool(replies) and not any(a.get("replyToId") for a in from_bot)
            if answered or untagged or self.clock.now() >= deadline:
                return replies
            await self.clock.sleep(min(interval, max(0.0, deadline - self.clock.now())))

    async def close(self, session: BotSession) -> None:
        conversation_id = session.state.get("conversation_id")
        key = (session.connector.id, conversation_id)
        live = self._live.pop(key, None) if isinstance(conversation_id, str) else None
        await self._late.forget(key)
        if not session.config.get("send_end_of_conversation", True) or not isinstance(conversation_id, str):
            return
        # Direct Line has no close call; tell the bot, best effort.
        try:
            live = live or _Live.from_state(session, self.clock.now())
            live.session = session
            async with live.lock:
                await self._ensure_token(live)
                await self.http.post(
                    f"{self._base(session)}/conversations/{quote(conversation_id, safe='')}/activities",
                    headers={"authorization": f"Bearer {live.token}"},
                    json={"type": "endOfConversation", "from": {"id": live.user_id}},
                    timeout=self.timeout,
                )
        except (BotError, httpx.HTTPError) as exc:
            logger.info("endOfConversation for %s not delivered: %s", session.conversation_id, type(exc).__name__)

    async def aclose(self) -> None:
        self._live.clear()
        await self._late.aclose()

    # --- late replies -----------------------------------------------------

    def _keep_polling(self, live: _Live) -> None:
        config = live.session.config
        window = _number(config, "late_reply_window")
        if window <= 0:
            return
        self._live[live.key] = live
        interval = _number(config, "poll_interval")
        pace = Pace(
            interval=interval,
            max_interval=max(interval, _number(config, "late_reply_max_interval")),
            window=window,
            budget=_number(config, "late_reply_budget"),
        )
        self._late.watch(live.key, live.session.connector.id, lambda: self._read_late(live), pace)

    def _idle(self, key: Hashable) -> None:
        self._live.pop(key, None)

    async def _read_late(self, live: _Live) -> bool:
        """One read of the late-reply scheduler; True when the bot said something."""
        try:
            async with live.lock:
                activities = await self._read(live)
        except BotCredentialsInvalid:
            logger.warning("late-reply poller for %s stopped: credentials refused", live.conversation_id)
            self._live.pop(live.key, None)
            await self._late.forget(live.key)
            return False
        except BotError as exc:
            logger.warning("late-reply poller for %s: %s", live.conversation_id, exc)
            raise ReadFailed from exc
        except Exception:
            logger.exception("late-reply poller for %s failed to read", live.conversation_id)
            raise ReadFailed from None
        replies = bot_replies(activities, live.user_id)
        if replies:
            try:
                await live.session.deliver_late(replies)
            except Exception:
                logger.exception("delivering late replies of %s failed", live.conversation_id)
        return bool(replies)

    def polling(self, conversation_id: str) -> bool:
        """Whether a late-reply poller runs for this Direct Line conversation."""
        return any(key[1] == conversation_id and self._late.watching(key) for key in self._live)


def _client_id(activity: dict[str, Any]) -> Any:
    data = activity.get("channelData")
    return data.get("clientActivityID") if isinstance(data, dict) else None
