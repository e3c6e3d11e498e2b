"""STOP, START and HELP before the bot: opt-out compliance on phone channels.

US carriers require every A2P number to honour opt-out keywords (the FCC's
2025 rules add REVOKE and OPTOUT). The engine asks `classify` about every MO
before a bot sees it: a whole-message keyword is answered here and never
reaches the bot, and a contact who opted out gets nothing more from that
sender until they opt in again — the engine checks before each send.

Settings live in a sender's `config.opt_out` (`OptOutConfig`); they are on by
default for channels whose capabilities say carriers require them (SMS, MMS,
RCS) and can be turned off for a sender whose provider or number answers the
keywords itself.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from botbridge.channel import Capabilities, config_section
from botbridge.derived import Derived
from botbridge.events import contact_fields, make_event, mo_fields
from botbridge.logs import mask
from botbridge.models import InboundMessage, Job, OptOut, OutboundMessage, Sender
from botbridge.steps import Records
from botbridge.store import Store, Writes

logger = logging.getLogger("botbridge.optout")

Keyword = Literal["stop", "start", "help"]

DEFAULT_STOP = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT")
DEFAULT_START = ("START", "UNSTOP", "SUBSCRIBE")
DEFAULT_HELP = ("HELP", "INFO")
# Origins of messages sent to a contact who opted out: the confirmation of the
# opt-out itself and the HELP answer (allowed by carriers' rules).
EXEMPT_ORIGINS = frozenset({"opt_out"})
# What an MT suppressed for an opt-out fails with.
SUPPRESSED_CODE = "opted_out"
SUPPRESSED_REASON = "the contact opted out of this sender (STOP); they opt in again with START"


def normalize(text: str) -> str:
    """A message as keywords are matched: letters and digits only, upper case ("Stop!" → "STOP")."""
    folded = unicodedata.normalize("NFKC", text).upper()
    return "".join(char for char in folded if char.isalnum())


class OptOutConfig(BaseModel):
    """A sender's `config.opt_out`."""

    model_config = ConfigDict(extra="forbid")

    # None: on where the channel's capabilities say carriers require it.
    enabled: bool | None = None
    stop_keywords: list[str] = Field(default_factory=lambda: list(DEFAULT_STOP), max_length=50)
    start_keywords: list[str] = Field(default_factory=lambda: list(DEFAULT_START), max_length=50)
    help_keywords: list[str] = Field(default_factory=lambda: list(DEFAULT_HELP), max_length=50)
    stop_text: str = Field(
        default="You are unsubscribed and will receive no more messages. Reply START to subscribe again.",
        min_length=1,
        max_length=1600,
    )
    start_text: str = Field(
        default="You are subscribed again. Reply STOP to unsubscribe, HELP for help.", min_length=1, max_length=1600
    )
    help_text: str = Field(
        default="Reply STOP to unsubscribe, START to subscribe again.", min_length=1, max_length=1600
    )

    @field_validator("stop_keywords", "start_keywords", "help_keywords")
    @classmethod
    def _keywords(cls, value: list[str]) -> list[str]:
        keywords = [normalize(word) for word in value]
        if any(not word or len(word) > 64 for word in keywords):
            raise ValueError("each keyword needs a letter or digit and at most 64 of them")
        return keywords

    def active(self, capabilities: Capabilities) -> bool:
        if self.enabled is not None:
            return self.enabled
        required = capabilities.carrier_compliance
        return capabilities.sms if required is None else required

    def classify(self, text: str) -> Keyword | None:
        """Which keyword the whole message is, if any (checked in the order stop, start, help)."""
        word = normalize(text)
        if not word or len(word) > 64:
            return None
        for kind, words in (("stop", self.stop_keywords), ("start", self.start_keywords), ("help", self.help_keywords)):
            if word in words:
                return kind  # type: ignore[return-value]
        return None


def config_of(sender_config: dict[str, Any]) -> OptOutConfig:
    """The opt-out settings stored on a sender (validated when it was saved)."""
    return OptOutConfig.model_validate(sender_config.get("opt_out") or {})


def validate(sender_config: dict[str, Any]) -> dict[str, Any]:
    """Check `config.opt_out` when a sender is saved; return the config with it normalized."""
    return config_section(sender_config, "opt_out", OptOutConfig, exclude_unset=True)


