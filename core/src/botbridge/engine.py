"""The conversation engine: durable accept, workers, MO → bot → MT, events.

Everything a webhook carried is written to the store's job queue before the
provider gets its 2xx. Workers lease jobs; a job's `key` serializes the
work of one conversation (its turns and replies run one at a time, in
arrival order) while different conversations run in parallel. Follow-up
work (replies to send, events to deliver) is added in the same atomic step
that completes a job, so a crash at any point loses nothing: unfinished jobs
run again after a restart (at-least-once; see the README for where a
duplicate can still happen).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx

from botbridge import coalescing, handoff, optout, shaping
from botbridge.bot import BotBackend, BotSession, LateReplies
from botbridge.broadcast import Broadcast
from botbridge.cache import ReadCache
from botbridge.channel import Capabilities, Channel, SenderContext, WebhookResult
from botbridge.clock import Clock
from botbridge.crypto import SecretBox
from botbridge.errors import (
    BotCredentialsInvalid,
    BotError,
    CredentialsInvalid,
    ProviderError,
    StoreError,
    StoreUnavailable,
    tenant_reason,
    tenant_text,
)
from botbridge.events import (
    contact_fields,
    conversation_fields,
    delivery_body,
    make_event,
    mo_fields,
    state_fields,
)
from botbridge.http import OutboundRefused
from botbridge.ids import new_id
from botbridge.logs import correlation_id, mask
from botbridge.metrics import Metrics
from botbridge.models import (
    STATE_RANK,
    Connector,
    Conversation,
    DeliveryReport,
    EventFailure,
    HistoryEntry,
    HistoryKind,
    InboundMessage,
    Job,
    OutboundMessage,
    Reply,
    Sender,
    SendResult,
    StateChange,
    StreamItem,
    from_epoch,
    utcnow,
)
from botbridge.outbound import OutboundPolicy, UnsafeURL
from botbridge.render import as_text, describe_media, match_option
from botbridge.signing import standard_webhook_headers
from botbridge.store import Store, Take, Writes, conversation_key
from botbridge.store_waits import StoreWaits

logger = logging.getLogger("botbridge.engine")
T = TypeVar("T")

DEDUPE_TTL = 7 * 86400.0  # providers retry for hours; remember ids for a week
# "conversation": an operator's change to a conversation (hand-off, resume), in line with its turns
MESSAGE_KINDS = ("mo", "mt", "dr", "conversation")
DEFAULT_INTERIM_AFTER = 3.0  # seconds a bot may take before a connector's interim_text goes out
EVENT_KINDS = ("event",)


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


class CircuitOpen(BotError):
    """The connector's bot failed repeatedly; it is not called until the circuit closes."""


@dataclass
class Breaker:
    failures: int = 0
    open_until: float = 0.0
    reason: str = ""


def mo_history(message: InboundMessage) -> dict[str, Any]:
    """What a conversation's timeline keeps of an MO."""
    return {
        "message_id": message.id,
        "text": message.text,
        "media": [m.model_dump(mode="json") for m in message.media],
        "postback": message.postback,
        "provider_message_id": message.provider_message_id,
    }


def _jittered(delay: float) -> float:
    return delay / 2 + random.uniform(0, delay / 2)


@dataclass
class Taken:
    """A job a worker runs next without claiming it, with the records written as it was leased."""

    job: Job
    written: Writes | None = None


