"""The Syniverse SCG channel: ESS webhooks in, SCG message requests out.

Inbound traffic arrives from SCG's Event Subscription Service (ESS) as
`SCG-Message` events (`mo_message_received`, `message_state_change`,
`message_request_state_change`). ESS signs nothing: its delivery
configuration authenticates with HTTP Basic or an OAuth 2.0 bearer token, so
the sender's `webhook_secret` is what that configuration must present.

Outbound messages are SCG message requests with a single recipient; the
message request id SCG answers with is the provider message id, and delivery
reports are matched back to it through `message_request_id`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from botbridge.channel import (
    Capabilities,
    Channel,
    ChannelResponse,
    ProvisionResult,
    SenderContext,
    WebhookRequest,
    WebhookResult,
    parse_payload,
)
from botbridge.errors import ConfigInvalid, CredentialsInvalid, MalformedWebhook, SendError
from botbridge.http import RetryPolicy, call_with_retry
from botbridge.models import DeliveryReport, Event, InboundMessage, Media, OutboundMessage, Reply, SendResult
from botbridge.render import as_text
from botbridge.sms import fragments_count, truncate
from botbridge_scg import attachments, ess_auth

DEFAULT_BASE_URL = "https://api.syniverse.com"
API_PREFIX = "/scg-external-api/api/v1"
MESSAGE_REQUESTS_PATH = API_PREFIX + "/messaging/message_requests"
TOPIC = "SCG-Message"

CHANNEL_TYPES = ("sms", "mms", "rcs", "facebook", "wechat", "whatsapp")
# Recipient prefixes SCG uses for OTT channels. Only `wa:` has been seen in
# real traffic; every prefix can be overridden with `config.address_prefix`.
DEFAULT_PREFIXES: dict[str, str] = {"whatsapp": "wa:"}
# Our body limits per channel type (SCG does not publish them); SMS bodies
# are cut at 1530 characters, the size of ten concatenated GSM-7 parts and
# the size at which ESS events truncate bodies.
MAX_TEXT: dict[str, int] = {
    "sms": 1530,
    "mms": 5000,
    "rcs": 3072,
    "facebook": 2000,
    "wechat": 2048,
    "whatsapp": 4096,
}

FROM_PATTERN = re.compile(r"^(channel|sender_id):[A-Za-z0-9_-]+$")
PREFIX_PATTERN = re.compile(r"^[a-z]{1,12}:$")
TOKEN_PATTERN = re.compile(r"^[\x21-\x7e]{8,4096}$")
USERNAME_PATTERN = re.compile(r"^[^:\s]{1,256}$")
PHONE = re.compile(r"^\+?\d{7,15}$")
_SEPARATORS = re.compile(r"[\s().-]")
# An OTT address as SCG writes it: `wa:+14085551212`, and in WhatsApp
# delivery reports `wa:+14085551212@1…` (a routing suffix, not the contact).
_OTT_ADDRESS = re.compile(r"^[a-z]{1,12}:(?P<id>[^@\s]+)(@\S*)?$")
SENDER_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")

# SCG message states → botbridge states. Unknown states give no report.
MESSAGE_STATES: dict[str, str] = {
    "CREATED": "QUEUED",
    "QUEUED": "QUEUED",
    "SCHEDULED": "QUEUED",
    "PAUSED": "QUEUED",
    "SENT": "SENT",
    "DELIVERED": "DELIVERED",
    "READ": "READ",
    "CONVERTED": "READ",
    "FAILED": "FAILED",
    "EXPIRED": "FAILED",
    "DELETED": "FAILED",
    "REJECTED": "FAILED",
    "CANCELED": "FAILED",
}
# SCG message *request* states → botbridge states.
REQUEST_STATES: dict[str, str] = {
    "SUBMITTED": "QUEUED",
    "ACCEPTED": "QUEUED",
    "PREPARING": "QUEUED",
    "PAUSED": "QUEUED",
    "TRANSMITTING": "QUEUED",
    "COMPLETED": "SENT",
    "REJECTED": "FAILED",
    "CANCELED": "FAILED",
}
# Keys `provision` writes into the config (kept across updates).
OUTPUT_KEYS = ("ess_delivery_configuration",)
EVENT_TYPES = ("mo_message_received", "message_state_change", "message_request_state_change")


# --- configuration ---------------------------------------------------------


def parse_token(credentials: str) -> str:
    """The SCG bearer token from a plain string or a JSON `{"token": ...}`."""
    value = credentials.strip()
    if value.startswith("{"):
        try:
            data = json.loads(value)
        except ValueError:
            raise ConfigInvalid("credentials", "is neither a token nor a JSON object with a token") from None
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise ConfigInvalid("credentials.token", "is required")
        value = token.strip()
    if not value:
        raise ConfigInvalid("credentials.token", "is required: the SCG API access token")
    if not TOKEN_PATTERN.match(value):
        raise ConfigInvalid("credentials.token", "must be 8+ printable characters without spaces")
    return value


def channel_type(config: dict[str, Any]) -> str:
    value = config.get("channel_type") or "sms"
    return value if value in CHANNEL_TYPES else "sms"


def address_prefix(config: dict[str, Any]) -> str:
    prefix = config.get("address_prefix")
    if isinstance(prefix, str):
        return prefix
    return DEFAULT_PREFIXES.get(channel_type(config), "")


def normalize_address(raw: str) -> str:
    """The contact: `+` and digits for phone numbers, without an OTT prefix or suffix.

    Inbound `from_address` and report `to_address` thus give the same
    contact, and `to_address()` adds the channel's prefix back.
    """
    value = raw.strip()
    ott = _OTT_ADDRESS.match(value)
    if ott and PHONE.match(_SEPARATORS.sub("", ott.group("id"))):
        value = ott.group("id")  # only a phone number is a contact we can prefix again
    compact = _SEPARATORS.sub("", value)
    if PHONE.match(compact):
        return "+" + compact.lstrip("+")
    return value


def sender_from(address: str, config: dict[str, Any]) -> str | None:
    """SCG's `from`: `channel:<id>` or `sender_id:<id>` (Swagger `Message_Request.from`).

    A bare address is ambiguous to SCG (`SCG_ERROR_40019`) and refused by
    sender ids that own several addresses, so only an address that is
    itself an SCG sender id (22 characters) is turned into `sender_id:`.
    """
    value = config.get("from")
    if isinstance(value, str) and value:
        return value
    return f"sender_id:{address.strip()}" if SENDER_ID.match(address.strip()) else None


def to_address(contact: str, config: dict[str, Any]) -> str:
    """A contact as SCG expects it in `to`: E.164, with the channel's prefix."""
    value = contact.strip()
    if re.match(r"^[a-z]{1,12}:", value):  # already prefixed (e.g. wa:+1…)
        return value
    return address_prefix(config) + normalize_address(value)


