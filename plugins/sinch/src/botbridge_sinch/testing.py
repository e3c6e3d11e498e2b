"""A strict fake of the Sinch Conversation API, and the phone side of it.

`FakeSinch(...).app` is a Starlette app that answers like Sinch does:

- `POST /oauth2/token`: HTTP Basic key id/secret, form-encoded
  `grant_type=client_credentials`; issues opaque bearer tokens with `expires_in`.
- `POST /v1/projects/{project}/messages:send`: bearer (or Basic) auth, JSON
  body validated as Sinch validates it; records accepted messages in `sent`.
- `POST/GET/DELETE /v1/projects/{project}/webhooks[/{id}]` and
  `GET /v1/projects/{project}/apps/{app}/webhooks`: at most 5 webhooks per app,
  unique target per app.

Errors use Sinch's shape `{"error": {"code", "message", "status", "details"}}`;
a wrong regional host or unknown project is a 404.

It also plays the provider's outbound side: it builds callbacks signed with a
webhook secret (fresh nonce and timestamp per delivery attempt) and POSTs them
to a URL — inbound messages from a phone, and delivery reports for the
messages it accepted — with redelivery on non-2xx, duplicate and
out-of-order modes.

Run it on loopback: `python -m botbridge_sinch.testing --port 8099`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from botbridge.clock import Clock, SystemClock
from botbridge.fakes import ChannelFake, digits
from botbridge_sinch.channel import sign_callback

KNOWN_CHANNELS = frozenset(
    {
        "SMS",
        "WHATSAPP",
        "RCS",
        "MMS",
        "MESSENGER",
        "INSTAGRAM",
        "VIBER",
        "VIBERBM",
        "TELEGRAM",
        "KAKAOTALK",
        "KAKAOTALKCHAT",
        "LINE",
        "WECHAT",
        "APPLEBC",
    }
)
MESSAGE_KINDS = frozenset(
    {
        "text_message",
        "media_message",
        "choice_message",
        "card_message",
        "carousel_message",
        "list_message",
        "location_message",
        "contact_info_message",
        "template_message",
    }
)
CHOICE_KINDS = frozenset(
    {
        "text_message",
        "url_message",
        "call_message",
        "location_message",
        "calendar_message",
        "share_location_message",
    }
)
SEND_KEYS = frozenset(
    {
        "app_id",
        "recipient",
        "message",
        "channel_priority_order",
        "channel_properties",
        "ttl",
        "callback_url",
        "message_metadata",
        "correlation_id",
        "conversation_metadata",
        "queue",
        "processing_strategy",
        "message_content_type",
        "conversation_metadata_update_strategy",
    }
)
TRIGGERS = frozenset(
    {
        "MESSAGE_INBOUND",
        "MESSAGE_DELIVERY",
        "MESSAGE_SUBMIT",
        "EVENT_INBOUND",
        "EVENT_DELIVERY",
        "CONVERSATION_START",
        "CONVERSATION_STOP",
        "CONVERSATION_DELETE",
        "CONTACT_CREATE",
        "CONTACT_DELETE",
        "CONTACT_MERGE",
        "CONTACT_UPDATE",
        "CONTACT_IDENTITIES_DUPLICATION",
        "CAPABILITY",
        "OPT_IN",
        "OPT_OUT",
        "CHANNEL_EVENT",
        "UNSUPPORTED",
        "SMART_CONVERSATIONS",
        "MESSAGE_INBOUND_SMART_CONVERSATION_REDACTION",
        "RECORD_NOTIFICATION",
    }
)
MAX_WEBHOOKS_PER_APP = 5
MAX_TARGET_LENGTH = 742
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TTL = re.compile(r"^\d+s$")


def new_ulid(now: float | None = None) -> str:
    """A 26-character ULID-like id, as Sinch hands out."""
    millis = int((now if now is not None else datetime.now(UTC).timestamp()) * 1000) % (1 << 48)
    number = (millis << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        number, rest = divmod(number, 32)
        chars.append(_CROCKFORD[rest])
    return "".join(reversed(chars))


def rfc3339(now: float) -> str:
    moment = datetime.fromtimestamp(now, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}Z"


CARD_KEYS = frozenset({"title", "description", "media_message", "height", "choices", "message_properties"})
# SDK `MediaProperties`: one `url` (a string), an optional thumbnail and file name.
MEDIA_KEYS = frozenset({"url", "thumbnail_url", "filename_override"})
# Sinch "Carousel message": a list of up to 10 cards, at most 3 outer choices.
CAROUSEL_KEYS = frozenset({"cards", "choices"})
MAX_CAROUSEL_CARDS = 10
MAX_CAROUSEL_CHOICES = 3
# WhatsApp Cloud API, interactive "button" messages: at most 3 reply buttons,
# each title at most 20 characters. Sinch turns choices into such buttons.
WHATSAPP_MAX_BUTTONS = 3
WHATSAPP_MAX_BUTTON_TITLE = 20


def _check_choices(choices: Any, where: str, *, minimum: int) -> None:
    if not isinstance(choices, list) or not minimum <= len(choices) <= 10:
        raise invalid(f"message.{where}.choices must hold {minimum} to 10 choices")
    for choice in choices:
        if not isinstance(choice, dict) or len(set(choice) & CHOICE_KINDS) != 1:
            raise invalid("each choice must have exactly one choice kind")
        if "text_message" in choice and not (choice["text_message"] or {}).get("text"):
            raise invalid("a text choice needs a non-empty text")


def _check_media(media: Any, where: str) -> None:
    # One media per media_message: a list of urls, or any key the SDK does not know, is refused.
    if not isinstance(media, dict) or not (isinstance(media.get("url"), str) and media["url"]):
        raise invalid(f"message.{where}.url is required (one URL, a string)")
    unknown = set(media) - MEDIA_KEYS
    if unknown:
        raise invalid(f"message.{where}: unknown field(s): {', '.join(sorted(unknown))}")
    for key in ("thumbnail_url", "filename_override"):
        if key in media and not isinstance(media[key], str):
            raise invalid(f"message.{where}.{key} must be a string")


def _check_card(content: Any, where: str) -> None:
    # SDK `CardMessage`: title, description, media_message, height, choices (≤10).
    if not isinstance(content, dict):
        raise invalid(f"message.{where} must be an object")
    unknown = set(content) - CARD_KEYS
    if unknown:
        raise invalid(f"message.{where}: unknown field(s): {', '.join(sorted(unknown))}")
    if not any(content.get(k) for k in ("title", "description", "media_message")):
        raise invalid(f"message.{where} needs a title, a description or a media_message")
    if content.get("media_message") is not None:
        _check_media(content["media_message"], f"{where}.media_message")
    for key in ("title", "description"):
        if key in content and not isinstance(content[key], str):
            raise invalid(f"message.{where}.{key} must be a string")
    if "choices" in content:
        _check_choices(content["choices"], where, minimum=0)


def _check_whatsapp_buttons(message: dict[str, Any]) -> None:
    content = message.get("choice_message") or message.get("card_message") or {}
    choices = content.get("choices") or []
    if len(choices) > WHATSAPP_MAX_BUTTONS:
        raise invalid(f"WhatsApp renders at most {WHATSAPP_MAX_BUTTONS} reply buttons")
    for choice in choices:
        title = (choice.get("text_message") or {}).get("text", "")
        if len(title) > WHATSAPP_MAX_BUTTON_TITLE:
            raise invalid(f"WhatsApp button titles have at most {WHATSAPP_MAX_BUTTON_TITLE} characters")


class FakeError(Exception):
    def __init__(self, http_status: int, message: str, status: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
        self.status = status
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"code": self.http_status, "message": self.message, "status": self.status, "details": []}}
        return JSONResponse(body, status_code=self.http_status, headers=self.headers)


def invalid(message: str) -> FakeError:
    return FakeError(400, message, "INVALID_ARGUMENT")


def not_found(message: str) -> FakeError:
    return FakeError(404, message, "NOT_FOUND")


@dataclass
class Delivery:
    """One callback POST the fake made, and how it was answered."""

    url: str
    body: bytes
    headers: dict[str, str]
    status_code: int | None


@dataclass
class FakeSinch:
    """The fake's state and configuration; `app` serves it."""

    project_id: str = "5f0c0a3e-1111-2222-3333-444455556666"
    app_id: str = "01H3ZXAMPLEAPP00000000000"
    key_id: str = "fake-key-id"
    key_secret: str = "fake-key-secret"
    region: str = "us"
    # The secret callbacks are signed with when no registered webhook says otherwise.
    webhook_secret: str = "my-webhook-secret"
    token_ttl: int = 3600
    allow_basic_auth: bool = True
    # Delivery modes for callbacks: send each one twice, and retry non-2xx.
    duplicate_deliveries: bool = False
    max_delivery_attempts: int = 3
    clock: Clock = field(default_factory=SystemClock)

    def __post_init__(self) -> None:
        self.tokens: dict[str, float] = {}
        self.token_requests = 0
        self.sent: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.webhooks: dict[str, dict[str, Any]] = {}
        self.deliveries: list[Delivery] = []
        self._failures: list[tuple[int, dict[str, str]]] = []
        self.app = Starlette(
            routes=[
                Route("/oauth2/token", self._token, methods=["POST"]),
                Route("/v1/projects/{project}/messages:send", self._send, methods=["POST"]),
                Route("/v1/projects/{project}/webhooks", self._create_webhook, methods=["POST"]),
                Route("/v1/projects/{project}/webhooks/{webhook_id}", self._webhook, methods=["GET", "DELETE"]),
                Route("/v1/projects/{project}/apps/{app}/webhooks", self._list_webhooks, methods=["GET"]),
            ]
        )

    # --- test controls ---

    def expire_tokens(self) -> None:
        """Every issued token is expired from now on (401 + WWW-Authenticate "expired")."""
        for token in self.tokens:
            self.tokens[token] = self.clock.now() - 1

    def fail_next(self, status: int, times: int = 1, retry_after: float | None = None) -> None:
        """The next `times` API calls (not token requests) answer `status`."""
        headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
        self._failures.extend([(status, headers)] * times)

    # --- checks shared by the API routes ---

    def _check_host(self, request: Request) -> None:
        host = (request.headers.get("host") or "").split(":")[0]
        match = re.fullmatch(r"([a-z]+)\.conversation\.api\.sinch\.com", host)
        if match and match.group(1) != self.region:
            raise not_found(f"app not found in region {match.group(1)}")

    def _check_project(self, request: Request) -> None:
        self._check_host(request)
        if request.path_params["project"] != self.project_id:
            raise not_found("project not found")

    def _check_auth(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value:
            expires_at = self.tokens.get(value)
            if expires_at is None:
                raise FakeError(
                    401, "Invalid token", "UNAUTHENTICATED", {"www-authenticate": 'Bearer error="invalid_token"'}
                )
            if expires_at <= self.clock.now():
                raise FakeError(
                    401,
                    "Token expired",
                    "UNAUTHENTICATED",
                    {"www-authenticate": 'Bearer error="invalid_token", error_description="token expired"'},
                )
            return "bearer"
        if scheme.lower() == "basic" and self.allow_basic_auth and self._basic_ok(value):
            return "basic"
        raise FakeError(401, "Missing or invalid credentials", "UNAUTHENTICATED", {"www-authenticate": "Bearer"})

    def _basic_ok(self, value: str) -> bool:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return False
        key_id, _, key_secret = decoded.partition(":")
        return secrets.compare_digest(key_id, self.key_id) and secrets.compare_digest(key_secret, self.key_secret)

    def _take_failure(self) -> None:
        if self._failures:
            status, headers = self._failures.pop(0)
            kind = {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}.get(status, "FAILED_PRECONDITION")
            raise FakeError(status, "injected failure", kind, headers)

    async def _json(self, request: Request) -> dict[str, Any]:
        content_type = request.headers.get("content-type", "")
        if not content_type.split(";")[0].strip().lower() == "application/json":
            raise invalid("Content-Type must be application/json")
        try:
            data = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise invalid("body is not valid JSON") from None
        if not isinstance(data, dict):
            raise invalid("body must be a JSON object")
        return data

    # --- routes ---

    async def _token(self, request: Request) -> Response:
        self.token_requests += 1
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic" or not self._basic_ok(value):
            return JSONResponse(
                {"error": "invalid_client", "error_description": "Client authentication failed"}, status_code=401
            )
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return JSONResponse(
                {"error": "invalid_request", "error_description": "form-encoded body required"}, status_code=400
            )
        try:
            form = parse_qs((await request.body()).decode(), strict_parsing=False)
        except UnicodeDecodeError:
            form = {}
        if form.get("grant_type") != ["client_credentials"]:
            return JSONResponse(
                {"error": "unsupported_grant_type", "error_description": "grant_type must be client_credentials"},
                status_code=400,
            )
        token = "fake-" + secrets.token_urlsafe(24)
        self.tokens[token] = self.clock.now() + self.token_ttl
        return JSONResponse({"access_token": token, "expires_in": self.token_ttl, "scope": "", "token_type": "bearer"})

    async def _send(self, request: Request) -> Response:
        try:
            self._check_project(request)
            auth = self._check_auth(request)
            self._take_failure()
            body = await self._json(request)
            recipient = self._validate_send(body)
        except FakeError as exc:
            return exc.response()
        message_id = new_ulid(self.clock.now())
        message = body["message"]
        if "text_message" in message:
            text = message["text_message"]["text"]
        elif "choice_message" in message:
            text = message["choice_message"].get("text_message", {}).get("text", "")
        elif "card_message" in message:
            text = message["card_message"].get("description", "")
        elif "carousel_message" in message:
            text = message["carousel_message"]["cards"][0].get("description", "")
        else:
            text = ""
        self.sent.append(
            {
                "message_id": message_id,
                "to": recipient["identity"],
                "channel": recipient["channel"],
                "text": text,
                "message": message,
                "body": body,
                "auth": auth,
                "authorization": request.headers.get("authorization", ""),
            }
        )
        return JSONResponse({"message_id": message_id, "accepted_time": rfc3339(self.clock.now())})

    def _validate_send(self, body: dict[str, Any]) -> dict[str, str]:
        unknown = sorted(set(body) - SEND_KEYS)
        if unknown:
            raise invalid(f"unknown field(s): {', '.join(unknown)}")
        if body.get("app_id") != self.app_id:
            raise invalid("app_id is missing or not an app of this project")
        recipient = body.get("recipient")
        if not isinstance(recipient, dict) or len({"contact_id", "identified_by"} & set(recipient)) != 1:
            raise invalid("recipient must have exactly one of contact_id or identified_by")
        identities: list[dict[str, str]] = []
        if "identified_by" in recipient:
            found = (recipient["identified_by"] or {}).get("channel_identities")
            if not isinstance(found, list) or not found:
                raise invalid("recipient.identified_by.channel_identities must be a non-empty list")
            for identity in found:
                if not isinstance(identity, dict) or identity.get("channel") not in KNOWN_CHANNELS:
                    raise invalid("channel_identities[].channel is not a known channel")
                if not isinstance(identity.get("identity"), str) or not identity["identity"]:
                    raise invalid("channel_identities[].identity is required")
                identities.append(identity)
        elif not isinstance(recipient["contact_id"], str) or not recipient["contact_id"]:
            raise invalid("recipient.contact_id must be a non-empty string")
        self._validate_message(body.get("message"))
        channels = {i["channel"] for i in identities}
        if "WHATSAPP" in channels:
            _check_whatsapp_buttons(body["message"])
        properties = body.get("channel_properties", {})
        if "MMS" in channels and isinstance(properties, dict) and "SMS_SENDER" in properties:
            if "MMS_SENDER" not in properties:
                # Sinch MMS channel docs: the sender is `MMS_SENDER`; MMS ignores
                # SMS_SENDER, so such a send has no sender (a FAILED report at Sinch).
                raise invalid("channel_properties: the MMS sender is MMS_SENDER, not SMS_SENDER")
        order = body.get("channel_priority_order", [])
        if not isinstance(order, list) or any(c not in {i["channel"] for i in identities} for c in order):
            raise invalid("every channel_priority_order entry needs a matching channel identity")
        if "ttl" in body and not (isinstance(body["ttl"], str) and _TTL.match(body["ttl"])):
            raise invalid("ttl must be a duration like '60s'")
        for key, limit in (("message_metadata", 1024), ("correlation_id", 128)):
            if key in body and (not isinstance(body[key], str) or len(body[key]) > limit):
                raise invalid(f"{key} must be a string of at most {limit} characters")
        properties = body.get("channel_properties", {})
        if not isinstance(properties, dict) or not all(isinstance(v, str) for v in properties.values()):
            raise invalid("channel_properties must map strings to strings")
        if identities:
            return {"channel": identities[0]["channel"], "identity": identities[0]["identity"]}
        return {"channel": "", "identity": recipient["contact_id"]}

    def _validate_message(self, message: Any) -> None:
        if not isinstance(message, dict) or len(set(message) & MESSAGE_KINDS) != 1 or set(message) - MESSAGE_KINDS:
            raise invalid("message must have exactly one supported message kind")
        kind, content = next(iter(message.items()))
        if not isinstance(content, dict):
            raise invalid(f"message.{kind} must be an object")
        if kind == "text_message" and not (isinstance(content.get("text"), str) and content["text"]):
            raise invalid("message.text_message.text must be a non-empty string")
        if kind == "media_message":
            _check_media(content, "media_message")
        if kind == "card_message":
            _check_card(content, "card_message")
        if kind == "carousel_message":
            unknown = set(content) - CAROUSEL_KEYS
            if unknown:
                raise invalid(f"message.carousel_message: unknown field(s): {', '.join(sorted(unknown))}")
            cards = content.get("cards")
            if not isinstance(cards, list) or not 1 <= len(cards) <= MAX_CAROUSEL_CARDS:
                raise invalid(f"message.carousel_message.cards must hold 1 to {MAX_CAROUSEL_CARDS} cards")
            for index, card in enumerate(cards):
                _check_card(card, f"carousel_message.cards[{index}]")
            if "choices" in content:
                _check_choices(content["choices"], "carousel_message", minimum=0)
                if len(content["choices"]) > MAX_CAROUSEL_CHOICES:
                    raise invalid(f"message.carousel_message has at most {MAX_CAROUSEL_CHOICES} outer choices")
        if kind == "choice_message":
            _check_choices(content.get("choices"), "choice_message", minimum=1)
            text = content.get("text_message")
            if text is not None and not (isinstance(text, dict) and isinstance(text.get("text"), str)):
                raise invalid("message.choice_message.text_message.text must be a string")

    async def _create_webhook(self, request: Request) -> Response:
        try:
            self._check_project(request)
            self._check_auth(request)
            self._take_failure()
            body = await self._json(request)
            webhook = self._validate_webhook(body)
        except FakeError as exc:
            return exc.response()
        self.webhooks[webhook["id"]] = webhook
        return JSONResponse({k: v for k, v in webhook.items() if k != "secret"})

    def _validate_webhook(self, body: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(body) - {"app_id", "target", "target_type", "triggers", "secret", "client_credentials"})
        if unknown:
            raise invalid(f"unknown field(s): {', '.join(unknown)}")
        if body.get("app_id") != self.app_id:
            raise invalid("app_id is missing or not an app of this project")
        target = body.get("target")
        if not isinstance(target, str) or not target.startswith(("http://", "https://")):
            raise invalid("target must be an absolute http(s) URL")
        if len(target) > MAX_TARGET_LENGTH:
            raise invalid(f"target must be at most {MAX_TARGET_LENGTH} characters")
        if body.get("target_type", "HTTP") not in ("HTTP", "GRPC"):
            raise invalid("target_type must be HTTP or GRPC")
        triggers = body.get("triggers")
        if not isinstance(triggers, list) or not triggers or any(t not in TRIGGERS for t in triggers):
            raise invalid("triggers must be a non-empty list of known triggers")
        if "secret" in body and not isinstance(body["secret"], str):
            raise invalid("secret must be a string")
        same_app = [w for w in self.webhooks.values() if w["app_id"] == body["app_id"]]
        if len(same_app) >= MAX_WEBHOOKS_PER_APP:
            raise invalid(f"an app has at most {MAX_WEBHOOKS_PER_APP} webhooks")
        if any(w["target"] == target for w in same_app):
            raise invalid("a webhook with this target already exists for the app")
        return {
            "id": new_ulid(self.clock.now()),
            "app_id": body["app_id"],
            "target": target,
            "target_type": body.get("target_type", "HTTP"),
            "triggers": list(triggers),
            "secret": body.get("secret", ""),
        }

    async def _webhook(self, request: Request) -> Response:
        try:
            self._check_project(request)
            self._check_auth(request)
            self._take_failure()
            webhook = self.webhooks.get(request.path_params["webhook_id"])
            if webhook is None:
                raise not_found("webhook not found")
        except FakeError as exc:
            return exc.response()
        if request.method == "DELETE":
            del self.webhooks[webhook["id"]]
            return JSONResponse({})
        return JSONResponse({k: v for k, v in webhook.items() if k != "secret"})

    async def _list_webhooks(self, request: Request) -> Response:
        try:
            self._check_project(request)
            self._check_auth(request)
            if request.path_params["app"] != self.app_id:
                raise not_found("app not found")
        except FakeError as exc:
            return exc.response()
        items = [{k: v for k, v in w.items() if k != "secret"} for w in self.webhooks.values()]
        return JSONResponse({"webhooks": [w for w in items if w["app_id"] == self.app_id]})

    # --- the provider's outbound side: callbacks ---

    def _envelope(
        self, key: str, payload: dict[str, Any], correlation_id: str = "", message_metadata: str = ""
    ) -> bytes:
        now = self.clock.now()
        data = {
            "app_id": self.app_id,
            "accepted_time": rfc3339(now),
            "event_time": rfc3339(now - 0.2),
            "project_id": self.project_id,
            key: payload,
            "message_metadata": message_metadata,
            "correlation_id": correlation_id,
        }
        return json.dumps(data, separators=(",", ":")).encode()

    def inbound_body(
        self,
        text: str | None = None,
        contact: str = "+46701234567",
        message_id: str | None = None,
        *,
        channel: str = "SMS",
        to: str = "",
        content: dict[str, Any] | None = None,
    ) -> bytes:
        """A MESSAGE_INBOUND callback body; `content` replaces the text_message."""
        contact_message = content if content is not None else {"text_message": {"text": text or ""}}
        message = {
            "id": message_id or new_ulid(self.clock.now()),
            "direction": "TO_APP",
            "contact_message": contact_message,
            "channel_identity": {"channel": channel, "identity": contact.lstrip("+"), "app_id": ""},
            "conversation_id": new_ulid(self.clock.now()),
            "contact_id": new_ulid(self.clock.now()),
            "metadata": "",
            "accept_time": rfc3339(self.clock.now()),
            "sender_id": to.lstrip("+"),
            "processing_mode": "CONVERSATION",
            "injected": False,
        }
        return self._envelope("message", message)

    def report_body(
        self,
        message_id: str,
        status: str,
        *,
        reason_code: str | None = None,
        reason_description: str = "",
        channel: str | None = None,
        identity: str | None = None,
        message_metadata: str | None = None,
    ) -> bytes:
        """A MESSAGE_DELIVERY callback body (a Sinch status, e.g. QUEUED_ON_CHANNEL).

        For a message this fake accepted, the recipient, correlation_id and
        message_metadata are the ones it was sent with (Sinch echoes both).
        """
        record = next((m for m in self.sent if m["message_id"] == message_id), None)
        channel = channel or (record["channel"] if record else "SMS")
        identity = identity or (record["to"] if record else "46701234567")
        report: dict[str, Any] = {
            "message_id": message_id,
            "conversation_id": new_ulid(self.clock.now()),
            "status": status,
            "channel_identity": {"channel": channel, "identity": identity, "app_id": ""},
            "contact_id": new_ulid(self.clock.now()),
            "metadata": "",
            "processing_mode": "CONVERSATION",
        }
        if status == "FAILED" or reason_code:
            report["reason"] = {
                "code": reason_code or "RECIPIENT_NOT_REACHABLE",
                "description": reason_description or "The recipient could not be reached",
                "sub_code": "UNSPECIFIED_SUB_CODE",
            }
        correlation = record["body"].get("correlation_id", "") if record else ""
        if message_metadata is None:
            message_metadata = record["body"].get("message_metadata", "") if record else ""
        return self._envelope("message_delivery_report", report, correlation, message_metadata)

    def sign(
        self,
        body: bytes,
        secret: str | None = None,
        *,
        nonce: str | None = None,
        timestamp: float | str | None = None,
        algorithm: str = "HmacSHA256",
    ) -> dict[str, str]:
        """The four `x-sinch-webhook-signature*` headers (plus content-type) for `body`."""
        nonce = nonce or new_ulid(self.clock.now())
        stamp = str(int(self.clock.now())) if timestamp is None else str(timestamp)
        signature = sign_callback(self.webhook_secret if secret is None else secret, body, nonce, stamp)
        return {
            "content-type": "application/json",
            "x-sinch-webhook-signature": signature,
            "x-sinch-webhook-signature-nonce": nonce,
            "x-sinch-webhook-signature-timestamp": stamp,
            "x-sinch-webhook-signature-algorithm": algorithm,
        }

    async def deliver(
        self, url: str, body: bytes, *, secret: str | None = None, client: httpx.AsyncClient | None = None
    ) -> list[httpx.Response]:
        """POST a callback as Sinch does: freshly signed per attempt, retried on non-2xx.

        With `duplicate_deliveries`, a delivery that succeeded is made once more
        (new nonce, same body). Returns every response.
        """
        if client is None:
            async with httpx.AsyncClient() as own:
                return await self.deliver(url, body, secret=secret, client=own)
        responses: list[httpx.Response] = []
        copies = 2 if self.duplicate_deliveries else 1
        for _ in range(copies):
            for _attempt in range(max(1, self.max_delivery_attempts)):
                headers = self.sign(body, secret)
                try:
                    response = await client.post(url, content=body, headers=headers)
                except httpx.TransportError:
                    self.deliveries.append(Delivery(url, body, headers, None))
                    continue
                self.deliveries.append(Delivery(url, body, headers, response.status_code))
                responses.append(response)
                if response.is_success:
                    break
        return responses

    async def emit_inbound(
        self,
        url: str,
        *,
        text: str = "Hello",
        contact: str = "+46701234567",
        message_id: str | None = None,
        channel: str = "SMS",
        content: dict[str, Any] | None = None,
        secret: str | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> httpx.Response:
        """A phone sends a message: POST a signed MESSAGE_INBOUND to `url`; the last response."""
        body = self.inbound_body(text, contact, message_id, channel=channel, content=content)
        return (await self.deliver(url, body, secret=secret, client=client))[-1]

    async def emit_report(
        self,
        url: str,
        message_id: str,
        status: str = "DELIVERED",
        *,
        reason_code: str | None = None,
        secret: str | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> httpx.Response:
        """Sinch reports on a message it accepted: POST a signed MESSAGE_DELIVERY to `url`."""
        body = self.report_body(message_id, status, reason_code=reason_code)
        return (await self.deliver(url, body, secret=secret, client=client))[-1]

    async def emit_lifecycle(
        self,
        url: str,
        message_id: str,
        *,
        out_of_order: bool = False,
        failed: bool = False,
        secret: str | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> list[httpx.Response]:
        """QUEUED_ON_CHANNEL → DELIVERED → READ (or FAILED), reversed when `out_of_order`."""
        statuses = ["QUEUED_ON_CHANNEL", "FAILED"] if failed else ["QUEUED_ON_CHANNEL", "DELIVERED", "READ"]
        if out_of_order:
            statuses.reverse()
        return [await self.emit_report(url, message_id, s, secret=secret, client=client) for s in statuses]

    async def emit_to_webhooks(
        self, body: bytes, trigger: str, *, client: httpx.AsyncClient | None = None
    ) -> list[httpx.Response]:
        """Deliver a callback to every registered webhook with `trigger`, signed with its secret."""
        responses: list[httpx.Response] = []
        for webhook in list(self.webhooks.values()):
            if trigger in webhook["triggers"]:
                responses.extend(await self.deliver(webhook["target"], body, secret=webhook["secret"], client=client))
        return responses


class SinchPhone(ChannelFake):
    """The fake as the demo and end-to-end tests drive it: a phone behind Sinch."""

    name = "sinch"

    def __init__(self, fake: FakeSinch | None = None) -> None:
        self.fake = fake or FakeSinch()
        self.app = self.fake.app

    def sender_body(self, base_url: str) -> dict[str, Any]:
        fake = self.fake
        credentials = {
            "project_id": fake.project_id,
            "app_id": fake.app_id,
            "key_id": fake.key_id,
            "key_secret": fake.key_secret,
        }
        return {
            "channel": "sinch",
            "address": "+46700000000",
            "credentials": json.dumps(credentials),
            "webhook_secret": fake.webhook_secret,
            "config": {"base_url": base_url, "auth_url": base_url, "channel": "SMS"},
        }

    async def phone_says(self, webhook_url: str, text: str, contact: str) -> int | None:
        responses = await self.fake.deliver(webhook_url, self.fake.inbound_body(text, digits(contact), None))
        return responses[-1].status_code if responses else None

    def sent(self) -> list[dict[str, Any]]:
        return self.fake.sent

    async def report_delivered(self, webhook_url: str) -> int:
        for message in self.fake.sent:
            await self.fake.emit_report(webhook_url, message["message_id"], "DELIVERED")
        return len(self.fake.sent)


def serve(host: str = "127.0.0.1", port: int = 8099, fake: FakeSinch | None = None) -> None:
    """Run the fake on a loopback port (blocking)."""
    import uvicorn

    uvicorn.run((fake or FakeSinch()).app, host=host, port=port, log_level="warning")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m botbridge_sinch.testing", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--project-id", default=FakeSinch.project_id)
    parser.add_argument("--app-id", default=FakeSinch.app_id)
    parser.add_argument("--key-id", default=FakeSinch.key_id)
    parser.add_argument("--key-secret", default=FakeSinch.key_secret)
    parser.add_argument("--webhook-secret", default=FakeSinch.webhook_secret)
    parser.add_argument("--region", default="us", choices=("us", "eu", "br"))
    args = parser.parse_args(argv)
    fake = FakeSinch(
        project_id=args.project_id,
        app_id=args.app_id,
        key_id=args.key_id,
        key_secret=args.key_secret,
        webhook_secret=args.webhook_secret,
        region=args.region,
    )
    serve(args.host, args.port, fake)


if __name__ == "__main__":
    main()