class Retry(Exception):
    def __init__(self, reason: str, delay: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


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


class Engine:
    def __init__(self, runtime: Host, settings: EngineSettings | None = None) -> None:
        self.rt = runtime
        self.settings = settings or EngineSettings()
        self._tasks: list[asyncio.Task[None]] = []
        # One token per runnable job, so a new job wakes one idle worker, not all of them.
        self._tokens: dict[str, asyncio.Queue[None]] = {"message": asyncio.Queue(), "event": asyncio.Queue()}
        self._stopping = False
        self._breakers: dict[str, Breaker] = {}
        self.store_waits = StoreWaits()
        self.workers_restarted = 0

    @property
    def store(self) -> Store:
        return self.rt.store

    @property
    def clock(self) -> Clock:
        return self.rt.clock

    # --- lifecycle ---

    async def start(self) -> None:
        if not self.store.shared:
            released = await self.store.release_leases()
            if released:
                logger.info("resuming %d jobs left unfinished by the last run", released)
        self._stopping = False
        self.store.watch(lambda lane, jobs: self.wake(jobs, lane))
        self._tasks = [
            *(self._start_worker(MESSAGE_KINDS, f"worker-{i}") for i in range(self.settings.workers)),
            *(self._start_worker(EVENT_KINDS, f"events-{i}") for i in range(self.settings.event_workers)),
        ]

    def _start_worker(self, kinds: tuple[str, ...], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(self._work(kinds), name=name)
        task.add_done_callback(lambda done: self._worker_ended(done, kinds))
        return task

    def _worker_ended(self, task: asyncio.Task[None], kinds: tuple[str, ...]) -> None:
        # `_work` catches everything; this is the last line should a bug let something through.
        if self._stopping or task.cancelled() or task not in self._tasks:
            return
        logger.error("worker %s ended (%r); starting it again", task.get_name(), task.exception())
        self.workers_restarted += 1
        self._tasks[self._tasks.index(task)] = self._start_worker(kinds, task.get_name())

    def problems(self) -> list[str]:
        """Why workers cannot do their work right now (for /readyz); empty when they can."""
        found = []
        if self._tasks and not self._stopping:
            ended = sum(1 for task in self._tasks if task.done())
            if ended:
                found.append(f"{ended} of {len(self._tasks)} workers are not running")
        waiting = self.store_waits.problem()
        if waiting:
            found.append(waiting)
        return found

    async def stop(self) -> None:
        self._stopping = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def wake(self, jobs: int = 1, lane: str = "message") -> None:
        tokens = self._tokens[lane]
        room = (self.settings.workers if lane == "message" else self.settings.event_workers) - tokens.qsize()
        for _ in range(min(jobs, room)):
            tokens.put_nowait(None)

    def _wake_for(self, jobs: Sequence[Job]) -> None:
        events = sum(1 for job in jobs if job.kind == "event")
        if events:
            self.wake(events, "event")
        if len(jobs) > events:
            self.wake(len(jobs) - events, "message")

    async def idle(self) -> None:
        """Return when the queue is empty (tests and the demo wrap it in a timeout)."""
        while await self.store.queue_depth():  # noqa: ASYNC110 - the queue may live in another process
            await asyncio.sleep(0.01)

    # --- accept (the webhook's side) ---

    async def accept(self, sender: Sender, result: WebhookResult) -> dict[str, int]:
        """Durably queue what a verified webhook carried; duplicates are counted, not refused."""
        accepted = duplicates = 0
        metrics = self.rt.metrics
        # What came through a sender's webhook belongs to that sender, whatever
        # a plugin put in the records, unless it names a sender that receives
        # through this webhook (same account and channel, config.webhook_via):
        # tenancy is core's to enforce.
        named = {m.sender_id for m in result.messages} | {r.sender_id for r in result.reports}
        siblings = {s.id: s for s in await self.rt.webhook_siblings(sender)} if named - {sender.id} else {}

        def owner(sender_id: str) -> Sender:
            return siblings.get(sender_id, sender)

        messages = [
            m if owner(m.sender_id).id == m.sender_id else m.model_copy(update={"sender_id": sender.id})
            for m in result.messages
        ]
        reports = [
            r if owner(r.sender_id).id == r.sender_id else r.model_copy(update={"sender_id": sender.id})
            for r in result.reports
        ]
        for message in messages:
            target = owner(message.sender_id)
            job = Job(
                kind="mo",
                key=conversation_key(target.id, message.contact),
                payload={"message": message.model_dump(mode="json"), "event_id": new_id()},
            )
            if await self.store.enqueue([job], dedupe_key=message.dedupe_key, dedupe_ttl=DEDUPE_TTL):
                accepted += 1
                metrics.mo_accepted.labels(target.channel).inc()
                self.rt.notify("on_inbound_message", message=message, sender=target)
            else:
                duplicates += 1
                metrics.mo_duplicates.labels(target.channel).inc()
        for report in reports:
            target = owner(report.sender_id)
            job = Job(
                kind="dr",
                key=f"dr:{target.id}:{report.provider_message_id}",
                payload=report.model_dump(mode="json"),
            )
            if await self.store.enqueue([job], dedupe_key=report.dedupe_key, dedupe_ttl=DEDUPE_TTL):
                accepted += 1
                self.rt.notify("on_delivery_report", report=report, sender=target)
            else:
                duplicates += 1
        changed_config = {k: v for k, v in result.sender_config.items() if sender.config.get(k) != v}
        if changed_config or (result.sender_state and result.sender_state != sender.state):
            sender.config = {**sender.config, **changed_config}
            if result.sender_state:
                reason = result.sender_state_reason
                sender.state, sender.state_reason = result.sender_state, tenant_text(reason) if reason else reason
            sender.updated_at = utcnow()
            await self.store.update_sender(sender)
            self.rt.cache.clear()
        if accepted:
            self.wake(accepted)
        return {"accepted": accepted, "duplicates": duplicates}

    async def send_message(self, sender: Sender, message: OutboundMessage) -> OutboundMessage:
        """Queue an outbound message that did not come from a bot (the REST API)."""
        await self.store.put_outbound(message, sender.channel)
        await self.store.enqueue([self._mt_job(sender, message)])
        self.wake()
        return message

    async def announce(self, account_id: str, event: Any) -> None:
        """Publish an event no job made (an operator's change through the API): subscribers and the live stream."""
        writes = Writes()
        jobs = await self._event_jobs(account_id, event, writes)
        await self.store.write(writes)
        if jobs:
            await self.store.enqueue(jobs)
            self._wake_for(jobs)
        self.rt.stream_broadcast.notify()

    # --- workers ---

    async def _work(self, kinds: tuple[str, ...]) -> None:
        tokens = self._tokens["event" if kinds == EVENT_KINDS else "message"]
        delay = self.settings.store_backoff
        while not self._stopping:
            try:
                jobs = await self.store.claim_jobs(kinds, limit=1, lease=self.settings.lease)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.store_waits.failed("claiming work", exc)
                await asyncio.sleep(_jittered(delay))
                delay = min(self.settings.store_backoff_cap, delay * 2)
                continue
            delay = self.settings.store_backoff
            self.store_waits.answered()
            if not jobs:
                # Sleep until a local enqueue hands over a token, or poll: other
                # hosts and delayed retries add work nobody here announces.
                try:
                    await asyncio.wait_for(tokens.get(), self.settings.poll_interval)
                except TimeoutError:
                    pass
                continue
            for claimed in jobs:
                next_up: Taken | None = Taken(claimed)
                while next_up is not None:  # a job's follow-up the store leased to this worker runs next
                    running = next_up.job
                    try:
                        next_up = await self._run(running, next_up.written)
                    except asyncio.CancelledError:
                        raise
                    except Exception:  # `_run` settles every outcome; a worker outlives even its bugs
                        logger.exception("%s job %s: unexpected error settling it", running.kind, running.id)
                        next_up = None

    async def _run(self, job: Job, written: Writes | None = None) -> Taken | None:
        """Run a job and record its outcome; return a follow-up leased to this worker, if any.

        `written`: the records written in the step that leased `job`, current
        while it is leased (an MT needs not read back the message it sends).
        """
        handlers: dict[str, Callable[[Job, Writes], Awaitable[list[Job]]]] = {
            "mo": self._mo,
            "mt": functools.partial(self._mt, written=written),
            "dr": self._dr,
            "event": self._event,
            "conversation": self._conversation_action,
        }
        handler = handlers[job.kind]
        token = correlation_id.set(job.payload.get("correlation_id") or job.id)
        # What the job did to its records (a session opened, a message sent) is
        # written however it ends: a rerun must start from what happened.
        writes = Writes()
        try:
            try:
                follow_ups = await handler(job, writes)
            except Retry as retry:
                logger.info("%s job %s will retry in %.1fs: %s", job.kind, job.id, retry.delay, retry.reason)
                not_before, reason = self.clock.now() + retry.delay, retry.reason
                await self._settle(
                    "retrying a job", lambda: self._retry(job, writes, not_before=not_before, error=reason)
                )
            except StoreUnavailable as exc:
                # The store failed mid-job: not the job's fault, and not one of its
                # attempts (retry_job counts one, so it gets the count before this
                # try). Its own count of put-backs keeps a job that always meets a
                # store error from coming back without a pause.
                logger.warning("%s job %s put back: %s", job.kind, job.id, exc)
                putbacks = job.payload.get("store_putbacks", 0)
                job.payload["store_putbacks"] = putbacks + 1
                uncounted = job.model_copy(update={"attempts": job.attempts - 1})
                soon, why = self.clock.now() + self.settings.backoff(putbacks), str(exc)[:300]
                await self._settle(
                    "putting back a job", lambda: self._retry(uncounted, writes, not_before=soon, error=why)
                )
            except Exception as exc:
                # A bug (ours or a plugin's): accepted work is never dropped. It is
                # retried with a backoff that grows to `backoff_cap`, and logged
                # each time, until a fix makes it pass.
                logger.exception("%s job %s failed (attempt %d)", job.kind, job.id, job.attempts + 1)
                self.rt.metrics.job_errors.labels(job.kind).inc()
                later, why = self.clock.now() + self.settings.backoff(job.attempts), repr(exc)[:300]
                await self._settle("retrying a job", lambda: self._retry(job, writes, not_before=later, error=why))
            else:
                # The reply a turn makes is leased to the worker that made it and sent at once.
                take = Take(MESSAGE_KINDS, self.settings.lease) if job.kind in MESSAGE_KINDS else None
                take = None if self._stopping else take
                taken = await self._settle(
                    "completing a job",
                    lambda: self.store.finish_job(job, then=follow_ups, writes=writes, take=take),
                )
                if writes.stream:
                    self.rt.stream_broadcast.notify()
                self._wake_for([j for j in follow_ups if taken is None or j.id != taken.id])
                return Taken(taken, writes) if taken is not None else None
        finally:
            correlation_id.reset(token)
        return None

    async def _retry(self, job: Job, writes: Writes, *, not_before: float, error: str) -> None:
        if writes:
            await self.store.write(writes)
        await self.store.retry_job(job, not_before=not_before, error=error)

    async def _settle(self, what: str, write: Callable[[], Awaitable[T]]) -> T | None:
        """Record a job's outcome, waiting out a failing store (bounded backoff) until it is written.

        The work is done (a bot answered, a message went out): doing it again
        because the store blinked would be the duplicate, so the write is what
        gets retried. Given up only when the host stops; the job's lease then
        brings it back.
        """
        delay = self.settings.store_backoff
        while True:
            try:
                done = await write()
                self.store_waits.answered()
                return done
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.store_waits.failed(what, exc)
                if self._stopping:
                    return None
                await asyncio.sleep(_jittered(delay))
                delay = min(self.settings.store_backoff_cap, delay * 2)

    # --- MO: one turn of a conversation ---

    async def _mo(self, job: Job, writes: Writes) -> list[Job]:
        message = InboundMessage.model_validate(job.payload["message"])
        correlation_id.set(message.id)
        sender = await self.rt.cache.sender(message.sender_id)
        if sender is None:
            logger.warning("MO %s for a deleted sender dropped", message.id)
            return []
        mo_event = make_event(
            "mo_message_received", mo_fields(message, sender), self.clock.now(), job.payload.get("event_id")
        )
        events = await self._event_jobs(sender.account_id, mo_event, writes, first_attempt=job.attempts == 0)
        keywords = optout.settings_for(sender, self.rt.capabilities(sender))
        if keywords is not None:  # before the bot: STOP, START, HELP
            outcome = await optout.before_bot(self.store, sender, message, keywords)
            if outcome.stop_reason is not None:
                return events + await self._opt_out_answered(sender, message, outcome, writes)
        connector = await self.rt.cache.connector_for_sender(sender.id)
        if connector is None:
            dropped = make_event(
                "mo_message_dropped",
                {**mo_fields(message, sender), "reason_description": "no connector is bound to this sender"},
                self.clock.now(),
            )
            logger.info("MO %s from %s dropped: no connector", message.id, mask(message.contact))
            return events + await self._event_jobs(sender.account_id, dropped, writes)
        bot = self.rt.bot(connector.type)
        # Until a backend session exists, a failure is answered on a conversation that is never stored.
        placeholder = Conversation(
            account_id=sender.account_id,
            sender_id=sender.id,
            contact=message.contact,
            connector_id=connector.id,
            state="closed",
            opened_at=self.clock.now(),
            last_mo_at=self.clock.now(),
        )
        try:
            self._check_bot(connector)
            conversation = await self._resolve(sender, connector, message, bot, writes)
        except (BotError, ProviderError, TimeoutError) as exc:
            return events + await self._bot_error(job, exc, bot, sender, connector, placeholder, message, writes)
        # keyed by the MO's id: a turn run again (a retry) is in the timeline once
        writes.add_history(self._entry(conversation, "mo", mo_history(message), entry_id=message.id))
        if conversation.handoff_at is not None:
            turn = handoff.route(conversation, connector, message, self.clock.now())
            if turn.resumed is None:
                return events + await self._for_agent(sender, connector, conversation, message, writes)
            events += await self._resumed(sender, connector, conversation, turn.resumed, writes)
            if turn.resumed == "keyword":
                return events
        window = connector.settings.coalesce_window
        if window and coalescing.joins(message, conversation):
            timer = coalescing.hold(conversation, message, self.clock.now(), window)
            self._put_conversation(writes, conversation)
            return [*events, timer]
        return events + await self._answer(job, sender, connector, bot, conversation, message, writes)

    def _check_bot(self, connector: Connector) -> None:
        """Raise what the bot would, without calling it, when it is known to fail now."""
        if connector.state == "credentials_invalid":
            raise BotCredentialsInvalid(connector.state_reason or "the bot refused the connector's credentials")
        breaker = self._breakers.get(connector.id)
        if breaker is not None and breaker.open_until > self.clock.now():
            raise CircuitOpen(f"bot unavailable ({breaker.reason}); not called for a few seconds")

    async def _answer(
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
        choice = match_option(message.text, conversation.options) if not message.postback else None
        bot_message = message if bot.accepts_media else describe_media(message, connector.settings.media_text)
        if message.postback:
            bot_message = message.model_copy(update={"text": message.postback})
        elif choice is not None:
            bot_message = message.model_copy(update={"text": choice.value, "postback": choice.value})
        interim: list[Job] = []  # what sending the interim text made (its events)
        started = time.perf_counter()
        try:
            late = self._late_replies(sender, connector, conversation)
            session = self.rt.bot_session(connector, conversation, late)
            replies = await self._ask(bot, session, bot_message, sender, connector, conversation, writes, interim)
        except (BotError, ProviderError, TimeoutError) as exc:
            return interim + await self._bot_error(job, exc, bot, sender, connector, conversation, message, writes)
        finally:
            self.rt.metrics.bot_latency.labels(connector.type).observe(time.perf_counter() - started)
        self._breakers.pop(connector.id, None)
        conversation.last_mo_at = self.clock.now()
        conversation.timeout = connector.settings.conversation_timeout
        # A number answers the turn's options, numbered on across its replies (a carousel's cards)
        conversation.options = [option for reply in replies for option in reply.options]
        if handoff.asked_by_bot(replies) and handoff.hand_off(conversation, self.clock.now(), "bot"):
            interim += await self._handed_off(sender, conversation, "bot", writes)
        self._put_conversation(writes, conversation)
        return interim + await self._replies(sender, connector, conversation, replies, writes)

    async def _flush(self, job: Job, sender: Sender, conversation: Conversation, writes: Writes) -> list[Job]:
        """The held MOs of a conversation whose window has closed: one bot turn."""
        connector = await self.rt.cache.connector(conversation.connector_id)
        if connector is None:
            return []
        message = coalescing.take(conversation)
        bot = self.rt.bot(connector.type)
        try:
            self._check_bot(connector)
        except BotError as exc:
            return await self._bot_error(job, exc, bot, sender, connector, conversation, message, writes)
        return await self._answer(job, sender, connector, bot, conversation, message, writes)

    # --- hand-off to a person ---

    async def _for_agent(
        self, sender: Sender, connector: Connector, conversation: Conversation, message: InboundMessage, writes: Writes
    ) -> list[Job]:
        """An MO of a handed-off conversation: published for the agent, the bot not called."""
        conversation.last_mo_at = self.clock.now()
        conversation.timeout = connector.settings.conversation_timeout
        self._put_conversation(writes, conversation)
        fields = {**mo_fields(message, sender), "conversation_id": conversation.id, "connector_id": connector.id}
        event = make_event("mo_waiting_for_agent", fields, self.clock.now())
        return await self._event_jobs(sender.account_id, event, writes)

    async def _handed_off(self, sender: Sender, conversation: Conversation, by: str, writes: Writes) -> list[Job]:
        writes.add_history(self._entry(conversation, "handoff", {"reason": by}))
        logger.info("conversation %s handed to a person (by %s)", conversation.id, by)
        event = make_event("conversation_handoff", conversation_fields(sender, conversation, by), self.clock.now())
        return await self._event_jobs(sender.account_id, event, writes)

    async def _resumed(
        self, sender: Sender, connector: Connector | None, conversation: Conversation, why: str, writes: Writes
    ) -> list[Job]:
        """Give a conversation back to the bot; after a timeout, tell the contact (the connector's text)."""
        handoff.resume(conversation)
        writes.add_history(self._entry(conversation, "resumed", {"reason": why}))
        self._put_conversation(writes, conversation)
        event = make_event("conversation_resumed", conversation_fields(sender, conversation, why), self.clock.now())
        jobs = await self._event_jobs(sender.account_id, event, writes)
        text = connector.settings.handoff_timeout_text if connector is not None else None
        if why == "timeout" and text and connector is not None:
            jobs += await self._replies(sender, connector, conversation, [Reply(text=text)], writes, origin="handoff")
        return jobs

    async def change_conversation(self, conversation: Conversation, action: str) -> None:
        """Queue an operator's hand-off or resume behind the conversation's turns (so no turn writes over it)."""
        job = Job(
            kind="conversation",
            key=conversation_key(conversation.sender_id, conversation.contact),
            payload={"conversation_id": conversation.id, "action": action, "correlation_id": conversation.id},
        )
        await self.store.enqueue([job])
        self.wake()

    async def _conversation_action(self, job: Job, writes: Writes) -> list[Job]:
        if job.payload["action"] == "timer":  # a coalescing window closed: flush behind the conversation's turns
            return [coalescing.flush_job(job)]
        stored = await self.store.get_conversation_by_id(job.payload["conversation_id"])
        current = await self.store.get_conversation(stored.sender_id, stored.contact) if stored else None
        sender = await self.rt.cache.sender(current.sender_id) if current else None
        if current is None or sender is None or current.id != job.payload["conversation_id"]:
            return []  # ended meanwhile: a new conversation starts with the bot
        if current.state != "open":
            return []
        if job.payload["action"] == "flush":
            return await self._flush(job, sender, current, writes) if coalescing.due(current, self.clock.now()) else []
        if job.payload["action"] == "handoff":
            if not handoff.hand_off(current, self.clock.now(), "api"):
                return []
            self._put_conversation(writes, current)
            return await self._handed_off(sender, current, "api", writes)
        if current.handoff_at is None:
            return []
        connector = await self.rt.cache.connector(current.connector_id)
        return await self._resumed(sender, connector, current, "api", writes)

    async def _agent_answered(self, message: OutboundMessage, writes: Writes) -> None:
        """An agent's message in a handed-off conversation restarts its hand-off timeout."""
        conversation = await self.store.get_conversation(message.sender_id, message.contact)
        if conversation is None or conversation.id != message.conversation_id or conversation.handoff_at is None:
            return
        conversation.agent_at = self.clock.now()
        self._put_conversation(writes, conversation)

    async def _ask(
        self,
        bot: BotBackend,
        session: BotSession,
        message: InboundMessage,
        sender: Sender,
        connector: Connector,
        conversation: Conversation,
        writes: Writes,
        interim: list[Job],
    ) -> list[Reply]:
        """The bot's answer to a turn; the connector's interim text goes out if it is slow to come."""
        text, after = connector.settings.interim_text, connector.settings.interim_after or DEFAULT_INTERIM_AFTER
        if not text:
            return await asyncio.wait_for(bot.send(session, message), self.settings.bot_timeout)
        call = asyncio.ensure_future(asyncio.wait_for(bot.send(session, message), self.settings.bot_timeout))
        timer = asyncio.ensure_future(self.clock.sleep(after))
        try:
            await asyncio.wait({call, timer}, return_when=asyncio.FIRST_COMPLETED)
            if not call.done():
                interim += await self._send_interim(sender, connector, conversation, text, writes)
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
        job = self._outbound(sender, message, writes)
        try:
            return await self._mt(job, writes, written=writes)
        except Exception as exc:  # Retry included: the turn goes on, without its interim text
            logger.warning("interim text of MT %s not sent: %s", message.id, tenant_reason(exc))
            return await self._transition(
                sender, message, "FAILED", "interim_not_sent", str(exc), writes=writes, request_level=True
            )

    async def _opt_out_answered(
        self, sender: Sender, message: InboundMessage, outcome: optout.Outcome, writes: Writes
    ) -> list[Job]:
        """An MO the opt-out step kept from the bot: its events, its answer, its place in the timeline."""
        jobs: list[Job] = []
        if outcome.changed:
            kind = "contact_opted_out" if outcome.keyword == "stop" else "contact_opted_in"
            fields = contact_fields(sender, message.contact, optout.normalize(message.text), message.id)
            jobs += await self._event_jobs(sender.account_id, make_event(kind, fields, self.clock.now()), writes)
            logger.info("%s %s of sender %s", mask(message.contact), kind.removeprefix("contact_"), sender.id)
        if outcome.keyword is None:
            dropped = {**mo_fields(message, sender), "reason_description": outcome.stop_reason}
            jobs += await self._event_jobs(
                sender.account_id, make_event("mo_message_dropped", dropped, self.clock.now()), writes
            )
        conversation = await self.store.get_conversation(sender.id, message.contact)
        if conversation is not None and conversation.account_id:
            writes.add_history(self._entry(conversation, "mo", mo_history(message), entry_id=message.id))
        if outcome.answer:
            reply = OutboundMessage(
                account_id=sender.account_id,
                origin="opt_out",
                sender_id=sender.id,
                contact=message.contact,
                text=outcome.answer,
                conversation_id=conversation.id if conversation is not None else None,
            )
            jobs.append(self._outbound(sender, reply, writes))
        return jobs

    async def _resolve(
        self, sender: Sender, connector: Connector, message: InboundMessage, bot: BotBackend, writes: Writes
    ) -> Conversation:
        now = self.clock.now()
        conversation = await self.store.get_conversation(sender.id, message.contact)
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
            self._put_conversation(writes, conversation)
            writes.add_history(self._entry(conversation, "conversation_closed", {"reason": "expired"}))
            self.rt.metrics.conversations_expired.labels(connector.type).inc()
            try:
                await bot.close(self.rt.bot_session(connector, conversation))
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
        await bot.open(self.rt.bot_session(connector, fresh))
        self._put_conversation(writes, fresh)
        writes.add_history(self._entry(fresh, "conversation_opened", {"connector_id": connector.id}))
        self.rt.metrics.conversations_opened.labels(connector.type).inc()
        logger.info("conversation %s opened with %s", fresh.id, mask(message.contact))
        return fresh

    def _count_failure(self, connector: Connector, exc: BaseException) -> None:
        if isinstance(exc, CircuitOpen | BotCredentialsInvalid):
            return
        breaker = self._breakers.setdefault(connector.id, Breaker())
        breaker.failures += 1
        breaker.reason = tenant_reason(exc)
        over = breaker.failures - self.settings.breaker_threshold
        if over >= 0:
            pause = min(self.settings.breaker_cap, self.settings.breaker_open * 2 ** min(over, 20))
            breaker.open_until = self.clock.now() + pause
            logger.warning(
                "bot of connector %s failed %d times in a row: not called for %.0f s",
                connector.id,
                breaker.failures,
                pause,
            )

    async def _bot_error(
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
        self.rt.metrics.bot_errors.labels(connector.type).inc()
        self._count_failure(connector, exc)
        safe_to_retry = bot.safe_to_retry(exc)
        reason = tenant_reason(exc)
        if isinstance(exc, BotCredentialsInvalid):
            await self._mark_connector(connector, "credentials_invalid", reason)
        else:
            # A turn the bot may have received is never sent again: that is
            # how a bot ends up answering twice.
            if safe_to_retry and job.attempts + 1 < self.settings.bot_attempts:
                delay = getattr(exc, "retry_after", None) or self.settings.backoff(job.attempts)
                raise Retry(f"bot: {reason}", delay)
        logger.warning("bot %s failed for MO %s: %s", connector.type, message.id, reason)
        if conversation.state == "open":
            self._put_conversation(writes, conversation)
            writes.add_history(self._entry(conversation, "bot_error", {"reason": reason}))
        failure = make_event(
            "bot_error",
            {**mo_fields(message, sender), "connector_id": connector.id, "reason_description": reason},
            self.clock.now(),
        )
        jobs = await self._event_jobs(sender.account_id, failure, writes)
        fallback = connector.settings.fallback_text
        if fallback:
            jobs += await self._replies(
                sender, connector, conversation, [Reply(text=fallback)], writes, origin="fallback"
            )
        return jobs

    async def _mark_connector(self, connector: Connector, state: str, reason: str) -> None:
        for _ in range(3):
            current = await self.store.get_connector(connector.id)
            if current is None or (current.state, current.state_reason) == (state, reason):
                return
            current.state, current.state_reason, current.updated_at = state, tenant_text(reason), utcnow()
            try:
                await self.store.update_connector(current, expected_version=current.version_number)
                self.rt.cache.clear()
                connector.state = state
                return
            except StoreError:
                logger.info("connector %s changed while marking it %s; reading it again", connector.id, state)

    def _put_conversation(self, writes: Writes, conversation: Conversation) -> None:
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
                    at=self.clock.now(),
                    data={"type": "conversation", "conversation": summary},
                )
            )

    def _entry(
        self, conversation: Conversation, kind: HistoryKind, data: dict[str, Any], *, entry_id: str | None = None
    ) -> HistoryEntry:
        return HistoryEntry(
            id=entry_id or new_id(),
            account_id=conversation.account_id or "",
            conversation_id=conversation.id,
            sender_id=conversation.sender_id,
            contact=conversation.contact,
            kind=kind,
            at=self.clock.now(),
            data=data,
        )

    # --- replies become MT jobs ---

    def _mt_job(self, sender: Sender, message: OutboundMessage) -> Job:
        return Job(
            kind="mt",
            key=conversation_key(sender.id, message.contact),
            payload={"message_id": message.id, "sender_id": sender.id, "correlation_id": correlation_id.get()},
        )

    async def _replies(
        self,
        sender: Sender,
        connector: Connector,
        conversation: Conversation,
        replies: list[Reply],
        writes: Writes,
        *,
        origin: str = "bot",
    ) -> list[Job]:
        jobs = []
        capabilities = self.rt.capabilities(sender)
        shaped = shaping.shape_replies(replies, shaping.for_sender(sender, capabilities), capabilities)
        for reply, option_start in shaped:
            message = OutboundMessage(
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
            )
            jobs.append(self._outbound(sender, message, writes))
        return jobs

    def _outbound(self, sender: Sender, message: OutboundMessage, writes: Writes) -> Job:
        """Write a new MT (created now, by the engine's clock: history orders by it); return its job."""
        now = from_epoch(self.clock.now())
        message.states, message.created_at, message.updated_at = [StateChange(state="CREATED", at=now)], now, now
        writes.put_outbound(message, sender.channel)
        return self._mt_job(sender, message)

    def _late_replies(self, sender: Sender, connector: Connector, conversation: Conversation):  # type: ignore[no-untyped-def]
        async def deliver(replies: list[Reply]) -> None:
            writes = Writes()
            jobs = await self._replies(sender, connector, conversation, replies, writes)
            if jobs:
                await self.store.write(writes)
                await self.store.enqueue(jobs)
                self._wake_for(jobs)

        return deliver

    # --- MT: send one message ---

    async def _mt(self, job: Job, writes: Writes, written: Writes | None = None) -> list[Job]:
        message_id = job.payload["message_id"]
        message = next((m for m, _ in written.outbound if m.id == message_id), None) if written else None
        if message is None:
            message = await self.store.get_outbound(message_id)
        sender = await self.rt.cache.sender(job.payload["sender_id"])
        if message is None or sender is None or message.state != "CREATED":
            return []
        channel = self.rt.channel(sender.channel)
        context = self.rt.sender_context(sender)
        capabilities = channel.capabilities(context)
        # A reply leased with its turn was checked as the turn began; anything else is checked now.
        if written is None and await self._opted_out(sender, message, capabilities):
            logger.info("MT %s to %s suppressed: the contact opted out", message.id, mask(message.contact))
            return await self._transition(
                sender,
                message,
                "FAILED",
                optout.SUPPRESSED_CODE,
                optout.SUPPRESSED_REASON,
                writes=writes,
                request_level=True,
            )
        outgoing = message
        if (message.options and not capabilities.options) or (message.media and not capabilities.media):
            text = as_text(
                Reply(text=message.text, options=message.options, media=message.media),
                media_as_links=not capabilities.media,
                option_start=message.option_start,
            )
            outgoing = message.model_copy(
                update={"text": text, "options": [], "media": message.media if capabilities.media else []}
            )
        if job.payload.get("unconfirmed"):
            # The last send may have reached the provider: ask it before sending again.
            try:
                found = await channel.find_sent(context, message)
            except ProviderError as exc:
                return await self._send_failed(job, sender, channel, message, exc, writes)
            if found is not None:
                return await self._sent(sender, message, found, writes)
            del job.payload["unconfirmed"]  # the provider has none: this send is the first
        connector = await self.rt.cache.connector(message.connector_id) if message.connector_id else None
        ticket = await self._wait_for_slot(job, connector) if connector is not None else None
        started = time.perf_counter()
        try:
            result = await channel.send(context, outgoing)
        except ProviderError as exc:
            return await self._send_failed(job, sender, channel, message, exc, writes)
        finally:
            self.rt.metrics.send_latency.labels(sender.channel).observe(time.perf_counter() - started)
            if connector is not None and ticket is not None:
                await self._finish_send(connector, ticket)
        if message.origin == "api" and message.conversation_id:
            await self._agent_answered(message, writes)
        return await self._sent(sender, message, result, writes)

    async def _opted_out(self, sender: Sender, message: OutboundMessage, capabilities: Capabilities) -> bool:
        if message.origin in optout.EXEMPT_ORIGINS or optout.settings_for(sender, capabilities) is None:
            return False
        return await self.store.get_opt_out(sender.id, message.contact) is not None

    async def _sent(self, sender: Sender, message: OutboundMessage, result: SendResult, writes: Writes) -> list[Job]:
        self.rt.metrics.mt_sent.labels(sender.channel).inc()
        message.provider_message_id = result.provider_message_id
        return await self._transition(
            sender, message, result.state or "SENT", None, None, writes=writes, request_level=True
        )

    async def _send_failed(
        self, job: Job, sender: Sender, channel: Channel, message: OutboundMessage, exc: ProviderError, writes: Writes
    ) -> list[Job]:
        """Retry a send only when it cannot become a duplicate; otherwise fail it."""
        failures = job.attempts - job.payload.get("deferrals", 0)
        attempts_left = failures + 1 < self.settings.send_attempts
        delay = exc.retry_after or self.settings.backoff(job.attempts)
        unknown = job.payload.get("unconfirmed", False) or (
            exc.outcome_unknown and not isinstance(exc, CredentialsInvalid)
        )
        if unknown:
            if channel.finds_sent and attempts_left and not isinstance(exc, CredentialsInvalid):
                job.payload["unconfirmed"] = True
                raise Retry(f"send outcome unknown, the provider is asked before sending again: {exc}", delay)
            code = "outcome_unknown"
        elif exc.safe_to_retry and not isinstance(exc, CredentialsInvalid) and attempts_left:
            raise Retry(f"send: {exc}", delay)
        else:
            code = str(exc.status_code) if exc.status_code else "send_failed"
        self.rt.metrics.mt_failed.labels(sender.channel).inc()
        logger.warning(
            "MT %s to %s failed for good (%s): %s", message.id, mask(message.contact), code, tenant_reason(exc)
        )
        if exc.provider_code:
            message.provider_error_code = tenant_text(exc.provider_code, 64)
        return await self._transition(sender, message, "FAILED", code, str(exc), writes=writes, request_level=True)

    async def _wait_for_slot(self, job: Job, connector: Connector) -> str:
        """Wait until this message may be sent under the connector's rate limit; return its ticket.

        The reserved slot paces the connector's sends evenly; the admission
        check taken last, against the sends actually in flight or answered
        within the window, is what holds the limit (`Store.admit_send`): a
        worker that wakes late (a busy machine) waits again instead of
        sending next to the following slot's sender. A short wait happens in
        the worker. A long one (a deep queue at a low rate) would outlast the
        job's lease and let another worker send the same message, so the job
        is put back until its slot instead; the slot stays reserved for it
        in the payload.
        """
        rate = connector.settings.rate_limit
        now = self.clock.now()
        deadline = now + self.settings.lease / 3
        slot = job.payload.get("slot_at")
        if slot is None:
            slot = now + await self.store.reserve_send_slot(connector.id, rate, now)
        ticket = new_id()
        while True:
            if slot <= now:
                wait = await self.store.admit_send(connector.id, rate, now, ticket, self.settings.lease)
                if wait <= 0:
                    return ticket
                slot = now + wait
            if slot > deadline:
                job.payload["slot_at"] = slot
                job.payload["deferrals"] = job.payload.get("deferrals", 0) + 1
                raise Retry("waiting for its send slot", slot - now)
            await self.clock.sleep(slot - now)
            now = self.clock.now()

    async def _finish_send(self, connector: Connector, ticket: str) -> None:
        """Tell the rate limit the send has its answer; a store error only keeps it counted until its hold ends."""
        try:
            await self.store.finish_send(connector.id, ticket, connector.settings.rate_limit, self.clock.now())
        except Exception:  # the send happened: losing its result over this would send it again
            logger.warning("could not record the end of a send on connector %s", connector.id, exc_info=True)

    async def _transition(
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
        previous = message.state
        # provider-made text (a failed call, a delivery report) is bounded before a tenant reads it
        reason = tenant_text(reason) if reason else reason
        reason_code = tenant_text(reason_code, 64) if reason_code else reason_code
        message.state, message.reason_code, message.reason_description = state, reason_code, reason
        message.updated_at = from_epoch(self.clock.now())
        message.states.append(
            StateChange(state=state, at=message.updated_at, reason_code=reason_code, reason_description=reason)
        )
        writes.put_outbound(message, sender.channel)
        self.rt.notify("on_outbound_message", message=message, sender=sender)
        evt_tp = "message_request_state_change" if request_level else "message_state_change"
        event = make_event(evt_tp, state_fields(message, sender, previous, reason_code, reason), self.clock.now())
        return await self._event_jobs(sender.account_id, event, writes)

    # --- delivery reports ---

    async def _dr(self, job: Job, writes: Writes) -> list[Job]:
        report = DeliveryReport.model_validate(job.payload)
        message = await self.store.outbound_by_provider_id(report.sender_id, report.provider_message_id)
        if message is None:
            if job.attempts + 1 < self.settings.report_attempts:
                raise Retry("report for a message not yet recorded", self.settings.backoff(job.attempts))
            logger.info("delivery report for unknown message %s dropped", report.provider_message_id)
            return []
        if STATE_RANK.get(report.state, 0) <= STATE_RANK.get(message.state, 0):
            return []  # stale or repeated: states only move forward
        sender = await self.store.get_sender(message.sender_id)
        if sender is None:
            return []
        return await self._transition(
            sender,
            message,
            report.state,
            report.reason_code,
            report.reason_description,
            writes=writes,
            request_level=False,
        )

    # --- events ---

    async def _event_jobs(
        self, account_id: str, event: Any, writes: Writes, *, first_attempt: bool = True
    ) -> list[Job]:
        payload = event.payload()
        if first_attempt:
            self.rt.notify("on_event", event=event, account_id=account_id)
            # the live stream gets the body subscribers get, once (a retried job's writes are kept)
            writes.add_stream(
                StreamItem(account_id=account_id, at=self.clock.now(), data={"type": "event", "event": payload})
            )
        subscriptions = await self.rt.cache.subscriptions(account_id, event.topic)
        return [
            Job(kind="event", key=f"event:{s.id}:{event.event_id}", payload={"subscription_id": s.id, "event": payload})
            for s in subscriptions
        ]

    async def _event(self, job: Job, writes: Writes) -> list[Job]:
        subscription = await self.store.get_subscription(job.payload["subscription_id"])
        if subscription is None:
            return []
        event = job.payload["event"]
        attempt = job.attempts + 1
        body = delivery_body(event, attempt)
        headers = standard_webhook_headers(
            self.rt.box.decrypt(subscription.secret_enc), event["event-id"], int(self.clock.now()), body
        )
        headers["content-type"] = "application/json"
        try:
            await self.rt.outbound.check_url(subscription.url)
            response = await self.rt.http.post(
                subscription.url, content=body, headers=headers, timeout=self.settings.event_timeout
            )
            error = None if response.is_success else f"subscriber answered {response.status_code}"
        except (UnsafeURL, OutboundRefused) as exc:
            error = f"refused url: {exc}"
        except Exception as exc:  # any transport failure is the subscriber's, not ours
            error = f"delivery failed: {type(exc).__name__}"
        if error is None:
            self.rt.metrics.events_delivered.inc()
            return []
        if attempt < self.settings.event_attempts and not error.startswith("refused"):
            raise Retry(error, self.settings.backoff(job.attempts))
        self.rt.metrics.events_failed.inc()
        await self.store.add_event_failure(
            EventFailure(subscription_id=subscription.id, event=event, attempts=attempt, last_error=error)
        )
        logger.warning("event %s dead-lettered for subscription %s: %s", event["event-id"], subscription.id, error)
        return []


__all__ = ["Engine", "EngineSettings", "conversation_key"]
