"""Joining a contact's rapid-fire MOs into one bot turn (a connector's `coalesce_window`).

People type one sentence across several SMS. With a window of, say, 1.5 s, an
MO is held in its conversation record (`pending`) instead of going to the bot,
and a timer job is queued for the end of the window; each MO arriving within
it joins the held ones and moves the window on. When the last window closes,
one turn goes to the bot with the texts joined in order (their media too),
under the id of the last MO.

The timer runs under a key of its own, so it never holds up the
conversation's later MOs; it queues the flush behind them on the
conversation's key, where turns run one at a time, so the held MOs are read
and cleared by the same job that asks the bot. A flush whose window has been
moved on by a later MO does nothing: that MO's timer flushes. The held MOs are
cleared only as the turn is recorded: a bot call retried later finds them
still there.

An answer to numbered options, a postback and media-only MOs are not held:
they are not part of a sentence being typed.
"""

from __future__ import annotations

from typing import Any

from botbridge.models import Conversation, InboundMessage, Job
from botbridge.render import match_option
from botbridge.store import conversation_key

TIMER, FLUSH = "timer", "flush"
# Times compared across the timer's wake-up and the engine's clock: a hair of slack.
SLACK = 1e-3


def joins(message: InboundMessage, conversation: Conversation) -> bool:
    """Whether the MO may wait for the next ones (plain text, not an answer to the bot's options)."""
    if message.postback or not message.text.strip():
        return False
    return match_option(message.text, conversation.options) is None


def hold(conversation: Conversation, message: InboundMessage, now: float, window: float) -> Job:
    """Keep the MO in its conversation (written by the caller) until the window closes; the timer that ends it."""
    conversation.pending.append(message.model_dump(mode="json"))
    conversation.pending_until = now + window
    conversation.last_mo_at = now
    return Job(
        kind="conversation",
        key=f"coalesce:{message.id}",  # its own key: it must not hold up the conversation's next MOs
        not_before=now + window,
        payload={
            "action": TIMER,
            "conversation_id": conversation.id,
            "sender_id": conversation.sender_id,
            "contact": conversation.contact,
        },
    )


def flush_job(timer: Job) -> Job:
    payload: dict[str, Any] = {**timer.payload, "action": FLUSH}
    return Job(kind="conversation", key=conversation_key(payload["sender_id"], payload["contact"]), payload=payload)


def due(conversation: Conversation, now: float) -> bool:
    """Whether the conversation holds MOs whose window has closed."""
    until = conversation.pending_until
    return bool(conversation.pending) and until is not None and until <= now + SLACK


def take(conversation: Conversation) -> InboundMessage:
    """The held MOs as one: texts joined by a space in order, media in order, the last one's ids.

    Clears them from the record (written with the turn's outcome).
    """
    held = [InboundMessage.model_validate(item) for item in conversation.pending]
    conversation.pending, conversation.pending_until = [], None
    text = " ".join(m.text.strip() for m in held if m.text.strip())
    return held[-1].model_copy(update={"text": text, "media": [m for h in held for m in h.media]})


__all__ = ["due", "flush_job", "hold", "joins", "take"]
