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

from dataclasses import dataclass
from typing import Literal

from botbridge.models import Connector, Conversation, InboundMessage, Reply
from botbridge.optout import normalize

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


__all__ = ["DEFAULT_TIMEOUT", "Turn", "asked_by_bot", "hand_off", "resume", "route"]
