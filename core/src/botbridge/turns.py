"""A bot's turn: the conversation it belongs to, the call, and what a failed call becomes.

`BotTurns.resolve` finds the contact's open conversation with the connector
or opens one (closing an expired one at the bot first). `BotTurns.answer`
asks the bot — the option the contact chose, media described for a bot that
takes text only, the connector's interim text sent if the bot is slow — and
turns its replies into MTs; a hand-off the bot asked for is recorded there.
A call that fails is retried only when the backend says the bot cannot have
seen it (`BotBackend.safe_to_retry`); otherwise the contact gets the
connector's fallback text. A connector whose bot fails again and again is
not called for a while (the breaker), so its turns do not hold the workers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from botbridge import handoff
from botbridge.bot import BotBackend, BotSession, LateReplies
from botbridge.errors import BotCredentialsInvalid, BotError, ProviderError, StoreError, tenant_reason, tenant_text
from botbridge.events import make_event, mo_fields
from botbridge.logs import mask
from botbridge.models import Connector, Conversation, InboundMessage, Job, OutboundMessage, Reply, Sender, utcnow
from botbridge.render import describe_media, match_option
from botbridge.steps import EngineSettings, Records, Retry
from botbridge.store import Writes

logger = logging.getLogger("botbridge.turns")

DEFAULT_INTERIM_AFTER = 3.0  # seconds a bot may take before a connector's interim_text goes out

# Sends an MT now, from the job at hand (the interim text cannot wait for the turn to end).
SendNow = Callable[[Job, Writes], Awaitable[list[Job]]]
# Wakes workers for jobs queued outside a job's completion (a late reply's).
Wake = Callable[[list[Job]], None]


class CircuitOpen(BotError):
    """The connector's bot failed repeatedly; it is not called until the circuit closes."""


@dataclass
class Breaker:
    failures: int = 0
    open_until: float = 0.0
    reason: str = ""


