"""What a channel plugin implements: verify/parse webhooks, send, describe senders.

A channel plugin registers a `Channel` subclass through the
`register_channels` hook. The host builds one instance per channel name,
handing it the shared HTTP client and the clock; it never builds its own.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import httpx
from pydantic import BaseModel, Field, ValidationError

from botbridge import json_input
from botbridge.clock import Clock
from botbridge.errors import ConfigInvalid, MalformedWebhook
from botbridge.models import DeliveryReport, InboundMessage, OutboundMessage, Sender, SendResult


@dataclass(frozen=True)
class WebhookRequest:
    """An incoming provider webhook, exactly as received.

    `url` is the public URL the provider called (built from
    BOTBRIDGE_PUBLIC_URL when set, because behind a proxy the request's own
    URL is not what the provider signed). Header names are lower-case.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        try:
            return json_input.loads(self.body)
        except json_input.JSONRefused as exc:
            if exc.field == "body":
                raise MalformedWebhook(
                    f"body is {exc.reason}" if exc.reason == "not valid JSON" else str(exc)
                ) from None
            raise MalformedWebhook(f"unexpected payload: {exc}") from None

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if not isinstance(data, dict):
            raise MalformedWebhook("body must be a JSON object")
        return data


M = TypeVar("M", bound=BaseModel)


def parse_payload(model: type[M], data: Any) -> M:
    """Validate a webhook payload; a mismatch is the provider's 400, not our 500."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise MalformedWebhook(f"unexpected payload: {where}: {first['msg']}") from None


Claim = Callable[[str, float], Awaitable[bool]]
Siblings = Callable[[], Awaitable[list["SenderContext"]]]

# A sender whose config names another sender under this key receives its
# provider callbacks through that sender's webhook: providers that limit
# webhooks (Sinch: 5 per app) have the senders of one app share one.
WEBHOOK_VIA = "webhook_via"


async def _no_siblings() -> list[SenderContext]:
    return []


@dataclass
class SenderContext:
    """A sender with its secrets decrypted, for the plugin's use only.

    `claim(key, ttl)` atomically records a key (e.g. a webhook nonce) and
    answers False when it was already recorded: the replay guard. Keys are
    the sender's own (core scopes them), so another sender's webhook never
    uses one up.

    `siblings()` are the senders whose callbacks arrive through this
    sender's webhook (same account and channel, `config[WEBHOOK_VIA]` = this
    sender's id). A record the plugin gives one of their ids is theirs; any
    other id is this sender's: core enforces it.
    """

    sender: Sender
    credentials: str
    webhook_secret: str
    webhook_url: str
    claim: Claim
    siblings: Siblings = _no_siblings

    @property
    def id(self) -> str:
        return self.sender.id

    @property
    def address(self) -> str:
        return self.sender.address

    @property
    def config(self) -> dict[str, Any]:
        return self.sender.config


class WebhookResult(BaseModel):
    """What a verified webhook carried."""

    messages: list[InboundMessage] = Field(default_factory=list)
    reports: list[DeliveryReport] = Field(default_factory=list)
    # Provisioning news, e.g. Bird's channel.created: the sender's new state
    # and config keys to merge into its config (e.g. the installed channel id).
    sender_state: str | None = None
    sender_state_reason: str | None = None
    sender_config: dict[str, Any] = Field(default_factory=dict)


class ProvisionResult(BaseModel):
    """What setting up the provider side changed on the sender."""

    webhook_secret: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    state: str = "active"
    state_reason: str | None = None


@dataclass(frozen=True)
class ChannelResponse:
    """What a channel's own route answers (see `Channel.handle_route`)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> ChannelResponse:
        return cls(status, json.dumps(data, separators=(",", ":")).encode(), "application/json", headers or {})