_settings = Derived()


def settings_for(sender: Sender, capabilities: Capabilities) -> OptOutConfig | None:
    """The sender's opt-out settings, or None when it handles no keywords."""
    settings = _settings.get((sender.id, sender.updated_at), lambda: config_of(sender.config))
    return settings if settings.active(capabilities) else None


@dataclass
class Outcome:
    """What an MO is, for opt-out purposes, and what it did."""

    keyword: Keyword | None = None
    # The contact opted out or in with this message (a repeated STOP changes nothing).
    changed: bool = False
    # The text to answer with, sent even to a contact who opted out.
    answer: str | None = None
    # Set when the MO must not reach the bot: why.
    stop_reason: str | None = None


async def before_bot(store: Store, sender: Sender, message: InboundMessage, settings: OptOutConfig) -> Outcome:
    """Act on an MO before the bot: record an opt-out or opt-in, answer HELP, hold back a contact who opted out.

    STOP answers once (a second STOP while opted out is not answered again);
    START answers only a contact who had opted out (otherwise the word is the
    bot's); HELP is answered whatever the state. Anything else from a contact
    who opted out goes no further than the history: they opt in with START.
    """
    keyword = settings.classify(message.text) if not message.media and not message.postback else None
    if keyword == "stop":
        word = normalize(message.text)
        record = OptOut(account_id=sender.account_id, sender_id=sender.id, contact=message.contact, keyword=word)
        changed = await store.put_opt_out(record)
        return Outcome(keyword, changed, settings.stop_text if changed else None, "an opt-out keyword")
    if keyword == "help":
        return Outcome(keyword, False, settings.help_text, "a help keyword")
    opted_out = await store.get_opt_out(sender.id, message.contact)
    if keyword == "start" and opted_out is not None:
        changed = await store.delete_opt_out(sender.id, message.contact)
        return Outcome(keyword, changed, settings.start_text, "an opt-in keyword")
    if opted_out is not None:
        return Outcome(None, False, None, SUPPRESSED_REASON)
    return Outcome()


async def answered(
    records: Records, sender: Sender, message: InboundMessage, outcome: Outcome, writes: Writes
) -> list[Job]:
    """An MO `before_bot` kept from the bot: its events, its answer, its place in the timeline."""
    jobs: list[Job] = []
    if outcome.changed:
        kind = "contact_opted_out" if outcome.keyword == "stop" else "contact_opted_in"
        fields = contact_fields(sender, message.contact, normalize(message.text), message.id)
        jobs += await records.event(sender.account_id, make_event(kind, fields, records.now()), writes)
        logger.info("%s %s of sender %s", mask(message.contact), kind.removeprefix("contact_"), sender.id)
    if outcome.keyword is None:
        dropped = {**mo_fields(message, sender), "reason_description": outcome.stop_reason}
        jobs += await records.event(sender.account_id, make_event("mo_message_dropped", dropped, records.now()), writes)
    conversation = await records.host.store.get_conversation(sender.id, message.contact)
    if conversation is not None and conversation.account_id:
        writes.add_history(records.mo_entry(conversation, message))
    if outcome.answer:
        reply = OutboundMessage(
            account_id=sender.account_id,
            origin="opt_out",
            sender_id=sender.id,
            contact=message.contact,
            text=outcome.answer,
            conversation_id=conversation.id if conversation is not None else None,
        )
        jobs.append(records.outbound(sender, reply, writes))
    return jobs


async def suppressed(store: Store, sender: Sender, message: OutboundMessage, capabilities: Capabilities) -> bool:
    """Whether an MT must not go out: its contact opted out of its sender (confirmations excepted)."""
    if message.origin in EXEMPT_ORIGINS or settings_for(sender, capabilities) is None:
        return False
    return await store.get_opt_out(sender.id, message.contact) is not None


__all__ = [
    "DEFAULT_HELP",
    "DEFAULT_START",
    "DEFAULT_STOP",
    "EXEMPT_ORIGINS",
    "SUPPRESSED_CODE",
    "SUPPRESSED_REASON",
    "Keyword",
    "OptOutConfig",
    "Outcome",
    "answered",
    "before_bot",
    "config_of",
    "normalize",
    "settings_for",
    "suppressed",
    "validate",
]
