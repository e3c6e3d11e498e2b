"""The Sinch Conversation API as a botbridge channel.

Inbound: Sinch POSTs callbacks (MESSAGE_INBOUND, MESSAGE_DELIVERY, …) signed
with the webhook's secret: base64(HMAC-SHA256(secret, body.nonce.timestamp)).
Outbound: `POST /v1/projects/{project}/messages:send` with an OAuth2
client-credentials bearer token, cached per key until shortly before expiry.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import re
from typing import Any, ClassVar
from urllib.parse import urlsplit

import anyio
import httpx
from pydantic import BaseModel, ConfigDict, Field

from botbridge.channel import (
    WEBHOOK_VIA,
    Capabilities,
    Channel,
    ProvisionResult,
    SenderContext,
    WebhookRequest,
    WebhookResult,
    parse_payload,
)
from botbridge.clock import Clock
from botbridge.crypto import generate_secret
from botbridge.errors import ConfigInvalid, Conflict, CredentialsInvalid, InvalidSignature, SendError
from botbridge.http import RetryPolicy, call_with_retry
from botbridge.models import DeliveryReport, InboundMessage, Media, OutboundMessage, Reply, SendResult
from botbridge.render import as_text
from botbridge.signing import check_timestamp, hmac_digest, verify_digest
from botbridge.sms import fragments_count, truncate

logger = logging.getLogger("botbridge.sinch")

REGIONS = ("us", "eu", "br")
DEFAULT_AUTH_URL = "https://auth.sinch.com"
DEFAULT_CHANNEL = "SMS"
DEFAULT_SIGNATURE_WINDOW = 300.0
# Channels on which Sinch renders a choice_message natively (buttons, quick
# replies, suggestions); elsewhere options become numbered text.
CHOICE_CHANNELS = frozenset({"WHATSAPP", "RCS", "MESSENGER", "VIBER", "VIBERBM", "TELEGRAM", "INSTAGRAM", "LINE"})
MAX_CHOICES = 10
# Channels on which Sinch renders a card_message (media + text + choices) as
# one message: RCS rich cards, Messenger generic templates, WhatsApp
# interactive messages with a media header, MMS with media and text (Sinch
# "Message types" table and "Card message" transcoding).
CARD_CHANNELS = CHOICE_CHANNELS | {"MMS"}
# Channels that render a carousel_message natively (same table); WhatsApp,
# MMS, Viber and Telegram would turn one into text.
CAROUSEL_CHANNELS = frozenset({"RCS", "MESSENGER", "INSTAGRAM", "LINE"})
# Sinch "Carousel message": up to 10 cards and 3 outer choices; Instagram
# shows no outer choices.
MAX_CAROUSEL_CARDS = 10
MAX_CAROUSEL_CHOICES = 3
NO_CAROUSEL_CHOICES = frozenset({"INSTAGRAM"})
# WhatsApp reply buttons: at most 3, titles at most 20 characters (WhatsApp
# Cloud API, interactive "button" messages). Other choice sets are numbered text.
WHATSAPP_MAX_BUTTONS = 3
WHATSAPP_MAX_BUTTON_TITLE = 20
# The channel property naming our sender number, per channel (Sinch SMS and
# MMS channel docs): MMS ignores SMS_SENDER.
SENDER_PROPERTY: dict[str, str] = {"SMS": "SMS_SENDER", "MMS": "MMS_SENDER"}
# Channels whose media_message Sinch does not deliver as media: links go in the text.
TEXT_ONLY_CHANNELS = frozenset({"SMS"})
# Identities that are phone numbers (MSISDN digits); the others are app-scoped ids.
PHONE_CHANNELS = frozenset({"SMS", "MMS", "WHATSAPP", "RCS", "VIBERBM"})
MAX_TEXT_LENGTH: dict[str, int] = {
    "SMS": 1600,
    "MMS": 1600,
    "WHATSAPP": 4096,
    "RCS": 3072,
    "MESSENGER": 2000,
    "INSTAGRAM": 1000,
    "TELEGRAM": 4096,
    "VIBER": 7000,
    "VIBERBM": 1000,
    "LINE": 5000,
}
DEFAULT_MAX_TEXT_LENGTH = 1600
# Sinch delivery statuses → botbridge message states. SWITCHING_CHANNEL means
# the message falls back to the next channel: it is queued again there.
STATUS_MAP: dict[str, str] = {
    "QUEUED": "QUEUED",
    "QUEUED_ON_CHANNEL": "QUEUED",
    "SWITCHING_CHANNEL": "QUEUED",
    "DELIVERED": "DELIVERED",
    "READ": "READ",
    "FAILED": "FAILED",
}
SIGNATURE_ALGORITHM = "HmacSHA256"
TOKEN_EARLY_REFRESH = 60.0  # seconds before expiry a cached token is replaced

_CHANNEL_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")
_HEADER_SIGNATURE = "x-sinch-webhook-signature"
_HEADER_NONCE = "x-sinch-webhook-signature-nonce"
_HEADER_TIMESTAMP = "x-sinch-webhook-signature-timestamp"
_HEADER_ALGORITHM = "x-sinch-webhook-signature-algorithm"


def api_base_url(region: str) -> str:
    return f"https://{region}.conversation.api.sinch.com"


def sign_callback(secret: str, body: bytes, nonce: str, timestamp: str) -> str:
    """The `x-sinch-webhook-signature` Sinch puts on a callback."""
    signed = body + b"." + nonce.encode() + b"." + timestamp.encode()
    return base64.b64encode(hmac_digest(secret, signed)).decode()


# --- sender settings ------------------------------------------------------


class SinchCredentials(BaseModel):
    """The sender's `credentials` JSON: project, app and access key."""

    model_config = ConfigDict(extra="ignore")

    project_id: str = Field(min_length=1)
    app_id: str = Field(min_length=1)
    key_id: str = Field(min_length=1)
    key_secret: str = Field(min_length=1)


