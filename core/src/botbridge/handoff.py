"""Handing a conversation to a person, and back to the bot.

A conversation is handed off by the API (`POST /v1/conversations/{id}/handoff`)
or by the bot's own signal (a reply carrying `"handoff"`: Dialogflow CX's
`liveAgentHandoff`, a Bot Framework `handoff.initiate` activity, a Lex intent
named in the connector's `handoff_intents`). While it is, the engine calls no
bot: each MO is published as `mo_waiting_for_agent` for whoever answers, and
an agent answers with `POST /v1/messages` naming the conversation. It returns
to the bot by the API (`…/resume`), when the contact sends one of the
connector's `resume_keywords`, or when no agent has answered for
`handoff_timeout` seconds — seen at the contact's next message, which then
goes to the bot after the connector's `handoff_timeout_text`.

Opt-out comes first: STOP from a handed-off contact is an opt-out like any other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from botbridge.events import conversation_fields, make_event, mo_fields
from botbridge.models import Connector, Conversation, InboundMessage, Job, OutboundMessage, Reply, Sender
from botbridge.optout import normalize
from botbridge.steps import Records
from botbridge.store import Writes

logger = logging.getLogger("botbridge.handoff")

DEFAULT_TIMEOUT = 1800.0

Resumed = Literal["keyword", "timeout"]


def asked_by_bot(replies: list[Reply]) -> bool:
    return any("handoff" in reply.signals for reply in replies)


def hand_off(conversation: Conversation, now: float, by: str) -> bool:
    """Mark the conversation as an agent's; False if it already was."""
    if conversation.handoff_at is not None:
        return False
    conversation.handoff_at, conversation.handoff_by, conversation.agent_at = now, by, None
    return True


def resume(conversation: Conversation) -> bool:
    """Give the conversation back to the bot; False if it was the bot's."""
    if conversation.handoff_at is None:
        return False
    conversation.handoff_at = conversation.handoff_by = conversation.agent_at = None
    return True


@dataclass
class Turn:
    """What a handed-off conversation's MO does: goes to the agent, or back to the bot and why."""

    to_agent: bool
    resumed: Resumed | None = None


def route(conversation: Conversation, connector: Connector, message: InboundMessage, now: float) -> Turn:
    """Where an MO of a handed-off conversation goes (call only when `handoff_at` is set)."""
    settings = connector.settings
    words = {normalize(word) for word in settings.resume_keywords or ()}
    if message.text and normalize(message.text) in words:
        return Turn(to_agent=False, resumed="keyword")
    last = max(conversation.handoff_at or now, conversation.agent_at or 0.0)
    if now - last >= (settings.handoff_timeout or DEFAULT_TIMEOUT):
        return Turn(to_agent=False, resumed="timeout")
    return Turn(to_agent=True)


# --- the engine's steps ---


async def for_agent(
    records: Records,
    sender: Sender,
    connector: Connector,
    conversation: Conversation,
    message: InboundMessage,
    writes: Writes,
) -> list[Job]:
    """An MO of a handed-off conversation: published for the agent, the bot not called."""
    conversation.last_mo_at = records.now()
    conversation.timeout = connector.settings.conversation_timeout
    records.conversation(writes, conversation)
    fields = {**mo_fields(message, sender), "conversation_id": conversation.id, "connector_id": connector.id}
    return await records.event(sender.account_id, make_event("mo_waiting_for_agent", fields, records.now()), writes)


async def handed_off(
    records: Records, sender: Sender, conversation: Conversation, by: str, writes: Writes
) -> list[Job]:
    """Record a hand-off `hand_off` made: the timeline line and `conversation_handoff`."""
    writes.add_history(records.entry(conversation, "handoff", {"reason": by}))
    logger.info("conversation %s handed to a person (by %s)", conversation.id, by)
    event = make_event("conversation_handoff", conversation_fields(sender, conversation, by), records.now())
    return await records.event(sender.account_id, event, writes)


async def resumed(
    records: Records,
    sender: Sender,
    connector: Connector | None,
    conversation: Conversation,
    why: str,
    writes: Writes,
) -> list[Job]:
    """Give a conversation back to the bot; after a timeout, tell the contact (the connector's text)."""
    resume(conversation)
    writes.add_history(records.entry(conversation, "resumed", {"reason": why}))
    records.conversation(writes, conversation)
    event = make_event("conversation_resumed", conversation_fields(sender, conversation, why), records.now())
    jobs = await records.event(sender.account_id, event, writes)
    text = connector.settings.handoff_timeout_text if connector is not None else None
    if why == "timeout" and text and connector is not None:
        jobs += records.replies(sender, connector, conversation, [Reply(text=text)], writes, origin="handoff")
    return jobs


async def operator_action(
    records: Records, sender: Sender, conversation: Conversation, action: str, writes: Writes
) -> list[Job]:
    """An operator's `handoff` or `resume` of an open conversation, run in line with its turns."""
    if action == "handoff":
        if not hand_off(conversation, records.now(), "api"):
            return []
        records.conversation(writes, conversation)
        return await handed_off(records, sender, conversation, "api", writes)
    if conversation.handoff_at is None:
        return []
    connector = await records.host.cache.connector(conversation.connector_id)
    return await resumed(records, sender, connector, conversation, "api", writes)


async def agent_answered(records: Records, message: OutboundMessage, writes: Writes) -> None:
    """An agent's message in a handed-off conversation restarts its hand-off timeout."""
    conversation = await records.host.store.get_conversation(message.sender_id, message.contact)
    if conversation is None or conversation.id != message.conversation_id or conversation.handoff_at is None:
        return
    conversation.agent_at = records.now()
    records.conversation(writes, conversation)


__all__ = [
    "DEFAULT_TIMEOUT",
    "Turn",
    "agent_answered",
    "asked_by_bot",
    "for_agent",
    "hand_off",
    "handed_off",
    "operator_action",
    "resume",
    "resumed",
    "route",
]