# --- ESS payloads ------------------------------------------------------------


def _string(value: Any) -> Any:
    # Fields documented as strings sometimes arrive as numbers (reason_code).
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return str(value)
    return value


class _Fields(BaseModel):
    model_config = ConfigDict(extra="ignore")


class MoFields(_Fields):
    message_id: StrictStr = Field(min_length=1, max_length=256)
    from_address: StrictStr = Field(min_length=1, max_length=256)
    to_address: StrictStr | None = Field(default=None, max_length=256)
    message_body: StrictStr | None = None
    message_body_truncated: StrictBool | None = None
    has_attachment: StrictBool | None = None
    attachment_ids: list[StrictStr] = Field(default_factory=list)
    media_urls: list[StrictStr] = Field(default_factory=list)
    fragments_count: StrictInt | None = None

    @field_validator("attachment_ids", "media_urls", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        # "comma separated" in the guide; a JSON array is accepted too.
        if value is None:
            return []
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("fragments_count", mode="before")
    @classmethod
    def _int(cls, value: Any) -> Any:
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value


class StateFields(_Fields):
    new_state: StrictStr = Field(min_length=1, max_length=64)
    previous_state: StrictStr | None = None
    message_request_id: StrictStr | None = Field(default=None, max_length=256)
    message_id: StrictStr | None = Field(default=None, max_length=256)
    external_message_request_id: StrictStr | None = None
    to_address: StrictStr | None = Field(default=None, max_length=256)
    reason_code: StrictStr | None = Field(default=None, max_length=64)
    reason_description: StrictStr | None = Field(default=None, max_length=1024)

    @field_validator("reason_code", "reason_description", mode="before")
    @classmethod
    def _as_string(cls, value: Any) -> Any:
        return _string(value)


def parse_event(body: bytes) -> Event:
    """An ESS delivery body as an `Event` (accepting `event_id` and string `attempt`)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        # ValueError covers bad JSON and integers too long to convert.
        raise MalformedWebhook("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise MalformedWebhook("body must be a JSON object")
    if "event-id" not in data and "event_id" in data:
        data["event-id"] = data.pop("event_id")
    return parse_payload(Event, data)


def rcs_reply(body: str) -> tuple[str, str | None] | None:
    """(text, postback) of an RCS reply whose body is JSON, or None for plain text."""
    if not body.lstrip().startswith("{"):
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    postback = _find(data, "postbackData")
    text = _find(data, "text")
    location = _find(data, "location")
    if isinstance(location, dict):
        lat, lon = location.get("latitude"), location.get("longitude")
        if _is_number(lat) and _is_number(lon):
            label = location.get("label") or location.get("name")
            suffix = f" ({label})" if isinstance(label, str) and label else ""
            return f"Location: {lat},{lon}{suffix}", None
    if isinstance(postback, str) and postback:
        return (text if isinstance(text, str) and text else postback), postback
    if isinstance(text, str):
        return text, None
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _find(data: Any, key: str, depth: int = 0) -> Any:
    """The first value under `key`, looking at most four objects deep."""
    if depth > 4 or not isinstance(data, dict):
        return None
    if key in data:
        return data[key]
    for value in data.values():
        found = _find(value, key, depth + 1)
        if found is not None:
            return found
    return None


# --- the channel ---------------------------------------------------------------


class ScgChannel(Channel):
    name = "scg"
    description = "Syniverse SCG: SMS, MMS, RCS, WhatsApp, Messenger, WeChat (ESS webhooks in, message requests out)"
    credential_keys: ClassVar[tuple[str, ...]] = ("token",)
    config_keys: ClassVar[tuple[str, ...]] = (
        "base_url",
        "from",
        "channel_type",
        "address_prefix",
        "max_text_length",
        "webhook_username",
        "webhook_auth",
        "oauth_client_id",
        "provision",
    )
    requires_webhook_secret = True
    # SCG lists messages by our `external_id` (Swagger `GET /messaging/messages`).
    finds_sent = True

    retry_policy: RetryPolicy = RetryPolicy()

    # --- configuration ---

    def validate_sender(
        self, address: str, credentials: str, webhook_secret: str, config: dict[str, Any]
    ) -> dict[str, Any]:
        config = super().validate_sender(address, credentials, webhook_secret, config)
        parse_token(credentials)
        if not webhook_secret:
            # Even when provisioning: SCG has no API to hand a generated secret to.
            raise ConfigInvalid("webhook_secret", "is required: the secret SCG's delivery configuration presents")
        if len(webhook_secret) < 16:
            raise ConfigInvalid("webhook_secret", "must be at least 16 characters")
        unknown = sorted(set(config) - set(self.config_keys) - set(OUTPUT_KEYS))
        if unknown:
            raise ConfigInvalid(f"config.{unknown[0]}", f"unknown key; known keys: {', '.join(self.config_keys)}")
        base_url = config.get("base_url")
        if base_url is not None and (
            not isinstance(base_url, str) or not re.match(r"^https?://[^\s/]+(/[^\s]*)?$", base_url)
        ):
            raise ConfigInvalid("config.base_url", "must be an http(s) URL")
        configured_from = config.get("from")
        if configured_from is not None and (
            not isinstance(configured_from, str) or not FROM_PATTERN.match(configured_from)
        ):
            raise ConfigInvalid("config.from", "must be 'channel:<id>' or 'sender_id:<id>' ([A-Za-z0-9_-])")
        kind = config.get("channel_type")
        if kind is not None and kind not in CHANNEL_TYPES:
            raise ConfigInvalid("config.channel_type", f"must be one of {', '.join(CHANNEL_TYPES)}")
        prefix = config.get("address_prefix")
        if prefix is not None and (not isinstance(prefix, str) or (prefix and not PREFIX_PATTERN.match(prefix))):
            raise ConfigInvalid("config.address_prefix", "must be empty or lower-case letters and a colon, e.g. 'wa:'")
        limit = config.get("max_text_length")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_TEXT["mms"]
        ):
            raise ConfigInvalid("config.max_text_length", f"must be an integer from 1 to {MAX_TEXT['mms']}")
        username = config.get("webhook_username")
        if username is not None and (not isinstance(username, str) or not USERNAME_PATTERN.match(username)):
            raise ConfigInvalid("config.webhook_username", "must be 1-256 characters without ':' or spaces")
        auth = config.get("webhook_auth")
        if auth is not None and auth not in ess_auth.WEBHOOK_AUTHS:
            raise ConfigInvalid("config.webhook_auth", "must be 'basic' (default) or 'oauth2'")
        client = config.get("oauth_client_id")
        if client is not None and (not isinstance(client, str) or not USERNAME_PATTERN.match(client)):
            raise ConfigInvalid("config.oauth_client_id", "must be 1-256 characters without ':' or spaces")
        if "provision" in config and not isinstance(config["provision"], bool):
            raise ConfigInvalid("config.provision", "must be true or false")
        if not address.strip():
            raise ConfigInvalid("address", "is required")
        if sender_from(address, config) is None:
            raise ConfigInvalid(
                "config.from", "is required: 'channel:<id>' or 'sender_id:<id>' (SCG does not resolve bare addresses)"
            )
        return config

    def capabilities(self, sender: SenderContext) -> Capabilities:
        kind = channel_type(sender.config)
        return Capabilities(
            options=False,  # SCG documents no quick-reply shape: options are numbered text
            media=kind != "sms",
            max_text_length=self._max_text(sender.config),
            sms=kind == "sms",
            carrier_compliance=kind in ("sms", "mms", "rcs"),
        )

    def _max_text(self, config: dict[str, Any]) -> int:
        limit = config.get("max_text_length")
        return limit if isinstance(limit, int) and not isinstance(limit, bool) else MAX_TEXT[channel_type(config)]

    def _base_url(self, config: dict[str, Any]) -> str:
        return str(config.get("base_url") or DEFAULT_BASE_URL).rstrip("/")

    # --- inbound ---

    async def parse_webhook(self, request: WebhookRequest, sender: SenderContext) -> WebhookResult:
        # Authenticate before looking at the body. ESS has no body signature
        # and no signed timestamp: retries of one event keep its event-id,
        # and core dedupes by message id, so a replay is answered 2xx and
        # dropped rather than refused.
        ess_auth.check_authorization(request.headers.get("authorization"), sender, self.clock.now())
        event = parse_event(request.body)
        if event.topic != TOPIC:
            return WebhookResult()
        kind = event.type
        if kind == "mo_message_received":
            return WebhookResult(messages=[self._inbound(event, sender)])
        if kind in ("message_state_change", "message_request_state_change"):
            report = self._report(event, sender)
            return WebhookResult(reports=[report] if report else [])
        return WebhookResult()

    def _inbound(self, event: Event, sender: SenderContext) -> InboundMessage:
        fields = parse_payload(MoFields, event.event.fld_val_list)
        body = fields.message_body or ""
        text, postback = body, None
        parsed = rcs_reply(body)
        # JSON bodies are RCS replies; on other channels only when they carry a postback.
        if parsed is not None and (channel_type(sender.config) == "rcs" or parsed[1] is not None):
            text, postback = parsed
        media = [Media(url=url) for url in fields.media_urls]
        # SCG's attachment URLs need its token: the bot gets an expiring host URL.
        now = self.clock.now()
        media += [Media(url=attachments.media_url(sender, attachment, now)) for attachment in fields.attachment_ids]
        metadata: dict[str, Any] = {"event_id": event.event_id, "attempt": event.attempt, "evt_tp": event.type}
        if fields.message_body_truncated:
            metadata["message_body_truncated"] = True
        if fields.attachment_ids:
            metadata["attachment_ids"] = fields.attachment_ids
        if fields.fragments_count is not None:
            metadata["fragments_count"] = fields.fragments_count
        return InboundMessage(
            channel=self.name,
            sender_id=sender.id,
            provider_message_id=fields.message_id,
            contact=normalize_address(fields.from_address),
            to_address=fields.to_address or sender.address,
            text=text,
            media=media,
            postback=postback,
            received_at=event.event.timestamp,
            metadata=metadata,
        )

    def _report(self, event: Event, sender: SenderContext) -> DeliveryReport | None:
        fields = parse_payload(StateFields, event.event.fld_val_list)
        table = REQUEST_STATES if event.type == "message_request_state_change" else MESSAGE_STATES
        state = table.get(fields.new_state.upper())
        if state is None:
            return None  # an SCG state we do not track (TEST, …): acknowledged, ignored
        # `send` returns the message request id (one recipient per request),
        # so reports are keyed by it; the message id is the fallback.
        provider_id = fields.message_request_id or fields.message_id
        if not provider_id:
            raise MalformedWebhook("unexpected payload: fld-val-list: message_request_id or message_id is required")
        failed = state == "FAILED"
        return DeliveryReport(
            channel=self.name,
            sender_id=sender.id,
            provider_message_id=provider_id,
            state=state,
            reason_code=fields.reason_code or (fields.new_state if failed else None),
            reason_description=fields.reason_description,
            contact=normalize_address(fields.to_address) if fields.to_address else None,
            occurred_at=event.event.timestamp,
        )

    # --- outbound ---

    def request_body(self, sender: SenderContext, message: OutboundMessage) -> dict[str, Any]:
        """The SCG message request for one outbound message."""
        config = sender.config
        kind = channel_type(config)
        native_media = kind != "sms"
        text = as_text(
            Reply(text=message.text, options=message.options, media=message.media),
            media_as_links=not native_media,
        )
        if native_media:
            # SCG has no per-media caption field: captions go into the body.
            captions = [m.caption.strip() for m in message.media if m.caption and m.caption.strip()]
            text = "\n".join([text, *captions] if text else captions)
        text, _ = truncate(text, self._max_text(config))
        sender_address = sender_from(sender.address, config)
        if sender_address is None:
            raise SendError("config.from is required: 'channel:<id>' or 'sender_id:<id>'", retryable=False)
        body: dict[str, Any] = {
            "from": sender_address,
            "to": [to_address(message.contact, config)],
            "external_id": message.external_id or message.id,
        }
        if text:
            body["body"] = text
        if native_media and message.media:
            body["media_urls"] = [m.url for m in message.media]
        return body

    async def send(self, sender: SenderContext, message: OutboundMessage) -> SendResult:
        token = parse_token(sender.credentials)
        body = self.request_body(sender, message)
        if "body" not in body and "media_urls" not in body:
            raise SendError("nothing to send: the message has no text and no media", retryable=False)
        raw = json.dumps(body, separators=(",", ":")).encode()
        url = self._base_url(sender.config) + MESSAGE_REQUESTS_PATH
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}

        async def post() -> httpx.Response:
            response = await self.http.post(url, content=raw, headers=headers)
            if response.status_code == 404 and _error_code(response).endswith("4046"):
                raise CredentialsInvalid("SCG refused the token: it has expired (SCG_ERROR_4046)", status_code=404)
            return response

        response = await call_with_retry(
            post,
            "SCG message_requests",
            clock=self.clock,
            # A send is not idempotent (SCG has no idempotency key): after a 5xx or a
            # read timeout core asks `find_sent` instead of sending it again.
            policy=dataclasses.replace(self.retry_policy, idempotent=False),
            error=SendError,
            credentials_error=CredentialsInvalid,
        )
        try:
            data = response.json()
        except ValueError:
            data = None
        request_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(request_id, str) or not request_id:
            # Accepted but unidentifiable: retrying could send it twice.
            raise SendError("SCG answered without a message request id", retryable=False)
        return SendResult(
            provider_message_id=request_id,
            state="QUEUED",
            fragments_count=fragments_count(body.get("body", "")) if channel_type(sender.config) == "sms" else None,
        )

    async def find_sent(self, sender: SenderContext, message: OutboundMessage) -> SendResult | None:
        """The message request SCG made of `message`, found by its `external_id`.

        Only an MT to the same contact, created no earlier than our message,
        counts: an `external_id` the caller chose may have been used before.
        """
        token = parse_token(sender.credentials)
        url = self._base_url(sender.config) + API_PREFIX + "/messaging/messages"
        params = {"external_id": message.external_id or message.id}
        headers = {"authorization": f"Bearer {token}"}

        async def get() -> httpx.Response:
            return await self.http.get(url, params=params, headers=headers)

        response = await call_with_retry(
            get, "SCG messages lookup", clock=self.clock, policy=self.retry_policy, error=SendError
        )
        try:
            found = response.json().get("list") or []
        except (ValueError, AttributeError):
            raise SendError("SCG messages lookup answered an unexpected body", retryable=True) from None
        contact = normalize_address(message.contact)
        # Our own id is unique; a caller's external_id may repeat, so then only
        # a message created since ours counts (clocks differ a little).
        earliest = message.created_at.timestamp() - 60 if message.external_id else None
        for item in found:
            if not isinstance(item, dict) or item.get("direction", "MT") != "MT":
                continue
            if normalize_address(str(item.get("to_address") or "")) != contact:
                continue
            created = _epoch(item.get("created_date"))
            if earliest is not None and created is not None and created < earliest:
                continue
            request_id = item.get("message_request_id") or item.get("id")
            if isinstance(request_id, str) and request_id:
                state = MESSAGE_STATES.get(str(item.get("state") or "").upper(), "QUEUED")
                return SendResult(provider_message_id=request_id, state=state)
        return None

    # --- the sender's own routes ---

    async def handle_route(self, route: str, request: WebhookRequest, sender: SenderContext) -> ChannelResponse | None:
        if route == ess_auth.TOKEN_ROUTE and ess_auth.webhook_auth(sender.config) == "oauth2":
            return ess_auth.token_response(request, sender, self.clock.now())
        if route.startswith(attachments.ROUTE_PREFIX) and request.method == "GET":
            attachment = attachments.attachment_id(sender, route[len(attachments.ROUTE_PREFIX) :], self.clock.now())
            api_url = self._base_url(sender.config) + API_PREFIX
            return await attachments.fetch(self.http, api_url, parse_token(sender.credentials), attachment)
        return None

    # --- provisioning ---

    async def provision(self, sender: SenderContext) -> ProvisionResult:
        """Describe the ESS delivery configuration and subscription to create.

        SCG's delivery configurations are set up by the operator (and the
        webhook domain must be whitelisted by Syniverse), so nothing remote
        happens here: the sender's config receives exactly what to enter.
        """
        # The API never returns secrets, so the operator chooses this one and
        # enters it in SCG; the description only names where it goes.
        # ESS offers Basic, OAuth 2.0 and mTLS, no static bearer (KB "ESS good practices").
        if ess_auth.webhook_auth(sender.config) == "oauth2":
            auth: dict[str, Any] = {
                "type": "OAUTH2",
                "grant_type": "client_credentials",
                "token_url": f"{sender.webhook_url}/{ess_auth.TOKEN_ROUTE}",
                "client_id": ess_auth.client_id(sender),
                "client_secret": "<webhook_secret>",
            }
        else:
            auth = {
                "type": "BASIC",
                "username": sender.config.get("webhook_username") or "syniverse",
                "password": "<webhook_secret>",
            }
        description = {
            "del-cfg-nm": f"botbridge-{sender.id}",
            "del-prtcl-cd": "REST",
            "addr": sender.webhook_url,
            "del-fmt-cd": "JSON",
            "is-active": True,
            "auth": auth,
            "topic": TOPIC,
            "evt-tp": list(EVENT_TYPES),
            "match-crt": f"to_address = '{sender.address}' OR from_address = '{sender.address}'",
            "note": "Ask Syniverse support to whitelist the domain of addr before deliveries start.",
        }
        return ProvisionResult(
            config={"ess_delivery_configuration": description},
            state="active",
        )

    async def deprovision(self, sender: SenderContext) -> None:
        """Nothing remote to undo: delete the ESS delivery configuration in SCG by hand."""


def _epoch(value: Any) -> float | None:
    """SCG dates: epoch milliseconds (number or string) or ISO 8601; None when unreadable.

    A value that does not read as a date after 2000 is treated as unreadable
    (seconds mistaken for milliseconds would otherwise hide every message).
    """
    moment: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        moment = float(value) / 1000
    elif isinstance(value, str) and value:
        if value.isdigit():
            moment = int(value) / 1000
        else:
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return None
            moment = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return moment if moment is not None and moment > 946_684_800 else None


def _error_code(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    code = data.get("error_code") if isinstance(data, dict) else None
    return code if isinstance(code, str) else ""