def config_section(config: dict[str, Any], key: str, model: type[BaseModel], **dump: Any) -> dict[str, Any]:
    """Check core's own key of a sender's config (`opt_out`, `shaping`) against its model.

    Raise `ConfigInvalid` naming the field (`config.opt_out.stop_text`);
    return the config with the section as the model dumps it (`dump`: its options).
    """
    if key not in config:
        return config
    value = config[key]
    if not isinstance(value, dict):
        raise ConfigInvalid(f"config.{key}", "must be an object")
    try:
        section = model.model_validate(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ConfigInvalid(f"config.{key}.{where}" if where else f"config.{key}", error["msg"]) from exc
    return {**config, key: section.model_dump(**dump)}


class Capabilities(BaseModel):
    options: bool = False  # native buttons / quick replies
    media: bool = False
    max_text_length: int = 1600
    sms: bool = True  # fragments are counted for SMS
    # Carriers require STOP/START/HELP handling on it (SMS, MMS, RCS): opt-out
    # handling is on by default. None: as `sms`.
    carrier_compliance: bool | None = None


class Channel:
    """Base class of channel plugins. Override what your provider needs."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    # Names of keys this channel reads, for `GET /v1/plugins` and errors.
    credential_keys: ClassVar[tuple[str, ...]] = ()
    config_keys: ClassVar[tuple[str, ...]] = ("base_url",)
    requires_webhook_secret: ClassVar[bool] = True
    # Whether `find_sent` can ask the provider for a message by our reference.
    finds_sent: ClassVar[bool] = False

    def __init__(self, http: httpx.AsyncClient, clock: Clock) -> None:
        self.http = http
        self.clock = clock

    def validate_sender(
        self, address: str, credentials: str, webhook_secret: str, config: dict[str, Any]
    ) -> dict[str, Any]:
        """Check a sender's settings at create/update; return the config to store.

        Raise `ConfigInvalid(field, message)` naming the wrong field.
        """
        if self.requires_webhook_secret and not webhook_secret and not config.get("provision"):
            raise ConfigInvalid("webhook_secret", "is required for this channel")
        return config

    def capabilities(self, sender: SenderContext) -> Capabilities:
        return Capabilities()

    async def parse_webhook(self, request: WebhookRequest, sender: SenderContext) -> WebhookResult:
        """Verify the request's authenticity, then parse it.

        Raise `InvalidSignature` (401) or `MalformedWebhook` (400); never
        anything else for bad input.
        """
        raise NotImplementedError

    async def send(self, sender: SenderContext, message: OutboundMessage) -> SendResult:
        """Send one message; return the provider's message id.

        Raise `SendError` (retryable or not) or `CredentialsInvalid`. Set
        `outcome_unknown=True` when the provider may have accepted it anyway
        (a timeout after the request left, a 5xx): core then never sends it
        again blindly. It asks `find_sent` first when the channel
        `finds_sent`, and otherwise fails the message as `outcome_unknown`.
        """
        raise NotImplementedError

    async def find_sent(self, sender: SenderContext, message: OutboundMessage) -> SendResult | None:
        """After a send whose outcome is unknown: the provider's record of `message`.

        Look it up by the reference `send` gave the provider (e.g. SCG's
        `external_id`, Bird's `reference`: our message id). Return None only
        when the provider has no such message (core then sends it again);
        raise `SendError` when the lookup itself failed. Only called when
        the class sets `finds_sent = True`.
        """
        raise NotImplementedError

    async def handle_route(self, route: str, request: WebhookRequest, sender: SenderContext) -> ChannelResponse | None:
        """Answer `GET|POST {webhook_url}/{route}`, or None for 404.

        For what a provider calls besides the webhook (e.g. an OAuth token
        endpoint) and what the host serves on the provider's behalf (e.g.
        media behind the provider's credentials). Raise `APIError`s for 4xx.
        """
        return None

    async def provision(self, sender: SenderContext) -> ProvisionResult | None:
        """Set up the provider side for a sender created with config.provision."""
        return None

    async def deprovision(self, sender: SenderContext) -> None:
        """Undo `provision` when the sender is deleted."""

    async def aclose(self) -> None:
        """Release what the instance holds (tasks, caches)."""