def _credentials(raw: str) -> SinchCredentials:
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        raise ConfigInvalid(
            "credentials", "must be a JSON object with project_id, app_id, key_id, key_secret"
        ) from None
    if not isinstance(data, dict):
        raise ConfigInvalid("credentials", "must be a JSON object with project_id, app_id, key_id, key_secret")
    for key in SinchCredentials.model_fields:
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ConfigInvalid(f"credentials.{key}", "is required (a non-empty string)")
    return SinchCredentials.model_validate(data)


def _http_url(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigInvalid(field, "must be an http(s) URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigInvalid(field, "must be an http(s) URL")
    return value.rstrip("/")


# --- callback payloads ----------------------------------------------------


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _ChannelIdentity(_Loose):
    channel: str = ""
    identity: str = Field(min_length=1)
    app_id: str = ""


class _Text(_Loose):
    text: str


class _MediaMessage(_Loose):
    url: str = Field(min_length=1)
    thumbnail_url: str | None = None
    filename_override: str | None = None


class _MediaCard(_Loose):
    url: str = Field(min_length=1)
    caption: str = ""


class _Coordinates(_Loose):
    latitude: float
    longitude: float


class _Location(_Loose):
    title: str = ""
    label: str = ""
    coordinates: _Coordinates


class _ChoiceResponse(_Loose):
    message_id: str = ""
    postback_data: str


class _Fallback(_Loose):
    raw_message: str = ""


class _ContactMessage(_Loose):
    text_message: _Text | None = None
    media_message: _MediaMessage | None = None
    media_card_message: _MediaCard | None = None
    location_message: _Location | None = None
    choice_response_message: _ChoiceResponse | None = None
    fallback_message: _Fallback | None = None
    reply_to: dict[str, Any] | None = None


class _Inbound(_Loose):
    id: str = Field(min_length=1)
    direction: str = "TO_APP"
    contact_message: _ContactMessage
    channel_identity: _ChannelIdentity
    conversation_id: str = ""
    contact_id: str = ""
    sender_id: str = ""


class _Reason(_Loose):
    code: str = ""
    description: str = ""
    sub_code: str = ""


class _DeliveryReport(_Loose):
    message_id: str = Field(min_length=1)
    status: str = Field(min_length=1)
    channel_identity: _ChannelIdentity | None = None
    conversation_id: str = ""
    reason: _Reason | None = None


class _Envelope(_Loose):
    app_id: str
    project_id: str = ""
    correlation_id: str = ""
    message_metadata: str = ""


class _InboundEnvelope(_Envelope):
    message: _Inbound


class _DeliveryEnvelope(_Envelope):
    message_delivery_report: _DeliveryReport


# --- the channel ----------------------------------------------------------


class _Token:
    __slots__ = ("expires_at", "value")

    def __init__(self, value: str, expires_at: float) -> None:
        self.value = value
        self.expires_at = expires_at


class SinchChannel(Channel):
    name = "sinch"
    description = "Sinch Conversation API (SMS, WhatsApp, RCS, Messenger, Viber, Telegram, Instagram, LINE)"
    credential_keys: ClassVar[tuple[str, ...]] = ("project_id", "app_id", "key_id", "key_secret")
    config_keys: ClassVar[tuple[str, ...]] = (
        "region",
        "channel",
        "sms_sender",
        "base_url",
        "auth_url",
        "provision",
        "signature_window",
        "webhook_id",
        WEBHOOK_VIA,
    )

    def __init__(
        self,
        http: httpx.AsyncClient,
        clock: Clock,
        *,
        retry: RetryPolicy | None = None,
        signature_window: float = DEFAULT_SIGNATURE_WINDOW,
    ) -> None:
        super().__init__(http, clock)
        self.retry = retry or RetryPolicy()
        self.signature_window = signature_window
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._token_locks: dict[tuple[str, str, str], anyio.Lock] = {}

    # --- sender settings ---

    def validate_sender(
        self, address: str, credentials: str, webhook_secret: str, config: dict[str, Any]
    ) -> dict[str, Any]:
        config = super().validate_sender(address, credentials, webhook_secret, config)
        _credentials(credentials)
        config = dict(config)
        region = config.get("region", "us")
        if not isinstance(region, str) or region.lower() not in REGIONS:
            raise ConfigInvalid("config.region", f"must be one of {', '.join(REGIONS)}")
        config["region"] = region.lower()
        channel = config.get("channel", DEFAULT_CHANNEL)
        if not isinstance(channel, str) or not _CHANNEL_NAME.match(channel.upper()):
            raise ConfigInvalid("config.channel", "must be a Sinch channel name such as SMS, WHATSAPP or RCS")
        config["channel"] = channel.upper()
        if "sms_sender" in config and (not isinstance(config["sms_sender"], str) or not config["sms_sender"]):
            raise ConfigInvalid("config.sms_sender", "must be a non-empty string (the SMS sender number or id)")
        for key in ("base_url", "auth_url"):
            if config.get(key) is not None:
                config[key] = _http_url(config[key], f"config.{key}")
        if "provision" in config and not isinstance(config["provision"], bool):
            raise ConfigInvalid("config.provision", "must be true or false")
        if WEBHOOK_VIA in config and (not isinstance(config[WEBHOOK_VIA], str) or not config[WEBHOOK_VIA]):
            raise ConfigInvalid(f"config.{WEBHOOK_VIA}", "must be the id of the sender whose webhook this one shares")
        if "signature_window" in config:
            window = config["signature_window"]
            if isinstance(window, bool) or not isinstance(window, int | float) or not 0 < window <= 86400:
                raise ConfigInvalid("config.signature_window", "must be a number of seconds in (0, 86400]")
        return config

    def _channel_of(self, sender: SenderContext) -> str:
        return str(sender.config.get("channel") or DEFAULT_CHANNEL).upper()

    def _base_url(self, sender: SenderContext) -> str:
        base = sender.config.get("base_url")
        return str(base).rstrip("/") if base else api_base_url(str(sender.config.get("region") or "us").lower())

    def _auth_url(self, sender: SenderContext) -> str:
        return str(sender.config.get("auth_url") or DEFAULT_AUTH_URL).rstrip("/")

    def _window(self, sender: SenderContext) -> float:
        window = sender.config.get("signature_window")
        return (
            float(window) if isinstance(window, int | float) and not isinstance(window, bool) else self.signature_window
        )

    def capabilities(self, sender: SenderContext) -> Capabilities:
        channel = self._channel_of(sender)
        return Capabilities(
            options=channel in CHOICE_CHANNELS,  # on WhatsApp: up to 3 short labels (else numbered text)
            media=channel not in TEXT_ONLY_CHANNELS,
            max_text_length=MAX_TEXT_LENGTH.get(channel, DEFAULT_MAX_TEXT_LENGTH),
            sms=channel in ("SMS", "MMS"),
            carrier_compliance=channel in ("SMS", "MMS", "RCS"),
        )

    # --- inbound ---

    def _verify(self, request: WebhookRequest, sender: SenderContext) -> str:
        """Check signature, timestamp window and algorithm; return the nonce."""
        if not sender.webhook_secret:
            raise InvalidSignature("the sender has no webhook secret configured")
        headers = request.headers
        signature = headers.get(_HEADER_SIGNATURE)
        nonce = headers.get(_HEADER_NONCE)
        timestamp = headers.get(_HEADER_TIMESTAMP)
        algorithm = headers.get(_HEADER_ALGORITHM)
        if not signature:
            raise InvalidSignature("missing signature")
        if not nonce:
            raise InvalidSignature("missing signature nonce")
        if not timestamp:
            raise InvalidSignature("missing signature timestamp")
        if algorithm is not None and algorithm.strip().lower() != SIGNATURE_ALGORITHM.lower():
            raise InvalidSignature("unsupported signature algorithm")
        check_timestamp(timestamp, now=self.clock.now(), window=self._window(sender))
        try:
            signed = request.body + b"." + nonce.encode() + b"." + timestamp.encode()
        except UnicodeEncodeError:
            raise InvalidSignature("signature headers are not valid text") from None
        verify_digest(signature, hmac_digest(sender.webhook_secret, signed), encoding="base64")
        return nonce

    async def parse_webhook(self, request: WebhookRequest, sender: SenderContext) -> WebhookResult:
        nonce = self._verify(request, sender)
        if not await sender.claim("sinch-nonce:" + nonce, self._window(sender) * 2):
            raise InvalidSignature("signature nonce was already used (replay)")
        data = request.json_object()
        envelope = parse_payload(_Envelope, data)
        # Classified by top-level key, in the order the official SDK checks.
        if "message_delivery_report" in data:
            report = parse_payload(_DeliveryEnvelope, data).message_delivery_report
            if not self._our_app(envelope, sender):
                return WebhookResult()
            # Our sends carry the sending sender's id as message_metadata, echoed here.
            owner = await self._owner(sender, envelope.app_id, by_id=envelope.message_metadata)
            return WebhookResult(reports=self._reports(report, owner))
        if "message" in data:
            inbound = parse_payload(_InboundEnvelope, data).message
            if not self._our_app(envelope, sender):
                return WebhookResult()
            owner = await self._owner(
                sender, envelope.app_id, channel=inbound.channel_identity.channel, number=inbound.sender_id
            )
            return WebhookResult(messages=self._messages(inbound, data, owner))
        return WebhookResult()  # another trigger: acknowledged, nothing to hand on

    def _our_app(self, envelope: _Envelope, sender: SenderContext) -> bool:
        """Is a verified callback about this sender's app?

        One signed with our secret but for another app means the webhook's
        target and secret are registered at that app too. It is acknowledged
        (2xx) with nothing accepted: Sinch retries any other answer, and no
        retry could ever be accepted.
        """
        if envelope.app_id == self._sender_credentials(sender).app_id:
            return True
        logger.warning(
            "Sinch callback for app %r at the webhook of sender %s (app %r): ignored; "
            "is this webhook's target also registered at that app?",
            envelope.app_id[:64],
            sender.id,
            self._sender_credentials(sender).app_id,
        )
        return False

    async def _owner(
        self, sender: SenderContext, app_id: str, *, by_id: str = "", channel: str = "", number: str = ""
    ) -> SenderContext:
        """The sender a callback is for: this one, or one sharing its webhook (same app).

        Sinch allows 5 webhooks per app, so senders of one app share one
        webhook; core checks that the one named really receives through it.
        """
        if by_id == sender.id or not (by_id or self._foreign_identity(sender, channel, number)):
            return sender
        for sibling in await sender.siblings():
            try:
                if self._sender_credentials(sibling).app_id != app_id:
                    continue
            except CredentialsInvalid:
                continue
            if by_id and sibling.id == by_id:
                return sibling
            if not by_id and not self._foreign_identity(sibling, channel, number):
                return sibling
        return sender

    def _foreign_identity(self, sender: SenderContext, channel: str, number: str) -> bool:
        """Did a message to (channel, our number) reach another sender than this one?"""
        if channel and channel.upper() != self._channel_of(sender):
            return True
        digits = "".join(c for c in sender.address if c.isdigit())
        return bool(number and digits and number.lstrip("+") != digits)

    def _contact(self, identity: _ChannelIdentity) -> str:
        value = identity.identity.strip()
        channel = identity.channel.upper()
        if channel in PHONE_CHANNELS and value.isdigit() and value.isascii():
            return "+" + value
        return value

    def _messages(self, inbound: _Inbound, data: dict[str, Any], sender: SenderContext) -> list[InboundMessage]:
        if inbound.direction not in ("TO_APP", ""):
            return []
        content = inbound.contact_message
        text = ""
        media: list[Media] = []
        postback: str | None = None
        kind: str
        if content.text_message is not None:
            kind, text = "text", content.text_message.text
        elif content.choice_response_message is not None:
            kind = "choice_response"
            postback = text = content.choice_response_message.postback_data
        elif content.media_message is not None:
            kind = "media"
            media = [Media(url=content.media_message.url)]
        elif content.media_card_message is not None:
            kind = "media_card"
            card = content.media_card_message
            media = [Media(url=card.url, caption=card.caption or None)]
            text = card.caption
        elif content.location_message is not None:
            kind = "location"
            where = content.location_message
            name = where.title or where.label
            text = f"Location: {where.coordinates.latitude},{where.coordinates.longitude}" + (
                f" ({name})" if name else ""
            )
        elif content.fallback_message is not None:
            kind, text = "fallback", content.fallback_message.raw_message
        else:
            return []  # content kinds botbridge does not carry (product responses, channel-specific)
        metadata: dict[str, Any] = {
            "sinch_channel": inbound.channel_identity.channel,
            "sinch_kind": kind,
            "conversation_id": inbound.conversation_id,
            "contact_id": inbound.contact_id,
            "app_id": data.get("app_id", ""),
        }
        if content.reply_to:
            metadata["reply_to"] = content.reply_to.get("message_id")
        to_address = inbound.sender_id or sender.address
        if inbound.sender_id and inbound.channel_identity.channel.upper() in PHONE_CHANNELS:
            to_address = "+" + inbound.sender_id if inbound.sender_id.isdigit() else inbound.sender_id
        return [
            InboundMessage(
                channel=self.name,
                sender_id=sender.id,
                provider_message_id=inbound.id,
                contact=self._contact(inbound.channel_identity),
                to_address=to_address,
                text=text,
                media=media,
                postback=postback,
                metadata=metadata,
            )
        ]

    def _reports(self, report: _DeliveryReport, sender: SenderContext) -> list[DeliveryReport]:
        state = STATUS_MAP.get(report.status.upper())
        if state is None:
            return []  # a status this version does not know: acknowledged, ignored
        reason_code = report.reason.code if report.reason and report.reason.code else None
        reason_description = report.reason.description if report.reason and report.reason.description else None
        if report.status.upper() == "SWITCHING_CHANNEL":
            reason_code = reason_code or "SWITCHING_CHANNEL"
        return [
            DeliveryReport(
                channel=self.name,
                sender_id=sender.id,
                provider_message_id=report.message_id,
                state=state,
                reason_code=reason_code,
                reason_description=reason_description,
                contact=self._contact(report.channel_identity) if report.channel_identity else None,
            )
        ]

    # --- OAuth2 ---

    async def _token(self, sender: SenderContext, creds: SinchCredentials, *, stale: str | None = None) -> str:
        """A bearer token for these credentials; one refresh at a time per key.

        `stale` is a token the API just called expired: it is replaced even
        if the cache still believes it valid.
        """
        auth_url = self._auth_url(sender)
        key = (auth_url, creds.key_id, creds.key_secret)
        lock = self._token_locks.get(key)
        if lock is None:
            lock = self._token_locks[key] = anyio.Lock()
        async with lock:
            cached = self._tokens.get(key)
            if cached is not None and cached.value != stale and cached.expires_at > self.clock.now():
                return cached.value
            self._tokens.pop(key, None)
            token = await self._fetch_token(auth_url, creds)
            self._tokens[key] = token
            return token.value

    async def _fetch_token(self, auth_url: str, creds: SinchCredentials) -> _Token:
        async def request() -> httpx.Response:
            return await self.http.post(
                auth_url + "/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=httpx.BasicAuth(creds.key_id, creds.key_secret),
            )

        response = await call_with_retry(
            request, "Sinch OAuth token endpoint", clock=self.clock, policy=self.retry, error=SendError
        )
        try:
            body = response.json()
            value = body["access_token"]
            expires_in = float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise SendError("Sinch OAuth token endpoint answered an unexpected body", retryable=True) from None
        if not isinstance(value, str) or not value:
            raise SendError("Sinch OAuth token endpoint answered no access_token", retryable=True)
        lifetime = max(0.0, expires_in - min(TOKEN_EARLY_REFRESH, expires_in / 10))
        return _Token(value, self.clock.now() + lifetime)

    async def _api(
        self,
        sender: SenderContext,
        creds: SinchCredentials,
        method: str,
        path: str,
        what: str,
        body: dict[str, Any] | None = None,
        *,
        idempotent: bool = True,
    ) -> httpx.Response:
        """Call the Conversation API with retries; refresh an expired token once.

        `idempotent=False` (a send): a failure after which Sinch may have
        queued the message is raised at once, `outcome_unknown`.
        """
        url = self._base_url(sender) + f"/v1/projects/{creds.project_id}" + path
        content = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        refreshed = False

        async def call(token: str) -> httpx.Response:
            headers = {"authorization": f"Bearer {token}"}
            if content is not None:
                headers["content-type"] = "application/json"
            return await self.http.request(method, url, content=content, headers=headers)

        async def attempt() -> httpx.Response:
            nonlocal refreshed
            token = await self._token(sender, creds)
            response = await call(token)
            if (
                response.status_code == 401
                and not refreshed
                and "expired" in response.headers.get("www-authenticate", "").lower()
            ):
                refreshed = True
                response = await call(await self._token(sender, creds, stale=token))
            return response

        policy = self.retry if idempotent else dataclasses.replace(self.retry, idempotent=False)
        return await call_with_retry(attempt, what, clock=self.clock, policy=policy, error=SendError)

    # --- outbound ---

    def _native_choices(self, channel: str, message: OutboundMessage) -> bool:
        if channel not in CHOICE_CHANNELS or not 0 < len(message.options) <= MAX_CHOICES:
            return False
        if not all(option.label.strip() for option in message.options):
            return False  # Sinch refuses a text choice without text
        if channel == "WHATSAPP":
            return len(message.options) <= WHATSAPP_MAX_BUTTONS and all(
                len(option.label) <= WHATSAPP_MAX_BUTTON_TITLE for option in message.options
            )
        return True

    def _message(self, channel: str, message: OutboundMessage) -> dict[str, Any]:
        """The one Sinch `message` an outbound message becomes.

        Always one, whatever the reply holds: core tracks one provider id per
        message, so a second send would be a message its reports cannot
        reach, and a retry after a partial failure would repeat the part
        already accepted. What the chosen kind cannot carry natively (more
        media, options that cannot be buttons) goes into its text as links
        or numbered lines.
        """
        limit = MAX_TEXT_LENGTH.get(channel, DEFAULT_MAX_TEXT_LENGTH)
        text = message.text.strip()
        media = [] if channel in TEXT_ONLY_CHANNELS else list(message.media)
        carousel = len(media) > 1 and channel in CAROUSEL_CHANNELS
        native_choice = self._native_choices(channel, message) and not (
            carousel and (len(message.options) > MAX_CAROUSEL_CHOICES or channel in NO_CAROUSEL_CHOICES)
        )
        choices = (
            [{"text_message": {"text": o.label}, "postback_data": o.value} for o in message.options]
            if native_choice
            else []
        )
        menu = [] if native_choice or not message.options else [as_text(Reply(options=message.options))]

        if carousel:
            cards: list[dict[str, Any]] = [
                {"media_message": {"url": m.url}, **({"description": m.caption} if m.caption else {})}
                for m in media[:MAX_CAROUSEL_CARDS]
            ]
            # The text leads the first card; cards past Sinch's ten become links.
            lead = _fit(text, [media[0].caption or "", _links(media[MAX_CAROUSEL_CARDS:]), *menu], limit)
            if lead:
                cards[0]["description"] = lead
            carousel_message: dict[str, Any] = {"cards": cards}
            if choices:
                carousel_message["choices"] = choices
            return {"carousel_message": carousel_message}

        if media and channel in CARD_CHANNELS:
            head, rest = media[0], media[1:]
            description = _fit(text, [head.caption or "", _links(rest), *menu], limit)
            if not (description or choices):
                return {"media_message": {"url": head.url}}
            card: dict[str, Any] = {"media_message": {"url": head.url}}
            if description:
                card["description"] = description
            if choices:
                card["choices"] = choices
            return {"card_message": card}

        if len(media) == 1 and not (text or message.options or media[0].caption):
            return {"media_message": {"url": media[0].url}}
        # No card here (SMS, or a channel without one): media become links.
        body_text = _fit(text, [_links(message.media), *menu], limit)
        if choices:
            choice: dict[str, Any] = {"choices": choices}
            if body_text:
                choice["text_message"] = {"text": body_text}
            return {"choice_message": choice}
        if not body_text:
            raise SendError("nothing to send: the message has no text, media or options")
        return {"text_message": {"text": body_text}}

    def _send_body(
        self, sender: SenderContext, creds: SinchCredentials, channel: str, contact: str, content: dict[str, Any]
    ) -> dict[str, Any]:
        identity = contact.strip()
        if channel in PHONE_CHANNELS:
            identity = identity.lstrip("+")
        body: dict[str, Any] = {
            "app_id": creds.app_id,
            "recipient": {"identified_by": {"channel_identities": [{"channel": channel, "identity": identity}]}},
            "message": content,
        }
        sms_sender = sender.config.get("sms_sender")
        if sms_sender and channel in SENDER_PROPERTY:
            body["channel_properties"] = {SENDER_PROPERTY[channel]: str(sms_sender)}
        return body

    async def send(self, sender: SenderContext, message: OutboundMessage) -> SendResult:
        creds = self._sender_credentials(sender)
        channel = self._channel_of(sender)
        if not message.contact.strip():
            raise SendError("the message has no recipient")
        content = self._message(channel, message)
        body = self._send_body(sender, creds, channel, message.contact, content)
        body["correlation_id"] = message.id[:128]
        # Echoed in delivery callbacks: which sender of a shared webhook sent it.
        body["message_metadata"] = sender.id[:1024]
        # Sinch has no lookup by our reference: core fails an outcome-unknown send rather than repeat it.
        response = await self._api(
            sender, creds, "POST", "/messages:send", "Sinch messages:send", body, idempotent=False
        )
        message_id = _json_field(response, "message_id", "Sinch messages:send")
        fragments = fragments_count(_text_of(content)) if channel in ("SMS", "MMS") else None
        return SendResult(provider_message_id=message_id, state="QUEUED", fragments_count=fragments)

    def _sender_credentials(self, sender: SenderContext) -> SinchCredentials:
        try:
            return _credentials(sender.credentials)
        except ConfigInvalid as exc:
            raise CredentialsInvalid(f"sender credentials are unusable: {exc.field}") from None

    # --- provisioning ---

    async def provision(self, sender: SenderContext) -> ProvisionResult | None:
        creds = self._sender_credentials(sender)
        target = sender.webhook_url
        if not urlsplit(target).scheme.startswith("http"):
            raise SendError("cannot register a Sinch webhook without an absolute webhook URL: set BOTBRIDGE_PUBLIC_URL")
        shared = await self._shared_webhook(sender, creds)
        if shared is not None:
            webhook_id, owner_id = shared
            return ProvisionResult(config={"webhook_id": webhook_id, WEBHOOK_VIA: owner_id})
        secret = generate_secret()
        body = {
            "app_id": creds.app_id,
            "target": target,
            "target_type": "HTTP",
            "triggers": ["MESSAGE_INBOUND", "MESSAGE_DELIVERY"],
            "secret": secret,
        }
        response = await self._api(sender, creds, "POST", "/webhooks", "Sinch webhook registration", body)
        webhook_id = _json_field(response, "id", "Sinch webhook registration")
        return ProvisionResult(webhook_secret=secret, config={"webhook_id": webhook_id})

    async def _shared_webhook(self, sender: SenderContext, creds: SinchCredentials) -> tuple[str, str] | None:
        """(webhook id, owner sender id) of a webhook of this host already serving the app."""
        response = await self._api(sender, creds, "GET", f"/apps/{creds.app_id}/webhooks", "Sinch webhook list")
        try:
            webhooks = response.json().get("webhooks") or []
        except (ValueError, AttributeError):
            return None
        prefix = sender.webhook_url[: -len(sender.id)] if sender.webhook_url.endswith(sender.id) else None
        if not prefix:
            return None
        for webhook in webhooks:
            target = webhook.get("target") if isinstance(webhook, dict) else None
            triggers = set(webhook.get("triggers") or []) if isinstance(webhook, dict) else set()
            if not isinstance(target, str) or not target.startswith(prefix) or not isinstance(webhook.get("id"), str):
                continue
            owner = target[len(prefix) :]
            if (
                owner
                and owner != sender.id
                and "/" not in owner
                and {"MESSAGE_INBOUND", "MESSAGE_DELIVERY"} <= triggers
            ):
                return webhook["id"], owner
        return None

    async def deprovision(self, sender: SenderContext) -> None:
        webhook_id = sender.config.get("webhook_id")
        if not webhook_id or sender.config.get(WEBHOOK_VIA):
            return  # nothing, or a webhook another sender owns
        if await sender.siblings():
            raise Conflict("other senders of this Sinch app receive through this sender's webhook; delete them first")
        creds = self._sender_credentials(sender)
        try:
            await self._api(sender, creds, "DELETE", f"/webhooks/{webhook_id}", "Sinch webhook removal")
        except SendError as exc:
            if exc.status_code != 404:  # already gone is what we wanted
                raise

    async def aclose(self) -> None:
        self._tokens.clear()


def _links(media: list[Media]) -> str:
    return as_text(Reply(media=media))


def _fit(head: str, tail: list[str], limit: int) -> str:
    """`head` then the non-empty `tail` lines, within `limit` characters.

    The head (the bot's prose) is cut first, so that links and numbered
    options, which the user needs whole, survive a long text.
    """
    rest = "\n".join(line for line in tail if line)
    if not rest:
        return truncate(head, limit)[0]
    if not head:
        return truncate(rest, limit)[0]
    room = limit - len(rest) - 1
    if room <= 0:
        return truncate(rest, limit)[0]
    return truncate(head, room)[0] + "\n" + rest


def _text_of(content: dict[str, Any]) -> str:
    """The text a Sinch message carries (what an SMS or MMS counts parts of)."""
    if "text_message" in content:
        return str(content["text_message"]["text"])
    if "card_message" in content:
        return str(content["card_message"].get("description", ""))
    if "choice_message" in content:
        return str(content["choice_message"].get("text_message", {}).get("text", ""))
    return ""


def _json_field(response: httpx.Response, key: str, what: str) -> str:
    try:
        value = response.json()[key]
    except (ValueError, KeyError, TypeError):
        raise SendError(f"{what} answered without {key!r}", retryable=False) from None
    if not isinstance(value, str) or not value:
        raise SendError(f"{what} answered without {key!r}", retryable=False)
    return value
