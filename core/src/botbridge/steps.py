"""What the engine's steps share: its settings, its host, the records a job writes, and `Retry`.

A job's handler does its work (asks a bot, sends a message) and describes
what it made in a `Writes`: the store writes them in the same step that
completes the job, with the follow-up jobs the handler returns. `Records`
builds those writes the same way for every step — a conversation with its
live-stream summary, a timeline entry, an event with its deliveries, an
outbound message with its job — so the opt-out, hand-off and bot-turn
modules write exactly what the engine would.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from botbridge import shaping
from botbridge.bot import BotBackend, BotSession, LateReplies
from botbridge.broadcast import Broadcast
from botbridge.cache import ReadCache
from botbridge.channel import Capabilities, Channel, SenderContext
from botbridge.clock import Clock
from botbridge.crypto import SecretBox
from botbridge.errors import tenant_text
from botbridge.events import make_event, state_fields
from botbridge.ids import new_id
from botbridge.logs import correlation_id
from botbridge.metrics import Metrics
from botbridge.models import (
    Connector,
    Conversation,
    Event,
    HistoryEntry,
    HistoryKind,
    InboundMessage,
    Job,
    OutboundMessage,
    Reply,
    Sender,
    StateChange,
    StreamItem,
    from_epoch,
)
from botbridge.outbound import OutboundPolicy
from botbridge.store import Store, Writes, conversation_key


@dataclass
class EngineSettings:
    workers: int = 4
    event_workers: int = 4
    lease: float = 120.0
    poll_interval: float = 0.25
    bot_timeout: float = 30.0
    bot_attempts: int = 3
    send_attempts: int = 5
    report_attempts: int = 4  # a report may outrun the send result it reports on
    event_attempts: int = 8
    event_timeout: float = 5.0
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    # After this many failed bot calls in a row, a connector's bot is not
    # called for a while: its MOs get the fallback at once instead of holding
    # workers that other connectors need.
    breaker_threshold: int = 3
    breaker_open: float = 5.0
    breaker_cap: float = 60.0
    # While the store fails, workers wait this long between tries, doubling to the cap.
    store_backoff: float = 0.05
    store_backoff_cap: float = 2.0

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0 ** min(attempt, 30))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))


class Host(Protocol):
    """What the engine uses of the host it runs in (`botbridge.runtime.Runtime`).

    Named here so the engine depends on these, not on the runtime that builds it.
    """

    store: Store
    clock: Clock
    cache: ReadCache
    metrics: Metrics
    http: httpx.AsyncClient
    outbound: OutboundPolicy
    box: SecretBox
    stream_broadcast: Broadcast

    def channel(self, name: str) -> Channel: ...
    def bot(self, type_name: str) -> BotBackend: ...
    def capabilities(self, sender: Sender) -> Capabilities: ...
    def sender_context(self, sender: Sender) -> SenderContext: ...
    def bot_session(
        self, connector: Connector, conversation: Conversation, deliver_late: LateReplies | None = None
    ) -> BotSession: ...
    async def webhook_siblings(self, sender: Sender) -> list[Sender]: ...
    def notify(self, hook: str, **kwargs: Any) -> None: ...


class Retry(Exception):
    """Raised by a step: run the job again after `delay` seconds (its writes so far are kept)."""

    def __init__(self, reason: str, delay: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class Records:
    """The records a job writes besides its outcome, each made one way for every step."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def now(self) -> float:
        return self.host.clock.now()

    async def event(self, account_id: str, event: Event, writes: Writes, *, first_attempt: bool = True) -> list[Job]:
        """Publish an event: the plugins' hook and the live stream (once), a delivery job per subscription."""
        payload = event.payload()
        if first_attempt:
            self.host.notify("on_event", event=event, account_id=account_id)
            # the live stream gets the body subscribers get, once (a retried job's writes are kept)
            writes.add_stream(
                StreamItem(account_id=account_id, at=self.now(), data={"type": "event", "event": payload})
            )
        subscriptions = await self.host.cache.subscriptions(account_id, event.topic)
        return [
            Job(kind="event", key=f"event:{s.id}:{event.event_id}", payload={"subscription_id": s.id, "event": payload})
            for s in subscriptions
        ]

    def conversation(self, writes: Writes, conversation: Conversation) -> None:
        """Write a conversation, and tell the live stream how it stands now."""
        writes.put_conversation(conversation)
        if conversation.account_id:
            summary = conversation.model_dump(
                mode="json", include={"id", "sender_id", "connector_id", "contact", "state", "last_mo_at", "closed_at"}
            )
            # one item per conversation and job: how it stands when the job ends
            writes.stream = [
                item for item in writes.stream if item.data.get("conversation", {}).get("id") != conversation.id
            ]
            writes.add_stream(
                StreamItem(
                    account_id=conversation.account_id,
                    at=self.now(),
                    data={"type": "conversation", "conversation": summary},
                )
            )

    def entry(
        self, conversation: Conversation, kind: HistoryKind, data: dict[str, Any], *, entry_id: str | None = None
    ) -> HistoryEntry:
        """A line of the conversation's timeline, dated by the engine's clock."""
        return HistoryEntry(
            id=entry_id or new_id(),
            account_id=conversation.account_id or "",
            conversation_id=conversation.id,
            sender_id=conversation.sender_id,
            contact=conversation.contact,
            kind=kind,
            at=self.now(),
            data=data,
        )

    def mo_entry(self, conversation: Conversation, message: InboundMessage) -> HistoryEntry:
        """An MO's line in the timeline, keyed by the MO's id: a turn run again is in it once."""
        data = {
            "message_id": message.id,
            "text": message.text,
            "media": [m.model_dump(mode="json") for m in message.media],
            "postback": message.postback,
            "provider_message_id": message.provider_message_id,
        }
        return self.entry(conversation, "mo", data, entry_id=message.id)

    def mt_job(self, sender: Sender, message: OutboundMessage) -> Job:
        return Job(
            kind="mt",
            key=conversation_key(sender.id, message.contact),
            payload={"message_id": message.id, "sender_id": sender.id, "correlation_id": correlation_id.get()},
        )

    def outbound(self, sender: Sender, message: OutboundMessage, writes: Writes) -> Job:
        """Write a new MT (created now, by the engine's clock: history orders by it); return its job."""
        now = from_epoch(self.now())
        message.states, message.created_at, message.updated_at = [StateChange(state="CREATED", at=now)], now, now
        writes.put_outbound(message, sender.channel)
        return self.mt_job(sender, message)

    def replies(
        self,
        sender: Sender,
        connector: Connector,
        conversation: Conversation,
        replies: list[Reply],
        writes: Writes,
        *,
        origin: str = "bot",
    ) -> list[Job]:
        """A turn's replies, shaped for the sender's channel, as MTs to send in order."""
        capabilities = self.host.capabilities(sender)
        shaped = shaping.shape_replies(replies, shaping.for_sender(sender, capabilities), capabilities)
        return [
            self.outbound(
                sender,
                OutboundMessage(
                    account_id=sender.account_id,
                    origin=origin,
                    option_start=option_start,
                    sender_id=sender.id,
                    contact=conversation.contact,
                    text=reply.text,
                    media=reply.media,
                    options=reply.options,
                    connector_id=connector.id,
                    conversation_id=conversation.id,
                ),
                writes,
            )
            for reply, option_start in shaped
        ]

    async def transition(
        self,
        sender: Sender,
        message: OutboundMessage,
        state: str,
        reason_code: str | None,
        reason: str | None,
        *,
        writes: Writes,
        request_level: bool,
    ) -> list[Job]:
        """Move an MT to its next state, with its state-change event."""
        previous = message.state
        # provider-made text (a failed call, a delivery report) is bounded before a tenant reads it
        reason = tenant_text(reason) if reason else reason
        reason_code = tenant_text(reason_code, 64) if reason_code else reason_code
        message.state, message.reason_code, message.reason_description = state, reason_code, reason
        message.updated_at = from_epoch(self.now())
        message.states.append(
            StateChange(state=state, at=message.updated_at, reason_code=reason_code, reason_description=reason)
        )
        writes.put_outbound(message, sender.channel)
        self.host.notify("on_outbound_message", message=message, sender=sender)
        evt_tp = "message_request_state_change" if request_level else "message_state_change"
        event = make_event(evt_tp, state_fields(message, sender, previous, reason_code, reason), self.now())
        return await self.event(sender.account_id, event, writes)


__all__ = ["EngineSettings", "Host", "Records", "Retry"]
