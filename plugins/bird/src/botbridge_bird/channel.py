"""Bird's Channels API (api.bird.com) as a botbridge channel.

Webhooks are `{"service": "channels", "event": "<platform>.<kind>", "payload": {…}}`
signed with `messagebird-signature` = base64(HMAC-SHA256(signingKey,
timestamp + "\\n" + url + "\\n" + sha256(body))). Messages go out through
`POST /workspaces/{ws}/channels/{channel}/messages` with `Authorization: AccessKey …`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import mimetypes
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field

from botbridge.channel import (
    Capabilities,
    Channel,
    ProvisionResult,
    SenderContext,
    WebhookRequest,
    WebhookResult,
    parse_payload,
)
from botbridge.crypto import generate_secret
from botbridge.errors import (
    ConfigInvalid,
    CredentialsInvalid,
    InvalidSignature,
    MalformedWebhook,
    ProviderError,
    SendError,
)
from botbridge.http import RetryPolicy, call_with_retry
from botbridge.models import DeliveryReport, InboundMessage, Media, OutboundMessage, Reply, SendResult
from botbridge.render import as_text
from botbridge.signing import check_timestamp, hmac_digest, verify_digest
from botbridge.sms import fragments_count

DEFAULT_BASE_URL = "https://api.bird.com"
# Bird re-sends failed deliveries with their original timestamp for hours.
DEFAULT_REPLAY_WINDOW = 24 * 3600.0
MAX_REPLAY_WINDOW = 7 * 86400.0
# A timestamp from the future is never a retry: keep that side tight.
FUTURE_SKEW = 300.0
SIGNATURE_HEADER = "messagebird-signature"
TIMESTAMP_HEADER = "messagebird-request-timestamp"


@dataclass(frozen=True)
class ChannelType:
    """What one Bird platform supports, as far as this plugin uses it."""

    identifier_key: str | None  # None: contacts are addressed by their Bird contact id
    connector_template: str
    max_text_length: int
    media: bool = False
    max_buttons: int = 0  # native reply buttons; 0 renders options as numbered text
    interactions: bool = True
    phone: bool = False


CHANNEL_TYPES: dict[str, ChannelType] = {
    "sms": ChannelType("phonenumber", "sms-messagebird:1", 1600, interactions=False, phone=True),
    "whatsapp": ChannelType("phonenumber", "whatsapp:1", 4096, media=True, max_buttons=3, phone=True),
    "instagram": ChannelType(None, "instagram:1", 1000, media=True),
    "facebook": ChannelType(None, "facebook:1", 2000, media=True),
    "telegram": ChannelType(None, "telegram:1", 4096, media=True),
    "line": ChannelType(None, "line:1", 5000, media=True),
    "email": ChannelType("emailaddress", "email-messagebird:1", 100_000),
}

MAX_BUTTON_LABEL = 20

# Bird's outbound message statuses → botbridge states. Unknown ones are ignored.
STATUS_STATES: dict[str, str] = {
    "accepted": "QUEUED",
    "processing": "QUEUED",
    "scheduled": "QUEUED",
    "sending": "QUEUED",
    "sent": "SENT",
    "delivered": "DELIVERED",
    "read": "READ",
    "sending_failed": "FAILED",
    "delivery_failed": "FAILED",
    "failed": "FAILED",
    "rejected": "FAILED",
    "expired": "FAILED",
    "skipped": "FAILED",
}
# Interaction types that mean the user saw the message.
READ_INTERACTIONS = frozenset({"read", "opened"})

CHANNEL_ACTIVE = frozenset({"active", "installed", "enabled", "ready"})
CHANNEL_FAILED = frozenset({"failed", "error", "install_failed", "installation_failed", "inactive", "disabled"})

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_CONTENT_TYPE = re.compile(r"^[a-z0-9][\w.+-]*/[\w.+-]+$")
# Python's built-in extension table only (not the host's /etc/mime.types), so
# what a URL maps to does not depend on the machine.
_MIME = mimetypes.MimeTypes()
# docs.bird.com "Create a webhook subscription": https, a hostname, no port.
SUBSCRIPTION_URL = re.compile(r"^https://([a-zA-Z0-9-]+\.)+[a-zA-Z]{2,}(/\S*)?$")
_EVENT = re.compile(r"^([a-z][a-z0-9_-]*)\.([a-z_]+)$")


def sign_webhook(signing_key: str, timestamp: str, url: str, body: bytes) -> str:
    """The `messagebird-signature` Bird sends with a webhook."""
    return _b64(hmac_digest(signing_key, _signed_data(timestamp, url, body)))


def _signed_data(timestamp: str, url: str, body: bytes) -> bytes:
    return timestamp.encode() + b"\n" + url.encode() + b"\n" + hashlib.sha256(body).digest()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def access_key(credentials: str) -> str:
    """The access key from a plain string or `{"access_key": "…"}`; "" when absent."""
    value = credentials.strip()
    if value.startswith("{"):
        try:
            data = json.loads(value)
        except ValueError:
            return ""
        key = data.get("access_key") if isinstance(data, dict) else None
        return key.strip() if isinstance(key, str) else ""
    return value


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _phone(value: str) -> str:
    """E.164 with `+` for a phone-looking value; anything else unchanged."""
    compact = re.sub(r"[\s().-]", "", value)
    if compact.isdigit():
        compact = "+" + compact
    return compact if _E164.match(compact) else value


def _moment(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- webhook payloads -------------------------------------------------------------


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Envelope(_Loose):
    service: str | None = None
    event: str = Field(min_length=3)
    payload: dict[str, Any]


class Identified(_Loose):
    id: str | None = None
    identifierKey: str | None = None
    identifierValue: str | None = None


class Party(_Loose):
    contact: Identified | None = None
    connector: Identified | None = None
    contacts: list[Identified] = Field(default_factory=list)


class Postback(_Loose):
    text: str | None = None
    payload: str | None = None


class Action(_Loose):
    type: str | None = None
    postback: Postback | None = None


class TextBody(_Loose):
    text: str = ""
    actions: list[Action] = Field(default_factory=list)


class ImageItem(_Loose):
    mediaUrl: str
    altText: str | None = None


class ImageBody(_Loose):
    images: list[ImageItem] = Field(default_factory=list)
    text: str | None = None


class FileItem(_Loose):
    mediaUrl: str
    contentType: str | None = None
    filename: str | None = None


class FileBody(_Loose):
    files: list[FileItem] = Field(default_factory=list)
    text: str | None = None


class Coordinates(_Loose):
    latitude: float
    longitude: float


class Place(_Loose):
    label: str | None = None
    address: str | None = None


class LocationBody(_Loose):
    coordinates: Coordinates
    location: Place | None = None


class Body(_Loose):
    type: str = ""
    text: TextBody | None = None
    image: ImageBody | None = None
    file: FileBody | None = None
    location: LocationBody | None = None


class ReplyTo(_Loose):
    id: str | None = None


class Failure(_Loose):
    code: str | int | None = None
    description: str | None = None
    source: str | None = None


class MessagePayload(_Loose):
    id: str = Field(min_length=1)
    channelId: str | None = None
    sender: Party | None = None
    receiver: Party | None = None
    body: Body | None = None
    status: str | None = None
    reason: str | None = None
    failure: Failure | None = None
    direction: str | None = None
    reference: str | None = None
    replyTo: ReplyTo | None = None
    createdAt: str | None = None
    lastStatusAt: str | None = None
    updatedAt: str | None = None


class InteractionPayload(_Loose):
    id: str | None = None
    messageId: str = Field(min_length=1)
    channelId: str | None = None
    type: str = ""
    createdAt: str | None = None


class ChannelEventPayload(_Loose):
    id: str | None = None
    channelId: str | None = None
    connectorId: str | None = None
    status: str | None = None
    reason: str | None = None
    statusReason: str | None = None


# --- the channel ----------------------------------------------------------------


class BirdChannel(Channel):
    """Bird Channels API: SMS, WhatsApp, Instagram, Facebook, Telegram, LINE, email."""

    name = "bird"
    description = "Bird (formerly MessageBird) Channels API at api.bird.com"
    credential_keys: ClassVar[tuple[str, ...]] = ("access_key",)
    config_keys: ClassVar[tuple[str, ...]] = (
        "workspace_id",
        "channel_id",
        "channel_type",
        "base_url",
        "signed_url",
        "replay_window",
        "identifier_key",
        "organization_id",
        "provision",
        "connector_template",
        "phone_number_id",
        "channel_message_type",
        "use_case_id",
        "connector_arguments",
    )
    retry_policy: RetryPolicy = RetryPolicy()
    # Sends carry our message id as `reference`: a lost answer is looked up, not re-sent.
    finds_sent = True

    def __init__(self, http: httpx.AsyncClient, clock: Any) -> None:
        super().__init__(http, clock)
        # channel ids learned from channel.created/updated events or polling,
        # for provisioned senders whose stored config has none yet
        self._learned_channels: dict[str, str] = {}

    # --- sender configuration ---

    def validate_sender(
        self, address: str, credentials: str, webhook_secret: str, config: dict[str, Any]
    ) -> dict[str, Any]:
        config = super().validate_sender(address, credentials, webhook_secret, config)
        if not credentials.strip():
            raise ConfigInvalid("credentials", "the Bird access key is required")
        if not access_key(credentials):
            raise ConfigInvalid("credentials.access_key", "is required (a string, or JSON with access_key)")
        config = dict(config)
        channel_type = config.setdefault("channel_type", "sms")
        if not isinstance(channel_type, str) or channel_type not in CHANNEL_TYPES:
            raise ConfigInvalid("config.channel_type", f"must be one of {', '.join(CHANNEL_TYPES)}")
        if not _is_uuid(config.get("workspace_id")):
            raise ConfigInvalid("config.workspace_id", "is required: the Bird workspace UUID")
        provision = config.get("provision", False)
        if not isinstance(provision, bool):
            raise ConfigInvalid("config.provision", "must be true or false")
        channel_id = config.get("channel_id")
        if channel_id is not None and not _is_uuid(channel_id):
            raise ConfigInvalid("config.channel_id", "must be a Bird channel UUID")
        if channel_id is None and not provision:
            raise ConfigInvalid("config.channel_id", "is required unless config.provision installs a channel")
        for key in ("base_url", "signed_url"):
            if key in config and not _is_http_url(config[key]):
                raise ConfigInvalid(f"config.{key}", "must be an absolute http(s) URL")
        if "replay_window" in config:
            window = config["replay_window"]
            if isinstance(window, bool) or not isinstance(window, int | float) or not 0 < window <= MAX_REPLAY_WINDOW:
                raise ConfigInvalid("config.replay_window", f"must be seconds between 1 and {int(MAX_REPLAY_WINDOW)}")
        for key in ("identifier_key", "connector_template", "channel_message_type"):
            if key in config and (not isinstance(config[key], str) or not config[key].strip()):
                raise ConfigInvalid(f"config.{key}", "must be a non-empty string")
        for key in ("organization_id", "phone_number_id", "use_case_id"):
            if key in config and not _is_uuid(config[key]):
                raise ConfigInvalid(f"config.{key}", "must be a UUID")
        if "connector_arguments" in config and not isinstance(config["connector_arguments"], dict):
            raise ConfigInvalid("config.connector_arguments", "must be an object")
        if provision and not _is_uuid(config.get("organization_id")):
            # Webhook subscriptions live under /organizations/{organizationId}/workspaces/…
            raise ConfigInvalid("config.organization_id", "is required to provision: Bird's organization UUID")
        if provision and channel_id is None:
            template = config.get("connector_template", CHANNEL_TYPES[channel_type].connector_template)
            if template.startswith("sms-"):
                for key in ("phone_number_id", "channel_message_type"):
                    if key not in config:
                        raise ConfigInvalid(f"config.{key}", f"is required to install a {template} channel")
        return config

    def capabilities(self, sender: SenderContext) -> Capabilities:
        kind = self._type(sender)
        return Capabilities(
            options=kind.max_buttons > 0,
            media=kind.media,
            max_text_length=kind.max_text_length,
            sms=sender.config.get("channel_type", "sms") == "sms",
        )

    # --- webhooks ---

    async def parse_webhook(self, request: WebhookRequest, sender: SenderContext) -> WebhookResult:
        self._verify(request, sender)
        envelope = parse_payload(Envelope, request.json_object())
        if envelope.event in ("channel.created", "channel.updated"):
            return await self._channel_event(envelope, sender)
        match = _EVENT.match(envelope.event)
        if match is None:
            return WebhookResult()
        kind = match.group(2)
        if kind == "inbound":
            return self._inbound(envelope, sender)
        if kind == "outbound":
            return self._outbound(envelope, sender)
        if kind == "interaction":
            return self._interaction(envelope, sender)
        return WebhookResult()

    def _verify(self, request: WebhookRequest, sender: SenderContext) -> None:
        if not sender.webhook_secret:
            raise InvalidSignature("no signing key is configured for this sender")
        signature = request.headers.get(SIGNATURE_HEADER)
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        window = float(sender.config.get("replay_window", DEFAULT_REPLAY_WINDOW))
        now = self.clock.now()
        moment = check_timestamp(timestamp, now=now, window=window)
        if moment > now + FUTURE_SKEW:
            raise InvalidSignature("timestamp is in the future")
        assert timestamp is not None
        url = sender.config.get("signed_url") or request.url
        expected = hmac_digest(sender.webhook_secret, _signed_data(timestamp.strip(), url, request.body))
        verify_digest(signature, expected, encoding="base64")

    def _foreign(self, channel_id: str | None, sender: SenderContext) -> bool:
        """Is this event about another channel of the workspace?"""
        ours = self._channel_id(sender)
        return bool(ours and channel_id and channel_id.lower() != ours.lower())

    def _inbound(self, envelope: Envelope, sender: SenderContext) -> WebhookResult:
        payload = parse_payload(MessagePayload, envelope.payload)
        if self._foreign(payload.channelId, sender) or payload.direction == "outgoing":
            return WebhookResult()
        contact = payload.sender.contact if payload.sender else None
        if contact is None or not (contact.identifierValue or contact.id):
            raise MalformedWebhook("unexpected payload: payload.sender.contact is missing")
        platform = envelope.event.split(".", 1)[0]
        kind = CHANNEL_TYPES.get(platform)
        if kind is not None and kind.identifier_key is None and contact.id:
            address = contact.id  # platform-scoped ids: reply through the Bird contact id
        elif contact.identifierValue:
            phone = contact.identifierKey == "phonenumber" or (kind is not None and kind.phone)
            address = _phone(contact.identifierValue) if phone else contact.identifierValue
        else:
            address = contact.id or ""
        connector = payload.receiver.connector if payload.receiver else None
        to_address = (connector.identifierValue if connector else None) or sender.address
        text, postback, media = _content(payload.body)
        received = _moment(payload.createdAt) or datetime.fromtimestamp(self.clock.now(), UTC)
        metadata = {
            "event": envelope.event,
            "channel_id": payload.channelId,
            "bird_contact_id": contact.id,
            "identifier_key": contact.identifierKey,
            "body_type": payload.body.type if payload.body else None,
        }
        if payload.replyTo and payload.replyTo.id:
            metadata["reply_to"] = payload.replyTo.id
        message = InboundMessage(
            channel=self.name,
            sender_id=sender.id,
            provider_message_id=payload.id,
            contact=address,
            to_address=to_address,
            text=text,
            media=media,
            postback=postback,
            received_at=received,
            metadata={k: v for k, v in metadata.items() if v is not None},
        )
        return WebhookResult(messages=[message])

    def _outbound(self, envelope: Envelope, sender: SenderContext) -> WebhookResult:
        payload = parse_payload(MessagePayload, envelope.payload)
        if self._foreign(payload.channelId, sender):
            return WebhookResult()
        state = STATUS_STATES.get((payload.status or "").lower())
        if state is None:
            return WebhookResult()
        contacts = payload.receiver.contacts if payload.receiver else []
        contact = contacts[0].identifierValue if contacts else None
        failed = state == "FAILED"
        code, description = payload.status, payload.reason or None
        failure = payload.failure
        if failure is not None and (failure.code is not None or failure.description):
            code = str(failure.code) if failure.code is not None else code
            source = f" ({failure.source})" if failure.source else ""
            description = (failure.description or description or "") + source or None
        report = DeliveryReport(
            channel=self.name,
            sender_id=sender.id,
            provider_message_id=payload.id,
            state=state,
            reason_code=code if failed else None,
            reason_description=description if failed else None,
            contact=contact,
            occurred_at=_moment(payload.lastStatusAt or payload.updatedAt)
            or datetime.fromtimestamp(self.clock.now(), UTC),
        )
        return WebhookResult(reports=[report])

    def _interaction(self, envelope: Envelope, sender: SenderContext) -> WebhookResult:
        payload = parse_payload(InteractionPayload, envelope.payload)
        if self._foreign(payload.channelId, sender) or payload.type.lower() not in READ_INTERACTIONS:
            return WebhookResult()
        report = DeliveryReport(
            channel=self.name,
            sender_id=sender.id,
            provider_message_id=payload.messageId,
            state="READ",
            occurred_at=_moment(payload.createdAt) or datetime.fromtimestamp(self.clock.now(), UTC),
        )
        return WebhookResult(reports=[report])

    async def _channel_event(self, envelope: Envelope, sender: SenderContext) -> WebhookResult:
        payload = parse_payload(ChannelEventPayload, envelope.payload)
        channel_id = payload.channelId or payload.id
        connector_id = sender.config.get("connector_id")
        ours = (connector_id and payload.connectorId == connector_id) or (
            channel_id and channel_id in (self._channel_id(sender), sender.config.get("install_channel_id"))
        )
        if not ours:
            return WebhookResult()
        channel_id = channel_id or sender.config.get("install_channel_id")
        status = (payload.status or "").lower()
        if status in CHANNEL_ACTIVE:
            if channel_id and _is_uuid(channel_id):
                self._learned_channels[sender.id] = channel_id
                # A failure here answers 5xx: Bird redelivers the event and we try again.
                config = await self._narrow(sender, channel_id)
                return WebhookResult(sender_state="active", sender_config=config)
            return WebhookResult(sender_state="active")
        if status in CHANNEL_FAILED:
            reason = payload.reason or payload.statusReason or f"Bird reports the channel {status}"
            return WebhookResult(sender_state="failed", sender_state_reason=reason[:500])
        return WebhookResult()

    # --- sending ---

    async def send(self, sender: SenderContext, message: OutboundMessage) -> SendResult:
        channel_id = self._channel_id(sender)
        if not channel_id:
            channel_id = await self._resolve_channel(sender)
        kind = self._type(sender)
        if kind.media and message.media:
            message = message.model_copy(update={"media": await self._with_content_types(message.media)})
        body, text = self._body(kind, message)
        payload: dict[str, Any] = {
            "receiver": {"contacts": [self._recipient(sender, kind, message.contact)]},
            "body": body,
            "reference": message.id,
        }
        workspace = sender.config["workspace_id"]
        response = await self._call(
            sender,
            "POST",
            f"/workspaces/{workspace}/channels/{channel_id}/messages",
            "Bird send",
            SendError,
            json_body=payload,
            idempotent=False,
        )
        data = _json(response)
        message_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(message_id, str) or not message_id:
            raise SendError("Bird send answered without a message id", status_code=response.status_code)
        sms = sender.config.get("channel_type", "sms") == "sms"
        return SendResult(
            provider_message_id=message_id,
            state="QUEUED" if data.get("status") in (None, "accepted", "processing", "scheduled") else "SENT",
            fragments_count=fragments_count(text) if sms else None,
        )

    async def find_sent(self, sender: SenderContext, message: OutboundMessage) -> SendResult | None:
        """Bird's message whose `reference` is our message id, if it accepted one."""
        channel_id = self._channel_id(sender)
        if not channel_id:
            return None  # no channel yet: nothing can have been sent
        workspace = sender.config["workspace_id"]
        response = await self._call(
            sender,
            "GET",
            f"/workspaces/{workspace}/channels/{channel_id}/messages",
            "Bird message lookup",
            SendError,
            params={"reference": message.id},
        )
        data = _json(response)
        results = data.get("results") if isinstance(data, dict) else None
        for item in results if isinstance(results, list) else []:
            if isinstance(item, dict) and item.get("reference") == message.id and isinstance(item.get("id"), str):
                state = STATUS_STATES.get(str(item.get("status") or "").lower(), "QUEUED")
                return SendResult(provider_message_id=item["id"], state=state)
        return None

    def _recipient(self, sender: SenderContext, kind: ChannelType, contact: str) -> dict[str, str]:
        key = sender.config.get("identifier_key") or kind.identifier_key
        if key is None:
            return {"id": contact}
        value = _phone(contact) if key == "phonenumber" else contact
        return {"identifierKey": key, "identifierValue": value}

    def _body(self, kind: ChannelType, message: OutboundMessage) -> tuple[dict[str, Any], str]:
        """The Bird message body, and the text it carries."""
        native_media = bool(kind.media and message.media)
        native_buttons = bool(
            kind.max_buttons > 0
            and message.options
            and len(message.options) <= kind.max_buttons
            and all(0 < len(o.label.strip()) <= MAX_BUTTON_LABEL for o in message.options)
            # Buttons need a body to hang on: text or media, never a blank " ".
            and (message.text.strip() or native_media)
        )
        reply = Reply(
            text=message.text,
            options=[] if native_buttons else message.options,
            media=[] if native_media else message.media,
        )
        text = _limit(as_text(reply), kind.max_text_length)
        actions = (
            [{"type": "postback", "postback": {"text": o.label, "payload": o.value}} for o in message.options]
            if native_buttons
            else []
        )
        if native_media:
            images = all(_is_image(m) for m in message.media)
            if images:
                content: dict[str, Any] = {
                    "images": [
                        {"mediaUrl": m.url, **({"altText": m.caption} if m.caption else {})} for m in message.media
                    ]
                }
            else:
                content = {"files": [_file(m) for m in message.media]}
            if text:
                content["text"] = text
            if actions:
                content["actions"] = actions
            kind_name = "image" if images else "file"
            return {"type": kind_name, kind_name: content}, text
        if not text.strip():
            raise SendError("nothing to send: the message has no text, media or options", retryable=False)
        body: dict[str, Any] = {"text": text}
        if actions:
            body["actions"] = actions
        return {"type": "text", "text": body}, text

    async def _with_content_types(self, media: list[Media]) -> list[Media]:
        """Every media item with its content type: Bird's file schema requires one."""
        resolved = []
        for item in media:
            content_type = item.content_type or _MIME.guess_type(urlsplit(item.url).path)[0]
            if content_type is None:
                content_type = await self._head_content_type(item.url)
            if content_type is None:
                raise SendError(
                    f"media {item.url!r}: content_type is required (the URL has no known extension and a HEAD "
                    "request did not name one)",
                    retryable=False,
                )
            resolved.append(item.model_copy(update={"content_type": content_type}))
        return resolved

    async def _head_content_type(self, url: str) -> str | None:
        if not _is_http_url(url):
            return None
        try:
            # Through the shared client (and its URL policy); redirects are not
            # followed, so the policy judges the one URL we were given.
            response = await self.http.head(url, follow_redirects=False)
        except (httpx.HTTPError, ProviderError, ValueError):
            return None
        if response.status_code != 200:
            return None
        value = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        return value if _CONTENT_TYPE.match(value) else None

    # --- provisioning ---

    async def provision(self, sender: SenderContext) -> ProvisionResult | None:
        config = sender.config
        self._check_subscription_url(sender)
        kind = self._type(sender)
        channel_id: str | None = config.get("channel_id")
        created: dict[str, Any] = {}
        subscriptions: list[str] = []
        state = "active"
        secret = generate_secret()
        platform = config.get("channel_type", "sms")
        events = [f"{platform}.inbound", f"{platform}.outbound"]
        if kind.interactions:
            events.append(f"{platform}.interaction")
        try:
            watched = channel_id
            if channel_id is None:
                connector = await self._install_connector(sender, kind)
                created["connector_id"] = connector["id"]
                created["installed_connector"] = True
                channel = connector.get("channel") if isinstance(connector.get("channel"), dict) else {}
                found = channel.get("channelId") if channel else None
                if _is_uuid(found) and str(connector.get("status", "active")).lower() in CHANNEL_ACTIVE:
                    channel_id = watched = created["channel_id"] = found
                else:
                    state = "pending"
                    if _is_uuid(found):
                        # Bird names the channel in the install answer while it
                        # installs: sends wait for it to be active, but every
                        # subscription can be filtered by it from the start.
                        watched = created["install_channel_id"] = found
            if watched is not None:
                filters = [{"key": "channelId", "value": watched}]
                if state == "pending":
                    # Filtered by the channel, its install news reaches this
                    # sender alone, and any number of senders can install at
                    # once (Bird allows 5 subscriptions per identical filter).
                    events = ["channel.updated", *events]
                for event in events:
                    subscriptions.append(await self._subscribe(sender, event, secret, filters))
            else:
                # An install answer without a channel id leaves nothing to
                # filter by, and an unfiltered platform subscription gets every
                # channel of the platform. So only channel.updated is watched,
                # workspace-wide as Bird's install guide does, and the platform
                # subscriptions are created, filtered, once the channel is
                # active (`_narrow`). These count against Bird's 5 per identical
                # filter: at most 5 such installs can be pending per workspace.
                install = await self._subscribe(sender, "channel.updated", secret, [])
                subscriptions.append(install)
                created["install_subscription_ids"] = [install]
                created["pending_events"] = events
        except Exception:
            await self._undo(sender, subscriptions, created.get("connector_id"))
            raise
        return ProvisionResult(
            webhook_secret=secret,
            config={**created, "webhook_subscription_ids": subscriptions},
            state=state,
            state_reason="waiting for Bird to install the channel" if state == "pending" else None,
        )

    def _check_subscription_url(self, sender: SenderContext) -> None:
        url = sender.config.get("signed_url") or sender.webhook_url
        if not SUBSCRIPTION_URL.match(url):
            where = "config.signed_url" if sender.config.get("signed_url") else "BOTBRIDGE_PUBLIC_URL"
            raise ConfigInvalid(
                where,
                f"Bird only delivers webhooks to https:// URLs on a hostname without a port; {url!r} is not one",
            )

    async def _narrow(self, sender: SenderContext, channel_id: str) -> dict[str, Any]:
        """Once the installed channel is known: filter every subscription by it.

        The install-time channel.updated subscription is narrowed to the
        channel, and the platform subscriptions are created with the filter.
        Returns the config keys that changed ({} when there is nothing to do).
        """
        config = sender.config
        pending = [e for e in config.get("pending_events") or [] if isinstance(e, str)]
        install = [s for s in config.get("install_subscription_ids") or [] if isinstance(s, str)]
        if not pending and not install:
            return {} if config.get("channel_id") == channel_id else {"channel_id": channel_id}
        filters = [{"key": "channelId", "value": channel_id}]
        created: list[str] = []
        try:
            for subscription in install:
                await self._call(
                    sender,
                    "PATCH",
                    f"{self._subscriptions_path(sender)}/{subscription}",
                    "Bird webhook subscription update",
                    ProviderError,
                    json_body={"eventFilters": filters},
                )
            for event in pending:
                created.append(await self._subscribe(sender, event, sender.webhook_secret, filters))
        except Exception:
            await self._undo(sender, created, None)
            raise
        ids = [s for s in config.get("webhook_subscription_ids") or [] if isinstance(s, str)]
        return {
            "channel_id": channel_id,
            "webhook_subscription_ids": ids + created,
            "pending_events": [],
            "install_subscription_ids": [],
        }

    async def deprovision(self, sender: SenderContext) -> None:
        subscriptions = sender.config.get("webhook_subscription_ids") or []
        connector_id = sender.config.get("connector_id") if sender.config.get("installed_connector") else None
        await self._undo(sender, [s for s in subscriptions if isinstance(s, str)], connector_id, strict=True)
        self._learned_channels.pop(sender.id, None)

    async def poll_provisioning(self, sender: SenderContext) -> ProvisionResult:
        """Ask Bird how an installed connector is doing (for a host that polls).

        Returns state "active" with `config.channel_id` once the channel
        exists, "failed" with the reason, or "pending".
        """
        connector_id = sender.config.get("connector_id")
        if not connector_id:
            return ProvisionResult(state=sender.sender.state)
        workspace = sender.config["workspace_id"]
        response = await self._call(
            sender, "GET", f"/workspaces/{workspace}/connectors/{connector_id}", "Bird connector", ProviderError
        )
        data = _json(response)
        data = data if isinstance(data, dict) else {}
        status = str(data.get("status") or "").lower()
        channel = data.get("channel") if isinstance(data.get("channel"), dict) else {}
        channel_id = channel.get("channelId") if channel else None
        if status in CHANNEL_FAILED:
            reason = data.get("statusReason") or data.get("reason") or f"Bird reports the connector {status}"
            return ProvisionResult(state="failed", state_reason=str(reason)[:500])
        if _is_uuid(channel_id) and (not status or status in CHANNEL_ACTIVE):
            self._learned_channels[sender.id] = channel_id
            narrowed = await self._narrow(sender, channel_id)
            return ProvisionResult(state="active", config={"channel_id": channel_id, **narrowed})
        return ProvisionResult(state="pending", state_reason="waiting for Bird to install the channel")

    async def _install_connector(self, sender: SenderContext, kind: ChannelType) -> dict[str, Any]:
        config = sender.config
        template = config.get("connector_template", kind.connector_template)
        arguments: dict[str, Any] = dict(config.get("connector_arguments") or {})
        for key, argument in (
            ("phone_number_id", "phoneNumberId"),
            ("channel_message_type", "channelMessageType"),
            ("use_case_id", "useCaseId"),
        ):
            if key in config:
                arguments[argument] = config[key]
        body = {
            "connectorTemplateRef": template,
            "name": f"botbridge {sender.address}"[:100],
            "arguments": arguments,
        }
        response = await self._call(
            sender,
            "POST",
            f"/workspaces/{config['workspace_id']}/connectors",
            "Bird connector install",
            ProviderError,
            json_body=body,
        )
        data = _json(response)
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise ProviderError("Bird connector install answered without a connector id")
        return data

    def _subscriptions_path(self, sender: SenderContext) -> str:
        # The Notifications API has no workspace-only path (seeds/003, docs.bird.com).
        workspace = sender.config["workspace_id"]
        organization = sender.config.get("organization_id")
        return f"/organizations/{organization}/workspaces/{workspace}/webhook-subscriptions"

    async def _subscribe(self, sender: SenderContext, event: str, secret: str, filters: list[dict[str, Any]]) -> str:
        body = {
            "service": "channels",
            "event": event,
            "url": sender.config.get("signed_url") or sender.webhook_url,
            "signingKey": secret,
            "eventFilters": filters,
        }
        response = await self._call(
            sender, "POST", self._subscriptions_path(sender), "Bird webhook subscription", ProviderError, json_body=body
        )
        data = _json(response)
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise ProviderError("Bird webhook subscription answered without an id")
        return data["id"]

    async def _undo(
        self, sender: SenderContext, subscriptions: list[str], connector_id: str | None, *, strict: bool = False
    ) -> None:
        """Delete what provisioning created; a 404 means it is already gone."""
        # Without an organization id no subscription can have been created.
        if not sender.config.get("organization_id"):
            subscriptions = []
        targets = [(f"{self._subscriptions_path(sender)}/{s}", "Bird webhook subscription") for s in subscriptions]
        if connector_id:
            workspace = sender.config["workspace_id"]
            targets.append((f"/workspaces/{workspace}/connectors/{connector_id}", "Bird connector"))
        for path, what in targets:
            try:
                await self._call(sender, "DELETE", path, what, ProviderError)
            except ProviderError as exc:
                if exc.status_code == 404:
                    continue
                if strict:
                    raise

    # --- helpers ---

    def _type(self, sender: SenderContext) -> ChannelType:
        return CHANNEL_TYPES.get(sender.config.get("channel_type", "sms"), CHANNEL_TYPES["sms"])

    def _channel_id(self, sender: SenderContext) -> str | None:
        return sender.config.get("channel_id") or self._learned_channels.get(sender.id)

    async def _resolve_channel(self, sender: SenderContext) -> str:
        if sender.config.get("connector_id"):
            try:
                result = await self.poll_provisioning(sender)
            except CredentialsInvalid:
                raise
            except ProviderError as exc:
                raise SendError(str(exc), retryable=exc.retryable, status_code=exc.status_code) from None
            channel_id = result.config.get("channel_id")
            if channel_id:
                return str(channel_id)
        raise SendError("the Bird channel is not installed yet", retryable=True)

    def _base_url(self, sender: SenderContext) -> str:
        return str(sender.config.get("base_url") or DEFAULT_BASE_URL).rstrip("/")

    async def _call(
        self,
        sender: SenderContext,
        method: str,
        path: str,
        what: str,
        error: type[ProviderError],
        *,
        json_body: dict[str, Any] | None = None,
        idempotent: bool = True,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        url = self._base_url(sender) + path
        headers = {"authorization": f"AccessKey {access_key(sender.credentials)}", "accept": "application/json"}
        content: bytes | None = None
        if json_body is not None:
            content = json.dumps(json_body, separators=(",", ":"), ensure_ascii=False).encode()
            headers["content-type"] = "application/json"

        async def attempt() -> httpx.Response:
            return await self.http.request(method, url, headers=headers, content=content, params=params)

        policy = self.retry_policy if idempotent else dataclasses.replace(self.retry_policy, idempotent=False)
        return await call_with_retry(attempt, what, clock=self.clock, policy=policy, error=error)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _limit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_image(media: Media) -> bool:
    if media.content_type:
        return media.content_type.lower().startswith("image/")
    path = urlsplit(media.url).path.lower()
    return path.endswith((".jpg", ".jpeg", ".png", ".gif", ".webp"))


def _file(media: Media) -> dict[str, Any]:
    item: dict[str, Any] = {"mediaUrl": media.url}
    if media.content_type:
        item["contentType"] = media.content_type
    name = urlsplit(media.url).path.rsplit("/", 1)[-1]
    if name:
        item["filename"] = name
    return item


def _content(body: Body | None) -> tuple[str, str | None, list[Media]]:
    """Text, postback and media of an inbound message body."""
    if body is None:
        return "", None, []
    if body.text is not None and body.type in ("text", ""):
        postback = next((a.postback for a in body.text.actions if a.postback and a.postback.payload), None)
        if postback is not None:
            return (postback.text or body.text.text or postback.payload or ""), postback.payload, []
        return body.text.text, None, []
    if body.image is not None and body.type == "image":
        media = [Media(url=i.mediaUrl, content_type=None, caption=i.altText) for i in body.image.images]
        return body.image.text or "", None, media
    if body.file is not None and body.type == "file":
        media = [Media(url=f.mediaUrl, content_type=f.contentType, caption=f.filename) for f in body.file.files]
        return body.file.text or "", None, media
    if body.location is not None and body.type == "location":
        point = body.location.coordinates
        place = body.location.location
        name = (place.label or place.address) if place else None
        text = f"Location: {point.latitude},{point.longitude}" + (f" ({name})" if name else "")
        return text, None, []
    return "", None, []
