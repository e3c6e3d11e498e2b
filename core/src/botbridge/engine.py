"""The conversation engine: the life of a job, from a provider's webhook to the events it makes.

Everything a webhook carried is written to the store's job queue before the
provider gets its 2xx (`accept`). Workers lease jobs; a job's `key`
serializes the work of one conversation (its turns and replies run one at a
time, in arrival order) while different conversations run in parallel.
Follow-up work (replies to send, events to deliver) is added in the same
atomic step that completes a job, so a crash at any point loses nothing:
unfinished jobs run again after a restart (at-least-once; see the README
for where a duplicate can still happen).

The jobs, and the named steps each calls (one module per rule):

- **mo**, a contact's message: published (`mo_message_received`); *before
  the bot*, STOP, START and HELP are answered (`optout`); the contact's
  conversation is found or opened (`turns.BotTurns.resolve`); a conversation
  a person has goes to them (`handoff`); a message inside a connector's
  window is held for the next (`coalescing`); otherwise the bot's turn
  (`turns.BotTurns.answer`), whose replies are *shaped* for the channel
  (`shaping`, through `steps.Records.replies`) and become mt jobs, the first
  leased to the worker that made it.
- **conversation**: an operator's hand-off or resume, or a coalescing window
  that closed, run in line with the conversation's turns.
- **mt**, one message to send: *before the send*, a contact who opted out
  gets nothing (`optout.suppressed`); fitted to what the channel shows
  (`render.fitted`), paced by the connector's rate limit (`pacing`), sent once
  (an outcome the provider left unknown is asked of it before any resend).
- **dr**, a delivery report: the message's state moves forward, never back.
- **event**, one event for one subscriber (`deliveries`).

What every step writes (events, timeline entries, conversations, outbound
messages) is made one way, by `steps.Records`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from botbridge import coalescing, deliveries, handoff, optout, pacing, render
from botbridge.channel import Channel, WebhookResult
from botbridge.clock import Clock
from botbridge.errors import BotError, CredentialsInvalid, ProviderError, StoreUnavailable, tenant_reason, tenant_text
from botbridge.events import make_event, mo_fields
from botbridge.ids import new_id
from botbridge.logs import correlation_id, mask
from botbridge.models import (
    STATE_RANK,
    Conversation,
    DeliveryReport,
    InboundMessage,
    Job,
    OutboundMessage,
    Sender,
    SendResult,
    utcnow,
)
from botbridge.steps import EngineSettings, Host, Records, Retry
from botbridge.store import Store, Take, Writes, conversation_key
from botbridge.store_waits import StoreWaits
from botbridge.turns import BotTurns

logger = logging.getLogger("botbridge.engine")
T = TypeVar("T")

DEDUPE_TTL = 7 * 86400.0  # providers retry for hours; remember ids for a week
# "conversation": an operator's change to a conversation (hand-off, resume), in line with its turns
MESSAGE_KINDS = ("mo", "mt", "dr", "conversation")
EVENT_KINDS = ("event",)


def _jittered(delay: float) -> float:
    return delay / 2 + random.uniform(0, delay / 2)


@dataclass
class Taken:
    """A job a worker runs next without claiming it, with the records written as it was leased."""

    job: Job
    written: Writes | None = None


class Engine:
    def __init__(self, runtime: Host, settings: EngineSettings | None = None) -> None:
        self.rt = runtime
        self.settings = settings or EngineSettings()
        self._tasks: list[asyncio.Task[None]] = []
        # One token per runnable job, so a new job wakes one idle worker, not all of them.
        self._tokens: dict[str, asyncio.Queue[None]] = {"message": asyncio.Queue(), "event": asyncio.Queue()}
        self._stopping = False
        self.records = Records(runtime)
        self.turns = BotTurns(self.records, self.settings, self._send_now, self._wake_for)
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
        await self.store.enqueue([self.records.mt_job(sender, message)])
        self.wake()
        return message

    async def announce(self, account_id: str, event: Any) -> None:
        """Publish an event no job made (an operator's change through the API): subscribers and the live stream."""
        writes = Writes()
        jobs = await self.records.event(account_id, event, writes)
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
        events = await self.records.event(sender.account_id, mo_event, writes, first_attempt=job.attempts == 0)
        keywords = optout.settings_for(sender, self.rt.capabilities(sender))
        if keywords is not None:  # before the bot: STOP, START, HELP
            outcome = await optout.before_bot(self.store, sender, message, keywords)
            if outcome.stop_reason is not None:
                return events + await optout.answered(self.records, sender, message, outcome, writes)
        connector = await self.rt.cache.connector_for_sender(sender.id)
        if connector is None:
            dropped = make_event(
                "mo_message_dropped",
                {**mo_fields(message, sender), "reason_description": "no connector is bound to this sender"},
                self.clock.now(),
            )
            logger.info("MO %s from %s dropped: no connector", message.id, mask(message.contact))
            return events + await self.records.event(sender.account_id, dropped, writes)
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
            self.turns.check(connector)
            conversation = await self.turns.resolve(sender, connector, message, bot, writes)
        except (BotError, ProviderError, TimeoutError) as exc:
            return events + await self.turns.failed(job, exc, bot, sender, connector, placeholder, message, writes)
        writes.add_history(self.records.mo_entry(conversation, message))
        if conversation.handoff_at is not None:
            turn = handoff.route(conversation, connector, message, self.clock.now())
            if turn.resumed is None:
                return events + await handoff.for_agent(self.records, sender, connector, conversation, message, writes)
            events += await handoff.resumed(self.records, sender, connector, conversation, turn.resumed, writes)
            if turn.resumed == "keyword":
                return events
        window = connector.settings.coalesce_window
        if window and coalescing.joins(message, conversation):
            timer = coalescing.hold(conversation, message, self.clock.now(), window)
            self.records.conversation(writes, conversation)
            return [*events, timer]
        return events + await self.turns.answer(job, sender, connector, bot, conversation, message, writes)

    async def _flush(self, job: Job, sender: Sender, conversation: Conversation, writes: Writes) -> list[Job]:
        """The held MOs of a conversation whose window has closed: one bot turn."""
        connector = await self.rt.cache.connector(conversation.connector_id)
        if connector is None:
            return []
        message = coalescing.take(conversation)
        bot = self.rt.bot(connector.type)
        try:
            self.turns.check(connector)
        except BotError as exc:
            return await self.turns.failed(job, exc, bot, sender, connector, conversation, message, writes)
        return await self.turns.answer(job, sender, connector, bot, conversation, message, writes)

    # --- an operator's change to a conversation ---

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
        return await handoff.operator_action(self.records, sender, current, job.payload["action"], writes)

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
        if written is None and await optout.suppressed(self.store, sender, message, capabilities):
            logger.info("MT %s to %s suppressed: the contact opted out", message.id, mask(message.contact))
            code, reason = optout.SUPPRESSED_CODE, optout.SUPPRESSED_REASON
            return await self.records.transition(
                sender, message, "FAILED", code, reason, writes=writes, request_level=True
            )
        outgoing = render.fitted(message, capabilities)
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
        lease = self.settings.lease
        ticket = await pacing.wait_for_slot(self.store, self.clock, lease, job, connector) if connector else None
        started = time.perf_counter()
        try:
            result = await channel.send(context, outgoing)
        except ProviderError as exc:
            return await self._send_failed(job, sender, channel, message, exc, writes)
        finally:
            self.rt.metrics.send_latency.labels(sender.channel).observe(time.perf_counter() - started)
            if connector is not None and ticket is not None:
                await pacing.finish_send(self.store, self.clock, connector, ticket)
        if message.origin == "api" and message.conversation_id:
            await handoff.agent_answered(self.records, message, writes)
        return await self._sent(sender, message, result, writes)

    async def _sent(self, sender: Sender, message: OutboundMessage, result: SendResult, writes: Writes) -> list[Job]:
        self.rt.metrics.mt_sent.labels(sender.channel).inc()
        message.provider_message_id = result.provider_message_id
        return await self.records.transition(
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
        return await self.records.transition(
            sender, message, "FAILED", code, str(exc), writes=writes, request_level=True
        )

    async def _send_now(self, job: Job, writes: Writes) -> list[Job]:
        """Send an MT from the job at hand (a turn's interim text), its message in `writes`."""
        return await self._mt(job, writes, written=writes)

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
        return await self.records.transition(
            sender,
            message,
            report.state,
            report.reason_code,
            report.reason_description,
            writes=writes,
            request_level=False,
        )

    # --- events ---

    async def _event(self, job: Job, writes: Writes) -> list[Job]:
        await deliveries.deliver(self.rt, self.settings, job)
        return []


__all__ = ["Engine", "EngineSettings", "conversation_key"]