class BotTurns:
    def __init__(self, records: Records, settings: EngineSettings, send_now: SendNow, wake: Wake) -> None:
        self.records = records
        self.settings = settings
        self.send_now = send_now
        self.wake = wake
        self.breakers: dict[str, Breaker] = {}

    def check(self, connector: Connector) -> None:
        """Raise what the bot would, without calling it, when it is known to fail now."""
        if connector.state == "credentials_invalid":
            raise BotCredentialsInvalid(connector.state_reason or "the bot refused the connector's credentials")
        breaker = self.breakers.get(connector.id)
        if breaker is not None and breaker.open_until > self.records.now():
            raise CircuitOpen(f"bot unavailable ({breaker.reason}); not called for a few seconds")

    async def resolve(
        self, sender: Sender, connector: Connector, message: InboundMessage, bot: BotBackend, writes: Writes
    ) -> Conversation:
        """The contact's conversation with this connector: the open one, or a new one opened at the bot."""
        records, host = self.records, self.records.host
        now = records.now()
        conversation = await host.store.get_conversation(sender.id, message.contact)
        timeout = connector.settings.conversation_timeout
        if (
            conversation is not None
            and conversation.connector_id == connector.id
            and not conversation.expired(now, timeout)
        ):
            conversation.account_id = conversation.account_id or sender.account_id
            return conversation
        if conversation is not None and conversation.state == "open":
            conversation.state, conversation.closed_at = "closed", now
            conversation.account_id = conversation.account_id or sender.account_id
            records.conversation(writes, conversation)
            writes.add_history(records.entry(conversation, "conversation_closed", {"reason": "expired"}))
            host.metrics.conversations_expired.labels(connector.type).inc()
            try:
                await bot.close(host.bot_session(connector, conversation))
            except Exception:
                logger.warning("closing conversation %s at the bot failed", conversation.id, exc_info=True)
        fresh = Conversation(
            account_id=sender.account_id,
            sender_id=sender.id,
            contact=message.contact,
            connector_id=connector.id,
            opened_at=now,
            last_mo_at=now,
            timeout=timeout,
        )
        await bot.open(host.bot_session(connector, fresh))
        records.conversation(writes, fresh)
        writes.add_history(records.entry(fresh, "conversation_opened", {"connector_id": connector.id}))
        host.metrics.conversations_opened.labels(connector.type).inc()
        logger.info("conversation %s opened with %s", fresh.id, mask(message.contact))
        return fresh

    async def answer(
        self,
        job: Job,
        sender: Sender,
        connector: Connector,
        bot: BotBackend,
        conversation: Conversation,
        message: InboundMessage,
        writes: Writes,
    ) -> list[Job]:
        """The bot's turn: ask it (the option chosen, media described for a text-only bot), queue its replies."""
        records, host = self.records, self.records.host
        choice = match_option(message.text, conversation.options) if not message.postback else None
        bot_message = message if bot.accepts_media else describe_media(message, connector.settings.media_text)
        if message.postback:
            bot_message = message.model_copy(update={"text": message.postback})
        elif choice is not None:
            bot_message = message.model_copy(update={"text": choice.value, "postback": choice.value})
        made: list[Job] = []  # what sending the interim text made (its events)
        started = time.perf_counter()
        try:
            session = host.bot_session(connector, conversation, self.late_replies(sender, connector, conversation))
            replies = await self._ask(bot, session, bot_message, sender, connector, conversation, writes, made)
        except (BotError, ProviderError, TimeoutError) as exc:
            return made + await self.failed(job, exc, bot, sender, connector, conversation, message, writes)
        finally:
            host.metrics.bot_latency.labels(connector.type).observe(time.perf_counter() - started)
        self.breakers.pop(connector.id, None)
        conversation.last_mo_at = records.now()
        conversation.timeout = connector.settings.conversation_timeout
        # A number answers the turn's options, numbered on across its replies (a carousel's cards)
        conversation.options = [option for reply in replies for option in reply.options]
        if handoff.asked_by_bot(replies) and handoff.hand_off(conversation, records.now(), "bot"):
            made += await handoff.handed_off(records, sender, conversation, "bot", writes)
        records.conversation(writes, conversation)
        return made + records.replies(sender, connector, conversation, replies, writes)

    async def _ask(
        self,
        bot: BotBackend,
        session: BotSession,
        message: InboundMessage,
        sender: Sender,
        connector: Connector,
        conversation: Conversation,
        writes: Writes,
        made: list[Job],
    ) -> list[Reply]:
        """The bot's answer to a turn; the connector's interim text goes out if it is slow to come."""
        text, after = connector.settings.interim_text, connector.settings.interim_after or DEFAULT_INTERIM_AFTER
        if not text:
            return await asyncio.wait_for(bot.send(session, message), self.settings.bot_timeout)
        call = asyncio.ensure_future(asyncio.wait_for(bot.send(session, message), self.settings.bot_timeout))
        timer = asyncio.ensure_future(self.records.host.clock.sleep(after))
        try:
            await asyncio.wait({call, timer}, return_when=asyncio.FIRST_COMPLETED)
            if not call.done():
                made += await self._send_interim(sender, connector, conversation, text, writes)
            return await call
        finally:
            timer.cancel()
            call.cancel()  # only if the turn itself was cancelled: otherwise it is done

    async def _send_interim(
        self, sender: Sender, connector: Connector, conversation: Conversation, text: str, writes: Writes
    ) -> list[Job]:
        """Send the interim text now, from the turn's job (a queued MT would wait for the turn to end)."""
        message = OutboundMessage(
            account_id=sender.account_id,
            origin="interim",
            sender_id=sender.id,
            contact=conversation.contact,
            text=text,
            connector_id=connector.id,
            conversation_id=conversation.id,
        )
        job = self.records.outbound(sender, message, writes)
        try:
            return await self.send_now(job, writes)
        except Exception as exc:  # Retry included: the turn goes on, without its interim text
            logger.warning("interim text of MT %s not sent: %s", message.id, tenant_reason(exc))
            return await self.records.transition(
                sender, message, "FAILED", "interim_not_sent", str(exc), writes=writes, request_level=True
            )

    def late_replies(self, sender: Sender, connector: Connector, conversation: Conversation) -> LateReplies:
        """Where a bot's replies that come after its turn ended go: written and queued like the turn's."""
        records, store = self.records, self.records.host.store

        async def deliver(replies: list[Reply]) -> None:
            writes = Writes()
            jobs = records.replies(sender, connector, conversation, replies, writes)
            if jobs:
                await store.write(writes)
                await store.enqueue(jobs)
                self.wake(jobs)

        return deliver

    async def failed(
        self,
        job: Job,
        exc: BaseException,
        bot: BotBackend,
        sender: Sender,
        connector: Connector,
        conversation: Conversation,
        message: InboundMessage,
        writes: Writes,
    ) -> list[Job]:
        """A turn the bot failed: retried when the backend says that is safe, else the fallback text."""
        records = self.records
        records.host.metrics.bot_errors.labels(connector.type).inc()
        self._count_failure(connector, exc)
        reason = tenant_reason(exc)
        if isinstance(exc, BotCredentialsInvalid):
            await self._mark_connector(connector, "credentials_invalid", reason)
        elif bot.safe_to_retry(exc) and job.attempts + 1 < self.settings.bot_attempts:
            # A turn the bot may have received is never sent again: that is
            # how a bot ends up answering twice.
            raise Retry(f"bot: {reason}", getattr(exc, "retry_after", None) or self.settings.backoff(job.attempts))
        logger.warning("bot %s failed for MO %s: %s", connector.type, message.id, reason)
        if conversation.state == "open":
            records.conversation(writes, conversation)
            writes.add_history(records.entry(conversation, "bot_error", {"reason": reason}))
        fields = {**mo_fields(message, sender), "connector_id": connector.id, "reason_description": reason}
        jobs = await records.event(sender.account_id, make_event("bot_error", fields, records.now()), writes)
        fallback = connector.settings.fallback_text
        if fallback:
            jobs += records.replies(sender, connector, conversation, [Reply(text=fallback)], writes, origin="fallback")
        return jobs

    def _count_failure(self, connector: Connector, exc: BaseException) -> None:
        if isinstance(exc, CircuitOpen | BotCredentialsInvalid):
            return
        breaker = self.breakers.setdefault(connector.id, Breaker())
        breaker.failures += 1
        breaker.reason = tenant_reason(exc)
        over = breaker.failures - self.settings.breaker_threshold
        if over >= 0:
            pause = min(self.settings.breaker_cap, self.settings.breaker_open * 2 ** min(over, 20))
            breaker.open_until = self.records.now() + pause
            logger.warning(
                "bot of connector %s failed %d times in a row: not called for %.0f s",
                connector.id,
                breaker.failures,
                pause,
            )

    async def _mark_connector(self, connector: Connector, state: str, reason: str) -> None:
        host = self.records.host
        for _ in range(3):
            current = await host.store.get_connector(connector.id)
            if current is None or (current.state, current.state_reason) == (state, reason):
                return
            current.state, current.state_reason, current.updated_at = state, tenant_text(reason), utcnow()
            try:
                await host.store.update_connector(current, expected_version=current.version_number)
                host.cache.clear()
                connector.state = state
                return
            except StoreError:
                logger.info("connector %s changed while marking it %s; reading it again", connector.id, state)


__all__ = ["DEFAULT_INTERIM_AFTER", "BotTurns", "Breaker", "CircuitOpen", "SendNow", "Wake"]
