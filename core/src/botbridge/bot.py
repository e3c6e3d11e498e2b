"""What a bot backend plugin implements: open, send into, close a conversation.

A bot plugin registers a `BotBackend` subclass through the
`register_bot_backends` hook, under its connector type (e.g. `AMAZON_LEX`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from botbridge.clock import Clock
from botbridge.errors import ProviderError
from botbridge.models import Connector, Conversation, InboundMessage, Reply

LateReplies = Callable[[list[Reply]], Awaitable[None]]


async def _drop_late(replies: list[Reply]) -> None:
    return None


@dataclass
class BotSession:
    """One conversation as a bot backend sees it.

    `state` is the backend's own per-conversation state (ids, tokens,
    watermarks, session attributes): core persists it after every call and
    never reads it. `deliver_late` hands replies that arrive after `send`
    returned (a bot that thinks, a proactive message) back to core.
    """

    connector: Connector
    credentials: str
    conversation: Conversation
    deliver_late: LateReplies = _drop_late

    @property
    def state(self) -> dict[str, Any]:
        return self.conversation.backend_state

    @property
    def config(self) -> dict[str, Any]:
        return self.connector.config

    @property
    def conversation_id(self) -> str:
        return self.conversation.id

    @property
    def contact(self) -> str:
        return self.conversation.contact


class BotBackend:
    """Base class of bot backend plugins."""

    type: ClassVar[str]
    description: ClassVar[str] = ""
    # Whether `send` passes an MO's media to the bot (Direct Line attachments). A
    # text-only backend gets a description of them in the text instead ("[image]",
    # or the connector's `media_text`).
    accepts_media: ClassVar[bool] = False

    def __init__(self, http: httpx.AsyncClient, clock: Clock) -> None:
        self.http = http
        self.clock = clock

    def validate_credentials(self, credentials: str, config: dict[str, Any]) -> None:
        """Check a connector's credentials and config at create/update.

        Raise `ConfigInvalid(field, message)`, e.g. `ConfigInvalid("credentials.region", ...)`.
        Never include the secret itself in the message.
        """

    async def open(self, session: BotSession) -> None:
        """Start a backend session for a new conversation (fill `session.state`)."""

    async def send(self, session: BotSession, message: InboundMessage) -> list[Reply]:
        """Send the user's message; return the replies available now.

        Raise `BotCredentialsInvalid` on 401/403, `BotError(retryable=...)`
        otherwise; set `outcome_unknown=True` when the bot may have received
        the turn (core then never sends it again).
        """
        raise NotImplementedError

    def safe_to_retry(self, error: BaseException) -> bool:
        """Whether core may run the same turn again after `send` failed with `error`.

        A turn is not idempotent (the bot answers it, session state moves
        on): only a failure proving the bot never got it is repeated. A turn
        cut off by core's `bot_timeout` may have reached the bot, so it is not.
        """
        return isinstance(error, ProviderError) and error.safe_to_retry

    async def close(self, session: BotSession) -> None:
        """End the backend session (the conversation timed out)."""

    def session_id(self, state: dict[str, Any]) -> str | None:
        """The backend's own id of a session, from its `session.state` (shown in history; never a token).

        The default finds `session_id` or `conversation_id`, as botbridge's plugins keep them.
        """
        return default_session_id(state)

    async def aclose(self) -> None:
        """Release what the instance holds (tasks, token caches)."""


def default_session_id(state: dict[str, Any]) -> str | None:
    found = state.get("session_id") or state.get("conversation_id")
    return str(found) if found else None
