"""The store interface: everything botbridge persists.

One implementation is selected by BOTBRIDGE_STORE's URL scheme; plugins add
schemes through the `register_stores` hook. Every implementation must pass
`botbridge.testing.StoreContract`.

Records are stored as given: secrets arrive already encrypted, tenancy is
enforced by the host (records carry `account_id`; list calls filter on it).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from botbridge.clock import Clock
from botbridge.models import (
    SECRET_FIELDS,
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

StoreFactory = Callable[[str, Clock], "Store"]
SLOT_MARGIN = 1.1
# Added to an admission wait so the retry lands after the window has moved,
# whatever the rounding of the stored times (Redis keeps microseconds).
ADMIT_SLACK = 1e-5


def send_window(rate: float) -> tuple[int, float]:
    """The sliding window that enforces `rate`: at most `count` sends in any `seconds`.

    At one send a second or more, `floor(rate)` in any one second; below it,
    one in every `1 / rate` seconds.
    """
    if rate >= 1:
        return math.floor(rate), 1.0
    return 1, 1.0 / rate


def admission_wait(until: float, now: float, count: int, seconds: float) -> float:
    """How long a refused send waits before asking again.

    `until` is when the send whose leaving makes room stops counting. A
    finished send stops `seconds` after its answer, a known time. One still
    in flight counts until its hold ends, but its answer may come any moment:
    ask again after a short poll instead.
    """
    wait = until - now
    if wait > seconds:
        wait = max(0.005, seconds / count / 2)
    return wait + ADMIT_SLACK


def check_secret_fields(kind: SecretKind, *fields: dict[str, str]) -> None:
    """`replace_secrets` may touch a record's encrypted fields and nothing else."""
    allowed = set(SECRET_FIELDS[kind])
    for given in fields:
        if not set(given) <= allowed:
            raise ValueError(f"not encrypted fields of a {kind}: {sorted(set(given) - allowed)}")


@dataclass
class Writes:
    """The records a job's outcome changes, written with its completion (`Store.finish_job`).

    The engine collects them while a job runs instead of writing each at
    once: a job then costs one write to the store when it ends, and a crash
    before that leaves none of them (the job runs again from the same records).
    Records appear in the order they were added; a later version of the same
    record replaces an earlier one.
    """

    conversations: list[Conversation] = field(default_factory=list)
    outbound: list[tuple[OutboundMessage, str]] = field(default_factory=list)  # (message, its channel)
    history: list[HistoryEntry] = field(default_factory=list)
    stream: list[StreamItem] = field(default_factory=list)

    def put_conversation(self, conversation: Conversation) -> None:
        self.conversations.append(conversation)

    def put_outbound(self, message: OutboundMessage, channel: str) -> None:
        self.outbound.append((message, channel))

    def add_history(self, entry: HistoryEntry) -> None:
        self.history.append(entry)

    def add_stream(self, item: StreamItem) -> None:
        self.stream.append(item)

    def __bool__(self) -> bool:
        return bool(self.conversations or self.outbound or self.history or self.stream)


@dataclass(frozen=True)
class ConversationFilter:
    """Which conversations of an account `Store.list_conversations` returns (None: any)."""

    sender_id: str | None = None
    connector_id: str | None = None
    contact: str | None = None
    state: str | None = None
    since: float | None = None  # opened at or after
    until: float | None = None  # opened before

    def matches(self, conversation: Conversation) -> bool:
        return (
            (self.sender_id is None or conversation.sender_id == self.sender_id)
            and (self.connector_id is None or conversation.connector_id == self.connector_id)
            and (self.contact is None or conversation.contact == self.contact)
            and (self.state is None or conversation.state == self.state)
            and (self.since is None or conversation.opened_at >= self.since)
            and (self.until is None or conversation.opened_at < self.until)
        )


@dataclass(frozen=True)
class MessageFilter:
    """Which outbound messages of an account `Store.list_outbound` returns (None: any)."""

    sender_id: str | None = None
    contact: str | None = None
    state: str | None = None
    external_id: str | None = None
    conversation_id: str | None = None
    since: float | None = None  # created at or after
    until: float | None = None  # created before

    def matches(self, message: OutboundMessage) -> bool:
        created = message.created_at.timestamp()
        return (
            (self.sender_id is None or message.sender_id == self.sender_id)
            and (self.contact is None or message.contact == self.contact)
            and (self.state is None or message.state == self.state)
            and (self.external_id is None or message.external_id == self.external_id)
            and (self.conversation_id is None or message.conversation_id == self.conversation_id)
            and (self.since is None or created >= self.since)
            and (self.until is None or created < self.until)
        )


