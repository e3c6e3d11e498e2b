"""The nouns of botbridge as pydantic models.

Stored records carry secrets only in encrypted form (`*_enc` fields); the
API views (`public()`) leave them out entirely. Plugins get decrypted
secrets through `SenderContext` / `BotSession`, never through these records.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
)

from botbridge.derived import Derived
from botbridge.ids import new_id

DEFAULT_CONVERSATION_TIMEOUT = 1800.0
DEFAULT_RATE_LIMIT = 30.0
EVENT_BODY_LIMIT = 1530


def utcnow() -> datetime:
    return datetime.now(UTC)


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def iso_millis(moment: datetime) -> str:
    """`2017-11-30T17:17:46.615Z`, the timestamp format of SCG events."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _credentials_as_string(value: Any) -> Any:
    # The seeds send credentials as a string holding JSON; a JSON object is
    # accepted too and kept as its compact string form.
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return value


Credentials = Annotated[str, BeforeValidator(_credentials_as_string)]
VersionNumber = Annotated[int, Field(ge=1, strict=False)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- senders ------------------------------------------------------------


class SenderCreate(_Model):
    channel: str = Field(min_length=1, max_length=64)
    address: str = Field(min_length=1, max_length=256)
    credentials: Credentials = Field(default="", max_length=65536)
    webhook_secret: str = Field(default="", max_length=4096)
    config: dict[str, Any] = Field(default_factory=dict)


class SenderUpdate(_Model):
    address: str | None = Field(default=None, min_length=1, max_length=256)
    credentials: Credentials | None = Field(default=None, max_length=65536)
    webhook_secret: str | None = Field(default=None, max_length=4096)
    config: dict[str, Any] | None = None


class Sender(BaseModel):
    id: str = Field(default_factory=new_id)
    account_id: str
    channel: str
    address: str
    config: dict[str, Any] = Field(default_factory=dict)
    state: str = "active"
    state_reason: str | None = None
    credentials_enc: str = ""
    webhook_secret_enc: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    def public(self, webhook_url: str) -> dict[str, Any]:
        view = SenderView.model_validate({**self.model_dump(), "webhook_url": webhook_url})
        return view.model_dump(mode="json")


class SenderView(BaseModel):
    """A sender as the API shows it: secrets are never part of it."""

    id: str
    channel: str
    address: str
    config: dict[str, Any]
    state: str
    state_reason: str | None
    webhook_url: str
    created_at: datetime
    updated_at: datetime


# --- connectors ---------------------------------------------------------


class ConnectorConfig(BaseModel):
    """Non-secret connector settings; backend-specific keys pass through."""

    model_config = ConfigDict(extra="allow")

    base_url: str | None = None
    conversation_timeout: float = Field(default=DEFAULT_CONVERSATION_TIMEOUT, gt=0, le=30 * 86400)
    rate_limit: float = Field(default=DEFAULT_RATE_LIMIT, gt=0, le=10_000)
    fallback_text: str | None = Field(default=None, max_length=1600)
    # Sent once when the bot has not answered a turn after `interim_after` seconds ("One moment…").
    interim_text: str | None = Field(default=None, min_length=1, max_length=1600)
    interim_after: float | None = Field(default=None, gt=0, le=60, description="seconds; 3 when not set")
    # Consecutive MOs of a contact within this many seconds are one bot turn (botbridge.coalescing).
    coalesce_window: float | None = Field(default=None, gt=0, le=30)
    # What a text-only bot gets for an MO's media ("[image]" etc. when not set; "" sends nothing).
    media_text: str | None = Field(default=None, max_length=200)
    # Handing off to a person (botbridge.handoff).
    handoff_timeout: float | None = Field(default=None, gt=0, le=7 * 86400, description="seconds; 1800 when not set")
    handoff_timeout_text: str | None = Field(default=None, min_length=1, max_length=1600)
    resume_keywords: list[str] | None = Field(default=None, max_length=20)


class ConnectorCreate(_Model):
    type: str = Field(min_length=1, max_length=64)
    sender_id: str = Field(min_length=1, max_length=128)
    credentials: Credentials = Field(max_length=65536)
    external_id: str | None = Field(default=None, max_length=256)
    config: ConnectorConfig = Field(default_factory=ConnectorConfig)


class ConnectorUpdate(_Model):
    version_number: VersionNumber
    type: str | None = None
    sender_id: str | None = Field(default=None, min_length=1, max_length=128)
    credentials: Credentials | None = Field(default=None, max_length=65536)
    external_id: str | None = Field(default=None, max_length=256)
    config: ConnectorConfig | None = None


_CONNECTOR_SETTINGS = Derived()


class Connector(BaseModel):
    id: str = Field(default_factory=new_id)
    account_id: str
    type: str
    sender_id: str
    external_id: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    version_number: int = 1
    state: str = "active"
    state_reason: str | None = None
    credentials_enc: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def settings(self) -> ConnectorConfig:
        """`config` as core reads it: validated once per distinct config (a turn reads it several times).

        Kept outside the record, so that records compare by what they hold. Do not change the result.
        """
        return _CONNECTOR_SETTINGS.get(repr(self.config), lambda: ConnectorConfig.model_validate(self.config))

    def public(self) -> dict[str, Any]:
        return ConnectorView.model_validate(self.model_dump()).model_dump(mode="json")


class ConnectorView(BaseModel):
    """A connector as the API shows it: credentials are never part of it."""

    id: str
    type: str
    sender_id: str
    external_id: str | None
    config: dict[str, Any]
    version_number: int
    state: str
    state_reason: str | None
    created_at: datetime
    updated_at: datetime


# --- messages -----------------------------------------------------------


class Media(BaseModel):
    url: str
    content_type: str | None = None
    caption: str | None = None


class Option(BaseModel):
    """One choice the bot offers: shown as `label`, answered with `value`."""

    label: str
    value: str


class InboundMessage(BaseModel):
    """A message from an end user (MO), normalized from any channel."""

    id: str = Field(default_factory=new_id)
    channel: str
    sender_id: str
    provider_message_id: str
    contact: str
    to_address: str = ""
    text: str = ""
    media: list[Media] = Field(default_factory=list)
    postback: str | None = None
    received_at: datetime = Field(default_factory=utcnow)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def dedupe_key(self) -> str:
        return f"mo:{self.channel}:{self.sender_id}:{self.provider_message_id}"


# What a bot asks of the conversation besides its messages: "handoff" (to a
# person, e.g. Dialogflow CX liveAgentHandoff, Bot Framework handoff.initiate)
# and "end" (the bot closed the conversation, e.g. CX endInteraction).
Signal = Literal["handoff", "end"]


class Reply(BaseModel):
    """What a bot backend answers: text, media and options, channel-neutral.

    `signals` carry what the bot asked of the conversation, typed so an
    engine step can act on them; they are never shown to the user.
    """

    text: str = ""
    media: list[Media] = Field(default_factory=list)
    options: list[Option] = Field(default_factory=list)
    signals: list[Signal] = Field(default_factory=list)


# Later states never go back to earlier ones: reports may arrive out of order.
STATE_RANK: dict[str, int] = {
    "CREATED": 0,
    "QUEUED": 1,
    "SENT": 2,
    "DELIVERED": 3,
    "READ": 4,
    "FAILED": 4,
}


class StateChange(BaseModel):
    """One step of an outbound message's life: CREATED, then SENT, then DELIVERED/READ/FAILED."""

    state: str
    at: datetime
    reason_code: str | None = None
    reason_description: str | None = None


class OutboundMessage(BaseModel):
    """A message to an end user (MT)."""

    id: str = Field(default_factory=new_id)
    # Set on messages made since history was kept: what list_outbound filters on.
    account_id: str | None = None
    sender_id: str
    contact: str
    text: str = ""
    media: list[Media] = Field(default_factory=list)
    options: list[Option] = Field(default_factory=list)
    # The number of its first option when shown as text: one turn's replies number on across them.
    option_start: int = 1
    connector_id: str | None = None
    conversation_id: str | None = None
    external_id: str | None = None
    state: str = "CREATED"
    provider_message_id: str | None = None
    reason_code: str | None = None
    reason_description: str | None = None
    # The provider's own error code of a failed send (e.g. SCG_ERROR_4046), bounded; reason_code is its status.
    provider_error_code: str | None = None
    # Who made it: "bot" (a reply), "fallback" (the bot failed), "interim" (the bot was slow),
    # "handoff" (the text when a hand-off times out), "opt_out" (the answer to STOP, START or HELP),
    # "api" (POST /v1/messages).
    origin: str | None = None
    states: list[StateChange] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class SendResult(BaseModel):
    provider_message_id: str
    state: str = "SENT"
    fragments_count: int | None = None


class DeliveryReport(BaseModel):
    """A channel's word on an outbound message's fate."""

    channel: str
    sender_id: str
    provider_message_id: str
    state: str
    reason_code: str | None = None
    reason_description: str | None = None
    contact: str | None = None
    occurred_at: datetime = Field(default_factory=utcnow)

    @property
    def dedupe_key(self) -> str:
        # Scoped by sender like the lookup: another tenant's report carrying
        # the same provider id must not use up this one's dedupe key.
        return f"dr:{self.channel}:{self.sender_id}:{self.provider_message_id}:{self.state}"


# --- conversations ------------------------------------------------------


class Conversation(BaseModel):
    """The emulated session between one contact and one connector."""

    id: str = Field(default_factory=new_id)
    # Set on conversations opened since history was kept: what list_conversations filters on.
    account_id: str | None = None
    sender_id: str
    contact: str
    connector_id: str
    state: Literal["open", "closed"] = "open"
    backend_state: dict[str, Any] = Field(default_factory=dict)
    options: list[Option] = Field(default_factory=list)
    opened_at: float
    last_mo_at: float
    closed_at: float | None = None
    # The connector's conversation_timeout when the conversation last moved:
    # a store may expire the record some time after last_mo_at + timeout.
    timeout: float | None = None
    # Handed to a person (see botbridge.handoff): since when, by whom ("bot", "api"),
    # and when an agent last answered; None while the bot has the conversation.
    handoff_at: float | None = None
    handoff_by: str | None = None
    agent_at: float | None = None
    # MOs held for one turn until `pending_until` (the connector's coalesce_window, botbridge.coalescing).
    pending: list[dict[str, Any]] = Field(default_factory=list)
    pending_until: float | None = None

    def expired(self, now: float, timeout: float) -> bool:
        return self.state == "closed" or now - self.last_mo_at >= timeout


HistoryKind = Literal["mo", "bot_error", "conversation_opened", "conversation_closed", "handoff", "resumed"]


class HistoryEntry(BaseModel):
    """One thing that happened in a conversation, besides the messages sent in it.

    A conversation's timeline is its entries and its outbound messages (each
    with its `states`), in time order. `data` by kind: mo — text, media,
    postback, provider_message_id, message_id; bot_error — reason;
    conversation_opened — connector_id; conversation_closed — reason.
    """

    id: str = Field(default_factory=new_id)
    account_id: str
    conversation_id: str
    sender_id: str
    contact: str
    kind: HistoryKind
    at: float
    data: dict[str, Any] = Field(default_factory=dict)


class StreamItem(BaseModel):
    """What `GET /v1/events/stream` sends an account: an event (as subscribers get it) or a conversation's change.

    `data`: `{"type": "event", "event": <the event body>}` or
    `{"type": "conversation", "conversation": {...}}`. Ids are time-ordered:
    a client resumes after the last one it saw (`Last-Event-ID`).
    """

    id: str = Field(default_factory=new_id)
    account_id: str
    at: float
    data: dict[str, Any]


# --- events -------------------------------------------------------------


class EventBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    fld_val_list: dict[str, Any] = Field(alias="fld-val-list")
    evt_tp: str = Field(alias="evt-tp")
    timestamp: datetime

    @field_serializer("timestamp")
    def _timestamp(self, value: datetime) -> str:
        return iso_millis(value)


class Event(BaseModel):
    """An event in the exact format of SCG's Event Subscription Service.

    Input accepts `event_id` (as the guide writes it) and `event-id` (as real
    payloads carry it) and `attempt` as a number or a numeric string; output
    always uses `event-id`.
    """

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    topic: str = "SCG-Message"
    attempt: int = 1
    event: EventBody
    event_id: str = Field(default_factory=new_id, alias="event-id")

    @field_validator("attempt", mode="before")
    @classmethod
    def _attempt(cls, value: Any) -> Any:
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value

    @classmethod
    def model_validate_payload(cls, payload: dict[str, Any]) -> Event:
        if "event-id" not in payload and "event_id" in payload:
            payload = {**payload, "event-id": payload["event_id"]}
            payload.pop("event_id")
        return cls.model_validate(payload)

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    @property
    def type(self) -> str:
        return self.event.evt_tp


class SubscriptionCreate(_Model):
    url: str = Field(min_length=1, max_length=2048)
    topic: str = Field(default="SCG-Message", min_length=1, max_length=128)
    secret: str = Field(min_length=8, max_length=512)


class MessageCreate(_Model):
    """An outbound message a customer sends through a sender (not from a bot)."""

    sender_id: str = Field(min_length=1, max_length=128)
    to: str = Field(min_length=1, max_length=256)
    text: str = Field(default="", max_length=8000)
    media: list[Media] = Field(default_factory=list, max_length=10)
    options: list[Option] = Field(default_factory=list, max_length=10)
    external_id: str | None = Field(default=None, max_length=256)
    # An agent's answer in a conversation (shown in its timeline); `to` must be its contact.
    conversation_id: str | None = Field(default=None, max_length=128)


class MessageView(BaseModel):
    id: str
    sender_id: str
    contact: str
    text: str
    media: list[Media]
    options: list[Option]
    connector_id: str | None
    conversation_id: str | None
    external_id: str | None
    state: str
    provider_message_id: str | None
    reason_code: str | None
    reason_description: str | None
    provider_error_code: str | None = None
    created_at: datetime
    updated_at: datetime


class StateChangeView(BaseModel):
    state: str
    at: datetime
    reason_code: str | None = None
    reason_description: str | None = None


class MessageHistoryView(MessageView):
    """An outbound message with the steps of its life, as history shows it."""

    origin: str | None = None
    states: list[StateChangeView] = Field(default_factory=list)


class ConversationView(BaseModel):
    id: str
    sender_id: str
    connector_id: str
    contact: str
    state: Literal["open", "closed"]
    opened_at: datetime
    last_mo_at: datetime
    closed_at: datetime | None
    # the bot backend's own id of the session (a Direct Line conversation, a Lex or Dialogflow session)
    backend_session_id: str | None
    # set while a person has the conversation instead of the bot (by "bot" or "api")
    handoff_at: datetime | None = None
    handoff_by: str | None = None


class TimelineItem(BaseModel):
    """One item of a conversation's timeline, in time order.

    `type` mo: `text`, `media`, `postback`, `provider_message_id`, `message_id`;
    mt: `message` (the outbound message and its states); bot_error: `reason`;
    conversation_opened / conversation_closed (`reason`); handoff (`reason`: who
    handed it to a person) / resumed (`reason`: api, keyword, timeout).
    """

    type: Literal["mo", "mt", "bot_error", "conversation_opened", "conversation_closed", "handoff", "resumed"]
    id: str
    at: datetime
    text: str | None = None
    media: list[Media] | None = None
    postback: str | None = None
    provider_message_id: str | None = None
    message_id: str | None = None
    reason: str | None = None
    message: MessageHistoryView | None = None


class ErasureView(BaseModel):
    contact: str
    records_erased: int


class OptOut(BaseModel):
    """A contact who asked a sender to stop messaging them (STOP), until they opt in again.

    Kept per (sender, contact): every MT from that sender to that contact is
    suppressed while it exists. Erasing a contact's history leaves it: a
    suppression list is what proves the opt-out is honoured.
    """

    id: str = Field(default_factory=new_id)
    account_id: str
    sender_id: str
    contact: str
    # What the contact sent ("STOP"), or "api" when an operator added it.
    keyword: str
    created_at: datetime = Field(default_factory=utcnow)


class OptOutView(BaseModel):
    id: str
    sender_id: str
    contact: str
    keyword: str = Field(description='what the contact sent ("STOP"), or "api" when an operator added it')
    created_at: datetime


class OptOutCreate(_Model):
    """An operator adding a contact to a sender's opt-outs (e.g. from a suppression list kept elsewhere)."""

    sender_id: str = Field(min_length=1, max_length=128)
    contact: str = Field(min_length=1, max_length=256)


class Subscription(BaseModel):
    id: str = Field(default_factory=new_id)
    account_id: str
    url: str
    topic: str = "SCG-Message"
    secret_enc: str = ""
    created_at: datetime = Field(default_factory=utcnow)

    def public(self) -> dict[str, Any]:
        return SubscriptionView.model_validate(self.model_dump()).model_dump(mode="json")


class SubscriptionView(BaseModel):
    id: str
    url: str
    topic: str
    created_at: datetime


# --- durable work --------------------------------------------------------


class Job(BaseModel):
    """One unit of accepted work in the durable queue.

    Jobs that share a `key` run one at a time in enqueue order (the key of a
    conversation serializes its turns and its replies); jobs with different
    keys run in parallel. `not_before` delays a job (retries with backoff).
    """

    id: str = Field(default_factory=new_id)
    kind: Literal["mo", "mt", "dr", "event", "conversation"]
    key: str
    payload: dict[str, Any] = Field(default_factory=dict)
    attempts: int = 0
    not_before: float = 0.0
    last_error: str | None = None
    # Set by a store on claim when it needs its own handle back on
    # complete/retry (e.g. a Redis stream entry id); never persisted.
    receipt: str | None = Field(default=None, exclude=True)


class EventFailure(BaseModel):
    """An event a subscriber never accepted, kept for `GET .../failures`."""

    id: str = Field(default_factory=new_id)
    subscription_id: str
    event: dict[str, Any]
    attempts: int
    last_error: str
    failed_at: datetime = Field(default_factory=utcnow)


# --- API keys -----------------------------------------------------------


class ApiKey(BaseModel):
    """A caller's API key: only its hash is stored, the key itself never.

    `source` says who manages it: "setting" keys are bootstrapped from
    BOTBRIDGE_API_KEYS and revoked when they leave it; "cli" keys were made
    by `botbridge keys create` and only a revoke ends them. Times are epoch
    seconds of the host's clock.
    """

    id: str = Field(default_factory=new_id)
    account_id: str
    key_hash: str
    name: str = ""
    source: Literal["setting", "cli"] = "cli"
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def public(self) -> dict[str, Any]:
        return ApiKeyView(
            id=self.id,
            name=self.name,
            source=self.source,
            created_at=from_epoch(self.created_at),
            last_used_at=None if self.last_used_at is None else from_epoch(self.last_used_at),
            revoked=self.revoked,
            revoked_at=None if self.revoked_at is None else from_epoch(self.revoked_at),
        ).model_dump(mode="json")


class ApiKeyView(BaseModel):
    """An API key as the API shows it: metadata only, never the key or its hash."""

    id: str
    name: str
    source: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool
    revoked_at: datetime | None


# Every encrypted field of every stored record, by record kind: what
# `botbridge rotate-secrets` re-encrypts.
SecretKind = Literal["sender", "connector", "subscription"]
SECRET_FIELDS: dict[SecretKind, tuple[str, ...]] = {
    "sender": ("credentials_enc", "webhook_secret_enc"),
    "connector": ("credentials_enc",),
    "subscription": ("secret_enc",),
}
SECRET_MODELS: dict[SecretKind, type[Sender | Connector | Subscription]] = {
    "sender": Sender,
    "connector": Connector,
    "subscription": Subscription,
}
