"""`memory://` — everything in dicts; for tests and throwaway runs.

Each method runs without awaiting between its check and its write, so on
one event loop every operation is atomic.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from botbridge.clock import Clock
from botbridge.errors import SenderTaken, VersionConflict
from botbridge.hookspecs import hookimpl
from botbridge.models import (
    ApiKey,
    Connector,
    Conversation,
    EventFailure,
    HistoryEntry,
    Job,
    OptOut,
    OutboundMessage,
    SecretKind,
    Sender,
    StreamItem,
    Subscription,
)
from botbridge.store import (
    ConversationFilter,
    Durability,
    MessageFilter,
    Store,
    Take,
    Writes,
    check_secret_fields,
    conversation_key,
    names_contact,
)


@dataclass
class _Queued:
    job: Job
    seq: int
    lease_until: float = 0.0


class MemoryStore(Store):
    def __init__(self, clock: Clock) -> None:
        self.jobs: dict[str, _Queued] = {}
        self._seq = itertools.count()
        self.outbound: dict[str, tuple[str, OutboundMessage]] = {}
        self.outbound_index: dict[tuple[str, str], str] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.opt_outs: dict[tuple[str, str], OptOut] = {}
        self.failures: dict[str, EventFailure] = {}
        self.clock = clock
        self.api_keys: dict[str, ApiKey] = {}
        self.api_key_ids: dict[str, str] = {}  # key_hash -> id
        self.meta: dict[str, str] = {}
        self.senders: dict[str, Sender] = {}
        self.connectors: dict[str, Connector] = {}
        self.sender_bindings: dict[str, str] = {}
        self.conversations: dict[tuple[str, str], Conversation] = {}
        self.conversation_log: dict[str, Conversation] = {}
        self.history: dict[str, HistoryEntry] = {}
        self.stream: dict[str, StreamItem] = {}
        self.claims: dict[str, float] = {}

    async def create_api_key(self, key: ApiKey) -> bool:
        if key.key_hash in self.api_key_ids:
            return False
        self.api_keys[key.id] = key.model_copy()
        self.api_key_ids[key.key_hash] = key.id
        return True

    def durability(self) -> Durability:
        return Durability(False, "memory: nothing is kept")

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        key_id = self.api_key_ids.get(key_hash)
        return await self.get_api_key(key_id) if key_id else None

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        key = self.api_keys.get(key_id)
        return key.model_copy() if key else None

    async def list_api_keys(
        self, account_id: str | None = None, *, limit: int = 50, after: str | None = None
    ) -> list[ApiKey]:
        found = sorted(
            (
                k
                for k in self.api_keys.values()
                if (account_id is None or k.account_id == account_id) and (after is None or k.id > after)
            ),
            key=lambda k: k.id,
        )
        return [k.model_copy() for k in found[:limit]]

    async def touch_api_key(self, key_id: str, at: float) -> None:
        key = self.api_keys.get(key_id)
        if key is not None:
            key.last_used_at = at

    async def revoke_api_key(self, key_id: str, at: float) -> bool:
        key = self.api_keys.get(key_id)
        if key is None or key.revoked:
            return False
        key.revoked_at = at
        return True

    async def get_meta(self, name: str) -> str | None:
        return self.meta.get(name)

    async def put_meta(self, name: str, value: str, *, only_if_absent: bool = False) -> bool:
        if only_if_absent and name in self.meta:
            return False
        self.meta[name] = value
        return True

    def _records(self, kind: SecretKind) -> dict[str, Sender] | dict[str, Connector] | dict[str, Subscription]:
        if kind == "sender":
            return self.senders
        if kind == "connector":
            return self.connectors
        return self.subscriptions

    async def secret_record_ids(self, kind: SecretKind, *, limit: int | None = None) -> list[str]:
        return sorted(self._records(kind))[:limit]

    async def replace_secrets(
        self, kind: SecretKind, record_id: str, expected: dict[str, str], new: dict[str, str]
    ) -> bool:
        check_secret_fields(kind, expected, new)
        record = self._records(kind).get(record_id)
        if record is None or any(getattr(record, field) != value for field, value in expected.items()):
            return False
        for field, value in new.items():
            setattr(record, field, value)
        return True

    async def create_sender(self, sender: Sender) -> None:
        self.senders[sender.id] = sender.model_copy(deep=True)

    async def get_sender(self, sender_id: str) -> Sender | None:
        sender = self.senders.get(sender_id)
        return sender.model_copy(deep=True) if sender else None

    async def list_senders(self, account_id: str, *, limit: int = 50, after: str | None = None) -> list[Sender]:
        found = sorted(
            (s for s in self.senders.values() if s.account_id == account_id and (after is None or s.id > after)),
            key=lambda s: s.id,
        )
        return [s.model_copy(deep=True) for s in found[:limit]]

    async def update_sender(self, sender: Sender) -> None:
        if sender.id in self.senders:
            self.senders[sender.id] = sender.model_copy(deep=True)

    async def delete_sender(self, sender_id: str) -> bool:
        return self.senders.pop(sender_id, None) is not None

    async def create_connector(self, connector: Connector) -> None:
        if connector.sender_id in self.sender_bindings:
            raise SenderTaken(connector.sender_id)
        self.connectors[connector.id] = connector.model_copy(deep=True)
        self.sender_bindings[connector.sender_id] = connector.id

    async def get_connector(self, connector_id: str) -> Connector | None:
        connector = self.connectors.get(connector_id)
        return connector.model_copy(deep=True) if connector else None

    async def connector_for_sender(self, sender_id: str) -> Connector | None:
        connector_id = self.sender_bindings.get(sender_id)
        return await self.get_connector(connector_id) if connector_id else None

    async def list_connectors(
        self,
        account_id: str,
        *,
        type: str | None = None,
        sender_id: str | None = None,
        external_id: str | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> list[Connector]:
        found = sorted(
            (
                c
                for c in self.connectors.values()
                if c.account_id == account_id
                and (after is None or c.id > after)
                and (type is None or c.type == type)
                and (sender_id is None or c.sender_id == sender_id)
                and (external_id is None or c.external_id == external_id)
            ),
            key=lambda c: c.id,
        )
        return [c.model_copy(deep=True) for c in found[:limit]]

    async def update_connector(self, connector: Connector, expected_version: int) -> None:
        current = self.connectors.get(connector.id)
        if current is None or current.version_number != expected_version:
            raise VersionConflict(connector.id)
        bound = self.sender_bindings.get(connector.sender_id)
        if bound is not None and bound != connector.id:
            raise SenderTaken(connector.sender_id)
        del self.sender_bindings[current.sender_id]
        self.sender_bindings[connector.sender_id] = connector.id
        self.connectors[connector.id] = connector.model_copy(deep=True)

    async def delete_connector(self, connector_id: str) -> bool:
        connector = self.connectors.pop(connector_id, None)
        if connector is None:
            return False
        self.sender_bindings.pop(connector.sender_id, None)
        return True

    async def get_conversation(self, sender_id: str, contact: str) -> Conversation | None:
        conversation = self.conversations.get((sender_id, contact))
        return conversation.model_copy(deep=True) if conversation else None

    async def put_conversation(self, conversation: Conversation) -> None:
        self.conversations[(conversation.sender_id, conversation.contact)] = conversation.model_copy(deep=True)
        self.conversation_log[conversation.id] = conversation.model_copy(deep=True)

    # --- history ---

    async def get_conversation_by_id(self, conversation_id: str) -> Conversation | None:
        conversation = self.conversation_log.get(conversation_id)
        return conversation.model_copy(deep=True) if conversation else None

    async def list_conversations(
        self, account_id: str, where: ConversationFilter, *, limit: int = 50, before: str | None = None
    ) -> list[Conversation]:
        found = sorted(
            (
                c
                for c in self.conversation_log.values()
                if c.account_id == account_id and where.matches(c) and (before is None or c.id < before)
            ),
            key=lambda c: c.id,
            reverse=True,
        )
        return [c.model_copy(deep=True) for c in found[:limit]]

    async def add_history(self, entry: HistoryEntry) -> None:
        self.history[entry.id] = entry.model_copy(deep=True)

    async def list_history(
        self, conversation_id: str, *, limit: int = 200, after: str | None = None
    ) -> list[HistoryEntry]:
        found = sorted(
            (
                e
                for e in self.history.values()
                if e.conversation_id == conversation_id and (after is None or e.id > after)
            ),
            key=lambda e: e.id,
        )
        return [e.model_copy(deep=True) for e in found[:limit]]

    async def list_outbound(
        self, account_id: str, where: MessageFilter, *, limit: int = 50, before: str | None = None
    ) -> list[OutboundMessage]:
        found = sorted(
            (
                m
                for _, m in self.outbound.values()
                if m.account_id == account_id and where.matches(m) and (before is None or m.id < before)
            ),
            key=lambda m: m.id,
            reverse=True,
        )
        return [m.model_copy(deep=True) for m in found[:limit]]

    async def append_stream(self, items: Sequence[StreamItem]) -> None:
        for item in items:
            self.stream[item.id] = item.model_copy(deep=True)

    async def read_stream(self, account_id: str, *, after: str | None = None, limit: int = 100) -> list[StreamItem]:
        found = sorted(
            (i for i in self.stream.values() if i.account_id == account_id and (after is None or i.id > after)),
            key=lambda i: i.id,
        )
        return [i.model_copy(deep=True) for i in found[:limit]]

    async def trim_stream(self, before: float) -> int:
        old = [i for i, item in self.stream.items() if item.at < before]
        for i in old:
            del self.stream[i]
        return len(old)

    async def purge_history(self, before: float) -> int:
        entries = [i for i, e in self.history.items() if e.at < before]
        latest = {c.id for c in self.conversations.values()}
        conversations = [
            i
            for i, c in self.conversation_log.items()
            if c.state == "closed" and (c.closed_at or c.last_mo_at) < before and i not in latest
        ]
        outbound = [i for i, (_, m) in self.outbound.items() if m.updated_at.timestamp() < before]
        for i in entries:
            del self.history[i]
        for i in conversations:
            del self.conversation_log[i]
        for i in outbound:
            self._forget_outbound(i)
        return len(entries) + len(conversations) + len(outbound)

    def _forget_outbound(self, message_id: str) -> None:
        _, message = self.outbound.pop(message_id)
        if message.provider_message_id:
            self.outbound_index.pop((message.sender_id, message.provider_message_id), None)

    async def erase_contact(self, account_id: str, contact: str, sender_ids: Sequence[str]) -> int:
        senders = set(sender_ids)
        keys = {(sender_id, contact) for sender_id in senders}
        gone = [k for k in self.conversations if k in keys]
        logged = [i for i, c in self.conversation_log.items() if c.sender_id in senders and c.contact == contact]
        entries = [i for i, e in self.history.items() if e.sender_id in senders and e.contact == contact]
        outbound = [i for i, (_, m) in self.outbound.items() if m.sender_id in senders and m.contact == contact]
        subscriptions = {s.id for s in self.subscriptions.values() if s.account_id == account_id}
        failures = [
            i
            for i, f in self.failures.items()
            if f.subscription_id in subscriptions and names_contact(f.event, contact)
        ]
        queue_keys = {conversation_key(sender_id, contact) for sender_id in senders}
        jobs = [
            i
            for i, q in self.jobs.items()
            if q.job.key in queue_keys
            or (
                q.job.kind == "event"
                and q.job.payload.get("subscription_id") in subscriptions
                and names_contact(q.job.payload.get("event", {}), contact)
            )
        ]
        for k in gone:
            del self.conversations[k]
        for i in logged:
            del self.conversation_log[i]
        for i in entries:
            del self.history[i]
        for i in outbound:
            self._forget_outbound(i)
        for i in failures:
            del self.failures[i]
        for i in jobs:
            del self.jobs[i]
        return len(gone) + len(logged) + len(entries) + len(outbound) + len(failures) + len(jobs)

    async def claim(self, key: str, ttl: float) -> bool:
        now = self.clock.now()
        expires = self.claims.get(key)
        if expires is not None and expires > now:
            return False
        self.claims[key] = now + ttl
        if len(self.claims) > 100_000:
            self.claims = {k: v for k, v in self.claims.items() if v > now}
        return True

    # --- the durable work queue ---

    async def enqueue(self, jobs: Sequence[Job], *, dedupe_key: str | None = None, dedupe_ttl: float = 0.0) -> bool:
        if dedupe_key is not None and not await self.claim(dedupe_key, dedupe_ttl):
            return False
        for job in jobs:
            self.jobs[job.id] = _Queued(job.model_copy(deep=True), next(self._seq))
        return True

    async def claim_jobs(self, kinds: Sequence[str], *, limit: int, lease: float) -> list[Job]:
        now = self.clock.now()
        heads: set[str] = set()
        claimed = []
        for queued in sorted(self.jobs.values(), key=lambda q: q.seq):
            job = queued.job
            if job.key in heads:
                continue
            heads.add(job.key)
            if job.kind in kinds and job.not_before <= now and queued.lease_until <= now:
                queued.lease_until = now + lease
                claimed.append(job.model_copy(deep=True))
                if len(claimed) >= limit:
                    break
        return claimed

    async def complete_job(self, job: Job, *, then: Sequence[Job] = ()) -> None:
        self.jobs.pop(job.id, None)
        for follow_up in then:
            self.jobs[follow_up.id] = _Queued(follow_up.model_copy(deep=True), next(self._seq))

    async def finish_job(
        self, job: Job, *, then: Sequence[Job] = (), writes: Writes | None = None, take: Take | None = None
    ) -> Job | None:
        # Nothing here awaits: the whole step is atomic on the event loop.
        if writes:
            await self.write(writes)
        await self.complete_job(job, then=then)
        if take is None:
            return None
        now = self.clock.now()
        for follow_up in then:
            if follow_up.kind not in take.kinds or follow_up.not_before > now:
                continue
            queued = self.jobs[follow_up.id]
            if any(q.job.key == follow_up.key and q.seq < queued.seq for q in self.jobs.values()):
                return None
            queued.lease_until = now + take.lease
            return queued.job.model_copy(deep=True)
        return None

    async def retry_job(self, job: Job, *, not_before: float, error: str) -> None:
        queued = self.jobs.get(job.id)
        if queued is not None:
            queued.job = job.model_copy(
                update={"attempts": job.attempts + 1, "not_before": not_before, "last_error": error}
            )
            queued.lease_until = 0.0

    async def release_leases(self) -> int:
        leased = [q for q in self.jobs.values() if q.lease_until > 0]
        for queued in leased:
            queued.lease_until = 0.0
        return len(leased)

    async def queue_depth(self) -> dict[str, int]:
        depth: dict[str, int] = {}
        for queued in self.jobs.values():
            depth[queued.job.kind] = depth.get(queued.job.kind, 0) + 1
        return depth

    # --- outbound messages ---

    async def put_outbound(self, message: OutboundMessage, channel: str) -> None:
        self.outbound[message.id] = (channel, message.model_copy(deep=True))
        if message.provider_message_id:
            self.outbound_index[(message.sender_id, message.provider_message_id)] = message.id

    async def get_outbound(self, message_id: str) -> OutboundMessage | None:
        found = self.outbound.get(message_id)
        return found[1].model_copy(deep=True) if found else None

    async def outbound_by_provider_id(self, sender_id: str, provider_message_id: str) -> OutboundMessage | None:
        message_id = self.outbound_index.get((sender_id, provider_message_id))
        return await self.get_outbound(message_id) if message_id else None

    # --- opt-outs ---

    async def put_opt_out(self, opt_out: OptOut) -> bool:
        key = (opt_out.sender_id, opt_out.contact)
        if key in self.opt_outs:
            return False
        self.opt_outs[key] = opt_out.model_copy(deep=True)
        return True

    async def get_opt_out(self, sender_id: str, contact: str) -> OptOut | None:
        found = self.opt_outs.get((sender_id, contact))
        return found.model_copy(deep=True) if found else None

    async def delete_opt_out(self, sender_id: str, contact: str) -> bool:
        return self.opt_outs.pop((sender_id, contact), None) is not None

    async def list_opt_outs(
        self, account_id: str, *, sender_id: str | None = None, limit: int = 50, after: str | None = None
    ) -> list[OptOut]:
        found = sorted(
            (
                o
                for o in self.opt_outs.values()
                if o.account_id == account_id
                and (sender_id is None or o.sender_id == sender_id)
                and (after is None or o.id > after)
            ),
            key=lambda o: o.id,
        )
        return [o.model_copy(deep=True) for o in found[:limit]]

    # --- subscriptions ---

    async def create_subscription(self, subscription: Subscription) -> None:
        self.subscriptions[subscription.id] = subscription.model_copy(deep=True)

    async def get_subscription(self, subscription_id: str) -> Subscription | None:
        found = self.subscriptions.get(subscription_id)
        return found.model_copy(deep=True) if found else None

    async def list_subscriptions(
        self, account_id: str, *, topic: str | None = None, limit: int = 50, after: str | None = None
    ) -> list[Subscription]:
        found = sorted(
            (
                s
                for s in self.subscriptions.values()
                if s.account_id == account_id
                and (topic is None or s.topic == topic)
                and (after is None or s.id > after)
            ),
            key=lambda s: s.id,
        )
        return [s.model_copy(deep=True) for s in found[:limit]]

    async def delete_subscription(self, subscription_id: str) -> bool:
        return self.subscriptions.pop(subscription_id, None) is not None

    async def add_event_failure(self, failure: EventFailure) -> None:
        self.failures[failure.id] = failure.model_copy(deep=True)

    async def list_event_failures(
        self, subscription_id: str, *, limit: int = 50, after: str | None = None
    ) -> list[EventFailure]:
        found = sorted(
            (
                f
                for f in self.failures.values()
                if f.subscription_id == subscription_id and (after is None or f.id > after)
            ),
            key=lambda f: f.id,
        )
        return [f.model_copy(deep=True) for f in found[:limit]]


@hookimpl
def register_stores(register):  # type: ignore[no-untyped-def]
    register("memory", lambda url, clock: MemoryStore(clock))