def conversation_key(sender_id: str, contact: str) -> str:
    """The queue key of a conversation's jobs: its turns and replies run one at a time, in order."""
    return f"conv:{sender_id}:{contact}"


def names_contact(event: dict[str, Any], contact: str) -> bool:
    """True when an event body (as subscribers receive it) is about `contact`: from or to them."""
    fields = event.get("event", {}).get("fld-val-list", {}) if isinstance(event.get("event"), dict) else {}
    return isinstance(fields, dict) and contact in (fields.get("from_address"), fields.get("to_address"))


@dataclass(frozen=True)
class Take:
    """Lease a follow-up of these kinds to the worker finishing a job (`Store.finish_job`)."""

    kinds: Sequence[str]
    lease: float


@dataclass(frozen=True)
class Durability:
    """What a crash of the store's server does to accepted work, as the store found it configured."""

    durable: bool | None  # None: the store could not tell
    detail: str  # the settings it read, e.g. "appendonly=no appendfsync=everysec save=''"


class Store(ABC):
    # True when several host processes share this store. An embedded store
    # (False) belongs to one process, so at start-up every leased job is
    # known to be abandoned and runs again at once; a shared store relies on
    # lease expiry instead.
    shared: ClassVar[bool] = False

    # --- lifecycle ---
    async def open(self) -> None:
        """Connect and create what is missing. Called once before use."""

    async def close(self) -> None:
        """Release connections. The store is not used afterwards."""

    async def ping(self) -> bool:
        """True when the store answers (for /readyz)."""
        return True

    async def migrate(self) -> list[int]:
        """Apply pending schema migrations; return the versions applied now.

        For `botbridge store migrate`. A store with versioned migrations also
        applies them in `open`; one that creates its tables there returns [].
        """
        return []

    def durability(self) -> Durability | None:
        """How durable the store's server is configured (read in `open`); None when it does not say.

        Shown by /readyz and /metrics (`botbridge_store_durable`).
        """
        return None

    def watch(self, wake: Callable[[str, int], None]) -> None:
        """Call `wake(lane, jobs)` when another process adds runnable work.

        Lets a shared store wake idle workers at once instead of at their next
        poll. The default does nothing: workers poll.
        """

    # --- API keys ---
    @abstractmethod
    async def create_api_key(self, key: ApiKey) -> bool:
        """Insert; False (and nothing changes) when a key with this key_hash is stored."""

    @abstractmethod
    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key, revoked or not; read from the store on every call, never cached."""

    @abstractmethod
    async def get_api_key(self, key_id: str) -> ApiKey | None: ...

    @abstractmethod
    async def list_api_keys(
        self, account_id: str | None = None, *, limit: int = 50, after: str | None = None
    ) -> list[ApiKey]:
        """Keys in id order: of one account, or of every account when None (the operator's view)."""

    @abstractmethod
    async def touch_api_key(self, key_id: str, at: float) -> None:
        """Set last_used_at alone: a whole-record write here could undo a concurrent revoke."""

    @abstractmethod
    async def revoke_api_key(self, key_id: str, at: float) -> bool:
        """Set revoked_at unless it is set; True when this call revoked the key."""

    # --- host metadata (small named values, e.g. the secret-key canary) ---
    @abstractmethod
    async def get_meta(self, name: str) -> str | None: ...

    @abstractmethod
    async def put_meta(self, name: str, value: str, *, only_if_absent: bool = False) -> bool:
        """Store `value`; with `only_if_absent`, only when `name` has none (atomically). True if written."""

    # --- stored secrets, for `botbridge rotate-secrets` ---
    @abstractmethod
    async def secret_record_ids(self, kind: SecretKind, *, limit: int | None = None) -> list[str]:
        """Ids of the records of this kind of every account (an operator's tool, not a hot path)."""

    @abstractmethod
    async def replace_secrets(
        self, kind: SecretKind, record_id: str, expected: dict[str, str], new: dict[str, str]
    ) -> bool:
        """Set these encrypted fields to `new` if they still hold `expected`, in one atomic step.

        False when a field changed meanwhile or the record is gone; the
        record's other fields are left as they are now.
        """

    # --- senders ---
    @abstractmethod
    async def create_sender(self, sender: Sender) -> None: ...

    @abstractmethod
    async def get_sender(self, sender_id: str) -> Sender | None: ...

    @abstractmethod
    async def list_senders(self, account_id: str, *, limit: int = 50, after: str | None = None) -> list[Sender]:
        """Senders of one account in id order, starting after id `after`."""

    @abstractmethod
    async def update_sender(self, sender: Sender) -> None: ...

    @abstractmethod
    async def delete_sender(self, sender_id: str) -> bool: ...

    # --- connectors ---
    @abstractmethod
    async def create_connector(self, connector: Connector) -> None:
        """Insert; raise SenderTaken if another connector has the sender (atomically)."""

    @abstractmethod
    async def get_connector(self, connector_id: str) -> Connector | None: ...

    @abstractmethod
    async def connector_for_sender(self, sender_id: str) -> Connector | None: ...

    @abstractmethod
    async def list_connectors(
        self,
        account_id: str,
        *,
        type: str | None = None,
        sender_id: str | None = None,
        external_id: str | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> list[Connector]: ...

    @abstractmethod
    async def update_connector(self, connector: Connector, expected_version: int) -> None:
        """Replace the connector if its stored version is `expected_version`.

        Raise VersionConflict otherwise (or when it no longer exists), and
        SenderTaken when the new sender_id is bound to another connector.
        The check and the write are one atomic step.
        """

    @abstractmethod
    async def delete_connector(self, connector_id: str) -> bool: ...

    # --- conversations ---
    @abstractmethod
    async def get_conversation(self, sender_id: str, contact: str) -> Conversation | None:
        """The latest conversation of (sender, contact), open or closed."""

    @abstractmethod
    async def put_conversation(self, conversation: Conversation) -> None: ...

    # --- dedupe ---
    @abstractmethod
    async def claim(self, key: str, ttl: float) -> bool:
        """Record `key` for `ttl` seconds; False if it is already recorded.

        Atomic insert-if-absent: of two concurrent claims exactly one wins.
        """

    # --- the durable work queue ---
    @abstractmethod
    async def enqueue(self, jobs: Sequence[Job], *, dedupe_key: str | None = None, dedupe_ttl: float = 0.0) -> bool:
        """Add jobs in one atomic step; with `dedupe_key`, claim it in that same step.

        Returns False (and adds nothing) when the dedupe key is already
        claimed. What this returns True for must survive a crash.
        """

    @abstractmethod
    async def claim_jobs(self, kinds: Sequence[str], *, limit: int, lease: float) -> list[Job]:
        """Lease up to `limit` runnable jobs of these kinds for `lease` seconds.

        Runnable: `not_before` has passed, not leased by anyone, and the
        oldest unfinished job of its key (so one key runs one job at a time,
        in enqueue order). An expired lease makes the job runnable again.
        """

    @abstractmethod
    async def complete_job(self, job: Job, *, then: Sequence[Job] = ()) -> None:
        """Remove a finished job and add its follow-up jobs, atomically."""

    async def write(self, writes: Writes) -> None:
        """Write these records. The default writes one at a time; a store that can, in one atomic step."""
        for conversation in writes.conversations:
            await self.put_conversation(conversation)
        for message, channel in writes.outbound:
            await self.put_outbound(message, channel)
        for entry in writes.history:
            await self.add_history(entry)
        if writes.stream:
            await self.append_stream(writes.stream)

    async def finish_job(
        self,
        job: Job,
        *,
        then: Sequence[Job] = (),
        writes: Writes | None = None,
        take: Take | None = None,
    ) -> Job | None:
        """Write a finished job's records, remove it and add its follow-ups, atomically.

        The engine's one write per job. With `take`, the first follow-up of
        `take.kinds` that is runnable at once (due, and the first of its key:
        nothing queued ahead of it) is also leased to the caller for
        `take.lease` seconds in the same step and returned, so the worker runs
        it next without claiming it (a reply goes out right after the turn
        that made it). None when there is none, or the store does not take.

        The default writes the records, then completes the job, and takes
        nothing: a crash between the two runs the job again over records that
        already say what it did (no duplicate send: the engine checks them).
        Every store of botbridge does it all in one transaction.
        """
        if writes:
            await self.write(writes)
        await self.complete_job(job, then=then)
        return None

    @abstractmethod
    async def retry_job(self, job: Job, *, not_before: float, error: str) -> None:
        """Release the lease; the job runs again at `not_before` with attempts+1."""

    @abstractmethod
    async def release_leases(self) -> int:
        """Make every leased job runnable now (an embedded store's restart)."""

    @abstractmethod
    async def queue_depth(self) -> dict[str, int]:
        """Unfinished jobs per kind."""

    # --- outbound messages ---
    @abstractmethod
    async def put_outbound(self, message: OutboundMessage, channel: str) -> None:
        """Insert or replace; indexed by (message.sender_id, provider_message_id) when set."""

    @abstractmethod
    async def get_outbound(self, message_id: str) -> OutboundMessage | None: ...

    @abstractmethod
    async def outbound_by_provider_id(self, sender_id: str, provider_message_id: str) -> OutboundMessage | None:
        """The message sent through `sender_id` that the provider calls `provider_message_id`.

        Scoped by sender, never by channel alone: a provider id is only
        unique within one provider account, and a report arriving through
        one tenant's sender must never reach another tenant's message.
        """

    # --- history: what an operator looks up (tenant-scoped by the host) ---
    @abstractmethod
    async def get_conversation_by_id(self, conversation_id: str) -> Conversation | None:
        """Any conversation, open or closed, by its id (as long as history keeps it)."""

    @abstractmethod
    async def list_conversations(
        self, account_id: str, where: ConversationFilter, *, limit: int = 50, before: str | None = None
    ) -> list[Conversation]:
        """The account's conversations matching `where`, newest first (by id), ids below `before`.

        Every conversation `put_conversation` wrote with this account_id, each
        in its latest version; not only the latest of each contact.
        """

    @abstractmethod
    async def add_history(self, entry: HistoryEntry) -> None: ...

    @abstractmethod
    async def list_history(
        self, conversation_id: str, *, limit: int = 200, after: str | None = None
    ) -> list[HistoryEntry]:
        """A conversation's entries in order (by id), ids above `after`."""

    @abstractmethod
    async def list_outbound(
        self, account_id: str, where: MessageFilter, *, limit: int = 50, before: str | None = None
    ) -> list[OutboundMessage]:
        """The account's outbound messages matching `where`, newest first (by id), ids below `before`."""

    @abstractmethod
    async def purge_history(self, before: float) -> int:
        """Forget what is older than `before` (epoch seconds); return how many records went.

        History entries made before it; closed conversations closed before it
        (never the latest of a contact that is still open); outbound messages
        last updated before it. Jobs and records still in use are kept.
        """

    @abstractmethod
    async def erase_contact(self, account_id: str, contact: str, sender_ids: Sequence[str]) -> int:
        """Erase one person from an account (a right-to-erasure request); return how many records went.

        Every conversation, history entry, outbound message, queued job and
        dead-lettered event of `contact` through `sender_ids` (the account's
        senders): nothing naming them is left in the store.
        """

    # --- the live stream: a short buffer of each account's events, shared by every host ---
    @abstractmethod
    async def append_stream(self, items: Sequence[StreamItem]) -> None: ...

    @abstractmethod
    async def read_stream(self, account_id: str, *, after: str | None = None, limit: int = 100) -> list[StreamItem]:
        """The account's items in order (by id), ids above `after`."""

    @abstractmethod
    async def trim_stream(self, before: float) -> int:
        """Drop items older than `before` (epoch seconds); return how many went."""

    # --- opt-outs ---
    @abstractmethod
    async def put_opt_out(self, opt_out: OptOut) -> bool:
        """Record that `opt_out.contact` opted out of `opt_out.sender_id`; False (nothing changed) if already so."""

    @abstractmethod
    async def get_opt_out(self, sender_id: str, contact: str) -> OptOut | None: ...

    @abstractmethod
    async def delete_opt_out(self, sender_id: str, contact: str) -> bool:
        """Opt the contact back in; False if they had not opted out."""

    @abstractmethod
    async def list_opt_outs(
        self, account_id: str, *, sender_id: str | None = None, limit: int = 50, after: str | None = None
    ) -> list[OptOut]:
        """An account's opt-outs in id order (ids sort by creation), after the id `after`."""

    # --- subscriptions ---
    @abstractmethod
    async def create_subscription(self, subscription: Subscription) -> None: ...

    @abstractmethod
    async def get_subscription(self, subscription_id: str) -> Subscription | None: ...

    @abstractmethod
    async def list_subscriptions(
        self, account_id: str, *, topic: str | None = None, limit: int = 50, after: str | None = None
    ) -> list[Subscription]: ...

    @abstractmethod
    async def delete_subscription(self, subscription_id: str) -> bool: ...

    @abstractmethod
    async def add_event_failure(self, failure: EventFailure) -> None: ...

    @abstractmethod
    async def list_event_failures(
        self, subscription_id: str, *, limit: int = 50, after: str | None = None
    ) -> list[EventFailure]: ...

    # --- rate limits ---
    async def reserve_send_slot(self, key: str, rate: float, now: float) -> float:
        """Reserve the next send slot of `key` at `rate` per second; return the wait.

        Slots are spaced evenly (no bursts) with a 10% margin for network
        jitter, so no window of one second holds more than `rate` sends. This
        default keeps its state in the process; a store shared by several
        hosts must override it.
        """
        if not hasattr(self, "_slots"):
            self._slots: dict[str, float] = {}
        interval = SLOT_MARGIN / rate
        slot = max(now, self._slots.get(key, 0.0))
        self._slots[key] = slot + interval
        return slot - now

    async def admit_send(self, key: str, rate: float, now: float, ticket: str, hold: float) -> float:
        """Admit one send of `key` at `now` if `rate` allows it: return 0 and record it as `ticket`.

        Otherwise record nothing and return how long to wait before asking
        again (`admission_wait`). This is the check taken immediately before
        a send: a slot from `reserve_send_slot` is a plan, and a worker that
        wakes late must not send next to the following slot's sender.

        The provider counts a send when it arrives, somewhere between our
        admission and its answer, so a send counts from its admission until
        `seconds` after `finish_send` records its answer (`send_window`); one
        never finished (its host died) counts until `now + hold`. A send is
        refused while `count` others count at `now`: then no window of
        `seconds` at the provider can hold more than `count`, however long
        the requests travel. The check and the record are one atomic step.
        This default keeps its state in the process; a store shared by
        several hosts must override it and `finish_send`.
        """
        count, seconds = send_window(rate)
        sends = self._sends_of(key)
        # Fewer records than the limit cannot fill the window: only a full
        # one is cleared of sends that stopped counting and then looked at.
        if len(sends) >= count:
            for old in [t for t, until in sends.items() if until <= now]:
                del sends[old]
            if len(sends) >= count:
                counting = sorted(sends.values())
                return admission_wait(counting[len(counting) - count], now, count, seconds)
        sends[ticket] = now + hold
        return 0.0

    async def reserve_and_admit(
        self, key: str, rate: float, now: float, ticket: str, hold: float
    ) -> tuple[float, float | None]:
        """`reserve_send_slot`, then, only if the slot is due now, `admit_send`: one step.

        Returns the slot's wait and the admission's (None: the slot is
        later, nothing was admitted). The common case of a send — its slot
        free, the window not full — is one call. This default makes the two
        calls; a store where a call is a round trip overrides it.
        """
        wait = await self.reserve_send_slot(key, rate, now)
        if wait > 0:
            return wait, None
        return 0.0, await self.admit_send(key, rate, now, ticket, hold)

    async def finish_send(self, key: str, ticket: str, rate: float, now: float) -> None:
        """Record that the send admitted as `ticket` had its answer at `now`.

        From here it counts `seconds` more (`send_window`), not until its hold.
        """
        _, seconds = send_window(rate)
        self._sends_of(key)[ticket] = now + seconds

    def _sends_of(self, key: str) -> dict[str, float]:
        if not hasattr(self, "_sends"):
            self._sends: dict[str, dict[str, float]] = {}
        return self._sends.setdefault(key, {})
