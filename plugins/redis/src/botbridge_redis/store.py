"""`redis://host:port/db` — the store several host processes or machines share.

Records are JSON strings; per-account listings are sorted sets of ids (score
0, read with ZRANGEBYLEX: ids are time-ordered base62, so byte order is id
order). Every check-and-write is one Lua script (see `scripts.py`), and the
work queue runs on Redis Streams with one consumer group per lane, read by
every host. Times that decide anything (claim expiry, `not_before`, leases,
send slots, send times) come from the injected clock; Redis' own expiry only collects
records afterwards. Hosts sharing one Redis must therefore keep their clocks
in step (NTP), as any lease-based system does.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import secrets
import socket
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from botbridge.clock import Clock
from botbridge.errors import SenderTaken, StoreError, StoreUnavailable, VersionConflict
from botbridge.ids import new_id
from botbridge.models import (
    SECRET_MODELS,
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
    SLOT_MARGIN,
    ConversationFilter,
    Durability,
    MessageFilter,
    Store,
    Take,
    Writes,
    admission_wait,
    check_secret_fields,
    conversation_key,
    names_contact,
    send_window,
)
from botbridge_redis import scripts

logger = logging.getLogger("botbridge.redis")

DEFAULT_PREFIX = "botbridge:"
DURABILITY_MODES = ("warn", "required")
OUTBOUND_RETENTION = 30 * 86400.0  # outbound messages and their provider-id index
CONVERSATION_GRACE = 86400.0  # a conversation record outlives its timeout by a day
# A contact's index (`contact:{sender}:{contact}`) keeps a member this long past its record's expiry.
CONTACT_MARGIN = 86400.0
PURGE_BATCH = 200
# The live stream's records and indexes expire this long after their last write:
# the host trims the buffer hourly, this only collects it if trimming stops.
STREAM_TTL = 6 * 3600.0
LIST_BATCH = 1000  # the most records a filtered listing reads per round trip
MESSAGE_KINDS = ("mo", "mt", "dr", "conversation")
LANES = ("message", "event")
# Set once the keys of the first schema (`apikey:{hash}` -> account) are converted.
API_KEYS_SCHEMA = "2"
# Set once outbound messages written before history was kept are indexed.
HISTORY_SCHEMA = "1"
# The aging sets: per kind of history record, members `{id}:{owner}` scored by
# the earliest time the record may be purged or has expired.
AGING = {"history": "entry", "conversations": "conversation", "outbound": "outbound"}
LISTING = {"conversations": "conversations", "outbound": "outbounds"}  # per account, by kind
# Connection trouble (refused, reset, timed out, still loading after a
# restart, a replica that cannot take writes): the host answers 503.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    redis_errors.MasterDownError,
    OSError,
)

P = ParamSpec("P")
T = TypeVar("T")


def lane_of(kind: str) -> str:
    return "event" if kind == "event" else "message"


def parse_url(url: str) -> tuple[str, str, float, str]:
    """Split `redis://…/db?prefix=…&outbound_ttl=…&durability=…` into (client URL, prefix, outbound TTL, durability)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in ("prefix", "outbound_ttl", "durability")}
    rest = [(k, v) for k, v in query if k not in ours]
    prefix = ours.get("prefix") or DEFAULT_PREFIX
    retention = float(ours["outbound_ttl"]) if ours.get("outbound_ttl") else OUTBOUND_RETENTION
    durability = ours.get("durability") or "warn"
    if durability not in DURABILITY_MODES:
        raise ValueError(f"redis store option durability must be one of {', '.join(DURABILITY_MODES)}")
    return urlunsplit(parts._replace(query=urlencode(rest))), prefix, retention, durability


class NotDurable(StoreError):
    """`durability=required`, and the Redis server would lose accepted work in a crash (or cannot say)."""


def judge_persistence(config: dict[str, str] | None) -> Durability:
    """How durable a Redis with these settings (CONFIG GET, None when refused) keeps accepted work."""
    if config is None:
        return Durability(None, "CONFIG GET is refused (renamed or not permitted): persistence unknown")
    appendonly, appendfsync, save = (config.get(k, "") for k in ("appendonly", "appendfsync", "save"))
    detail = f"appendonly={appendonly} appendfsync={appendfsync} save='{save}'"
    return Durability(appendonly == "yes" and appendfsync in ("everysec", "always"), detail)


def risk_of(durability: Durability) -> str:
    if durability.durable is None:
        return f"Redis persistence could not be read ({durability.detail})"
    lost = "everything it holds" if "save=''" in durability.detail else "everything since its last snapshot"
    if "appendonly=yes" in durability.detail:  # appendfsync=no: the OS flushes when it likes
        lost = "the last seconds of writes the OS had not flushed"
    return (
        f"Redis runs without a synced append-only file ({durability.detail}): a Redis restart or crash loses "
        f"{lost} — accepted messages already answered 2xx, dedupe keys, conversations and queued work. "
        "Set appendonly yes with appendfsync everysec or always; ?durability=required refuses such a server"
    )


def guarded(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn connection trouble into StoreUnavailable (the host's 503 + Retry-After)."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"redis is unavailable: {type(exc).__name__}: {exc}") from exc

    return wrapper


def _job_args(jobs: Sequence[Job]) -> list[str]:
    args: list[str] = []
    for job in jobs:
        args += [job.id, job.key, job.kind, repr(float(job.not_before)), job.model_dump_json()]
    return args


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisStore(Store):
    shared = True

    def __init__(
        self,
        url: str,
        clock: Clock,
        *,
        prefix: str = DEFAULT_PREFIX,
        outbound_ttl: float = OUTBOUND_RETENTION,
        consumer: str | None = None,
        durability: str = "warn",
    ) -> None:
        self.url = url
        self.clock = clock
        self.prefix = prefix
        self.outbound_ttl = outbound_ttl
        # One consumer of the stream groups per store instance (one per host process).
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._redis: Redis | None = None
        self._scripts: dict[str, Any] = {}
        self.required_durability = durability
        self._durability: Durability | None = None

    @classmethod
    def from_url(cls, url: str, clock: Clock) -> RedisStore:
        client_url, prefix, retention, durability = parse_url(url)
        return cls(client_url, clock, prefix=prefix, outbound_ttl=retention, durability=durability)

    # --- plumbing ---

    @property
    def redis(self) -> Any:  # a Redis with decode_responses=True: replies are str, not redis-py's bytes | str
        if self._redis is None:
            raise StoreUnavailable("store is not open")
        return self._redis

    def k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def _script(self, name: str, *args: object) -> Any:
        return await self._scripts[name](keys=[], args=[self.prefix, *args])

    @staticmethod
    def _queue_script(pipe: Pipeline, name: str, args: list[Any]) -> None:
        """Queue a script in a MULTI by its text (EVAL), not its digest.

        redis-py asks SCRIPT EXISTS before every pipeline holding a registered
        script (a round trip each time), and an EVALSHA that Redis no longer
        knows (it restarted) fails inside EXEC after the commands queued
        before it took effect. Redis caches the compiled script either way.
        """
        pipe.eval(getattr(scripts, name), 0, *args)

    @guarded
    async def open(self) -> None:
        if self._redis is None:
            self._redis = Redis.from_url(
                self.url,
                decode_responses=True,
                socket_timeout=5.0,
                socket_connect_timeout=2.0,
                # A couple of quick retries ride over a dropped pooled connection;
                # a Redis that stays down surfaces as StoreUnavailable at once.
                retry=Retry(ExponentialWithJitterBackoff(cap=0.2, base=0.02), retries=2),
                client_name="botbridge",
            )
            for name in (
                "CLAIM",
                "ENQUEUE",
                "CLAIM_JOBS",
                "COMPLETE",
                "RETRY",
                "RELEASE_LEASES",
                "SEND_SLOT",
                "ADMIT_SEND",
                "SLOT_AND_ADMIT",
                "FINISH_SEND",
                "CREATE_CONNECTOR",
                "UPDATE_CONNECTOR",
                "DELETE_CONNECTOR",
                "CREATE_API_KEY",
                "SET_API_KEY_FIELD",
                "INDEX_CONTACT",
                "ERASE_JOBS",
                "TRIM_STREAM",
                "PUT_OPT_OUT",
                "GET_OPT_OUT",
                "DELETE_OPT_OUT",
            ):
                self._scripts[name] = self._redis.register_script(getattr(scripts, name))
        await self._check_persistence()
        await self._ensure_groups()
        await self._forget_idle_consumers()
        await self._migrate_api_keys()
        await self._migrate_history()

    async def _check_persistence(self) -> None:
        config: dict[str, str] | None = {}
        for name in ("appendonly", "appendfsync", "save"):
            try:
                found = await self.redis.config_get(name)
            except redis_errors.ResponseError:  # CONFIG renamed away, or the ACL user may not use it
                config = None
                break
            assert config is not None
            config.update(found)
        self._durability = durability = judge_persistence(config)
        if durability.durable:
            return
        if self.required_durability == "required":
            raise NotDurable(f"durability=required: {risk_of(durability)}")
        logger.warning("%s", risk_of(durability))

    def durability(self) -> Durability | None:
        return self._durability

    async def close(self) -> None:
        if self._redis is not None:
            redis, self._redis = self._redis, None
            await redis.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except Exception:
            return False

    async def _ensure_groups(self) -> None:
        for lane in LANES:
            try:
                await self.redis.xgroup_create(self.k("stream", lane), scripts.GROUP, id="0", mkstream=True)
            except redis_errors.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _forget_idle_consumers(self, idle: float = 86400.0) -> None:
        """Drop consumers (of hosts long gone) that hold nothing and were idle for a day."""
        for lane in LANES:
            stream = self.k("stream", lane)
            for consumer in await self.redis.xinfo_consumers(stream, scripts.GROUP):
                if consumer["pending"] == 0 and consumer["idle"] > idle * 1000:
                    await self.redis.xgroup_delconsumer(stream, scripts.GROUP, consumer["name"])

    async def _list(
        self,
        index: str,
        record: str,
        after: str | None,
        limit: int,
        load: Callable[[str], T],
        keep: Callable[[T], bool],
        *,
        newest: bool = False,
    ) -> list[T]:
        """Records of a lex-ordered id index past the id `after`, in id order (`newest`: reversed, ids below it).

        Filters are applied here, so a page reads on (in growing batches) until
        it has `limit` matches or the index ends; members whose record expired
        are skipped (`purge_history` removes them).
        """
        found: list[T] = []
        cursor = f"({after}" if after else ("+" if newest else "-")
        batch = max(limit, 50)
        while len(found) < limit:
            if newest:
                ids = await self.redis.zrevrangebylex(index, cursor, "-", start=0, num=batch)
            else:
                ids = await self.redis.zrangebylex(index, cursor, "+", start=0, num=batch)
            if not ids:
                break
            for raw in await self.redis.mget([self.k(record, i) for i in ids]):
                if raw is None:
                    continue
                item = load(raw)
                if keep(item):
                    found.append(item)
                    if len(found) >= limit:
                        break
            if len(ids) < batch:
                break
            cursor = f"({ids[-1]}"
            batch = min(batch * 2, max(limit, LIST_BATCH))
        return found

    # --- API keys ---

    async def _migrate_api_keys(self) -> None:
        # Keys of the first schema all came from BOTBRIDGE_API_KEYS: they
        # become "setting" keys. Idempotent, so hosts opening at once (or a
        # crash halfway) do no harm; the marker spares later opens the SCAN.
        if await self.redis.get(self.k("schema", "apikeys")) == API_KEYS_SCHEMA:
            return
        legacy = _glob_escape(self.k("apikey", "")) + "*"
        async for name in self.redis.scan_iter(match=legacy, count=500):
            account = await self.redis.get(name)
            if account is not None:
                now = self.clock.now()
                key_hash = name[len(self.k("apikey", "")) :]
                await self.create_api_key(
                    ApiKey(id=new_id(now), account_id=account, key_hash=key_hash, source="setting", created_at=now)
                )
            await self.redis.delete(name)
        await self.redis.set(self.k("schema", "apikeys"), API_KEYS_SCHEMA)

    async def _migrate_history(self) -> None:
        # Outbound messages written before history was kept are in no listing
        # and no contact's index: index them once (under their sender's
        # account), leaving the records and their TTLs as they are. Idempotent.
        if await self.redis.get(self.k("schema", "history")) == HISTORY_SCHEMA:
            return
        names: list[str] = []
        async for name in self.redis.scan_iter(match=_glob_escape(self.k("outbound", "")) + "*", count=500):
            names.append(name)
            if len(names) >= PURGE_BATCH:
                await self._index_old_outbound(names)
                names = []
        if names:
            await self._index_old_outbound(names)
        await self.redis.set(self.k("schema", "history"), HISTORY_SCHEMA)

    async def _index_old_outbound(self, names: list[str]) -> None:
        messages = [OutboundMessage.model_validate_json(raw) for raw in await self.redis.mget(names) if raw]
        accounts: dict[str, str] = {}
        for sender_id in {m.sender_id for m in messages if not m.account_id}:
            sender = await self.get_sender(sender_id)
            accounts[sender_id] = sender.account_id if sender else ""
        now = self.clock.now()
        contacts: dict[tuple[str, str], dict[str, float]] = {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for message in messages:
                self._index_outbound(pipe, message, message.account_id or accounts[message.sender_id], now, contacts)
            self._index_contacts(pipe, contacts, now)
            await pipe.execute()

    @guarded
    async def create_api_key(self, key: ApiKey) -> bool:
        fields: list[str] = ["name", key.name, "source", key.source, "created_at", repr(key.created_at)]
        for name, value in (("last_used_at", key.last_used_at), ("revoked_at", key.revoked_at)):
            if value is not None:
                fields += [name, repr(value)]
        return bool(await self._script("CREATE_API_KEY", key.id, key.key_hash, key.account_id, *fields))

    @guarded
    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        found = await self.redis.hgetall(self.k("key", key_hash))
        return ApiKey.model_validate(found) if found else None

    @guarded
    async def get_api_key(self, key_id: str) -> ApiKey | None:
        key_hash = await self.redis.get(self.k("key-id", key_id))
        return await self.api_key_by_hash(key_hash) if key_hash else None

    @guarded
    async def list_api_keys(
        self, account_id: str | None = None, *, limit: int = 50, after: str | None = None
    ) -> list[ApiKey]:
        index = self.k("keys") if account_id is None else self.k("keys", account_id)
        ids = await self.redis.zrangebylex(index, f"({after}" if after else "-", "+", start=0, num=limit)
        if not ids:
            return []
        hashes = await self.redis.mget([self.k("key-id", i) for i in ids])
        async with self.redis.pipeline(transaction=False) as pipe:
            for key_hash in hashes:
                pipe.hgetall(self.k("key", key_hash or ""))
            found = await pipe.execute()
        return [ApiKey.model_validate(record) for record in found if record]

    @guarded
    async def touch_api_key(self, key_id: str, at: float) -> None:
        await self._script("SET_API_KEY_FIELD", key_id, "last_used_at", repr(at), "0")

    @guarded
    async def revoke_api_key(self, key_id: str, at: float) -> bool:
        return bool(await self._script("SET_API_KEY_FIELD", key_id, "revoked_at", repr(at), "1"))

    # --- host metadata ---

    @guarded
    async def get_meta(self, name: str) -> str | None:
        value: str | None = await self.redis.get(self.k("meta", name))
        return value

    @guarded
    async def put_meta(self, name: str, value: str, *, only_if_absent: bool = False) -> bool:
        return bool(await self.redis.set(self.k("meta", name), value, nx=only_if_absent))

    # --- stored secrets ---

    @guarded
    async def secret_record_ids(self, kind: SecretKind, *, limit: int | None = None) -> list[str]:
        start = self.k(kind, "")
        if kind not in SECRET_MODELS:  # before a SCAN of everything
            raise ValueError(f"no secrets in {kind!r} records")
        ids: list[str] = []
        async for name in self.redis.scan_iter(match=_glob_escape(start) + "*", count=500):
            ids.append(name[len(start) :])
            if limit is not None and len(ids) >= limit:
                break
        return sorted(ids)

    @guarded
    async def replace_secrets(
        self, kind: SecretKind, record_id: str, expected: dict[str, str], new: dict[str, str]
    ) -> bool:
        check_secret_fields(kind, expected, new)
        name = self.k(kind, record_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    # WATCH, then compare in Python: a record changed by anyone
                    # between the read and the write makes EXEC fail, and we read again.
                    await pipe.watch(name)
                    raw = await pipe.get(name)
                    if raw is None:
                        return False
                    record = SECRET_MODELS[kind].model_validate_json(raw)
                    if any(getattr(record, field) != value for field, value in expected.items()):
                        return False
                    pipe.multi()
                    pipe.set(name, record.model_copy(update=new).model_dump_json(), xx=True)
                    await pipe.execute()
                    return True
                except redis_errors.WatchError:
                    continue

    # --- senders ---

    @guarded
    async def create_sender(self, sender: Sender) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.k("sender", sender.id), sender.model_dump_json())
            pipe.zadd(self.k("senders", sender.account_id), {sender.id: 0})
            await pipe.execute()

    @guarded
    async def get_sender(self, sender_id: str) -> Sender | None:
        raw = await self.redis.get(self.k("sender", sender_id))
        return Sender.model_validate_json(raw) if raw else None

    @guarded
    async def list_senders(self, account_id: str, *, limit: int = 50, after: str | None = None) -> list[Sender]:
        return await self._list(
            self.k("senders", account_id), "sender", after, limit, Sender.model_validate_json, lambda s: True
        )

    @guarded
    async def update_sender(self, sender: Sender) -> None:
        await self.redis.set(self.k("sender", sender.id), sender.model_dump_json(), xx=True)

    @guarded
    async def delete_sender(self, sender_id: str) -> bool:
        raw = await self.redis.get(self.k("sender", sender_id))
        if raw is None:
            return False
        sender = Sender.model_validate_json(raw)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.k("sender", sender_id))
            pipe.zrem(self.k("senders", sender.account_id), sender_id)
            deleted, _ = await pipe.execute()
        return bool(deleted)

    # --- connectors ---

    @guarded
    async def create_connector(self, connector: Connector) -> None:
        done = await self._script(
            "CREATE_CONNECTOR", connector.id, connector.account_id, connector.sender_id, connector.model_dump_json()
        )
        if not done:
            raise SenderTaken(connector.sender_id)

    @guarded
    async def get_connector(self, connector_id: str) -> Connector | None:
        raw = await self.redis.get(self.k("connector", connector_id))
        return Connector.model_validate_json(raw) if raw else None

    @guarded
    async def connector_for_sender(self, sender_id: str) -> Connector | None:
        connector_id = await self.redis.get(self.k("binding", sender_id))
        if connector_id is None:
            return None
        connector = await self.get_connector(connector_id)
        # Read twice without a transaction: a binding that moved in between is not this sender's.
        return connector if connector is not None and connector.sender_id == sender_id else None

    @guarded
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
        def keep(c: Connector) -> bool:
            return (
                (type is None or c.type == type)
                and (sender_id is None or c.sender_id == sender_id)
                and (external_id is None or c.external_id == external_id)
            )

        return await self._list(
            self.k("connectors", account_id), "connector", after, limit, Connector.model_validate_json, keep
        )

    @guarded
    async def update_connector(self, connector: Connector, expected_version: int) -> None:
        result = await self._script(
            "UPDATE_CONNECTOR",
            connector.id,
            expected_version,
            connector.sender_id,
            connector.account_id,
            connector.model_dump_json(),
        )
        if result == -2:
            raise SenderTaken(connector.sender_id)
        if result != 1:
            raise VersionConflict(connector.id)

    @guarded
    async def delete_connector(self, connector_id: str) -> bool:
        return bool(await self._script("DELETE_CONNECTOR", connector_id))

    # --- conversations ---

    @guarded
    async def get_conversation(self, sender_id: str, contact: str) -> Conversation | None:
        raw = await self.redis.get(self.k("conv", sender_id, contact))
        return Conversation.model_validate_json(raw) if raw else None

    @guarded
    async def put_conversation(self, conversation: Conversation) -> None:
        await self.write(Writes(conversations=[conversation]))

    # --- dedupe ---

    @guarded
    async def claim(self, key: str, ttl: float) -> bool:
        now = self.clock.now()
        return bool(await self._script("CLAIM", repr(now), key, repr(now + ttl), _ms(ttl)))

    # --- the durable work queue ---

    @guarded
    async def enqueue(self, jobs: Sequence[Job], *, dedupe_key: str | None = None, dedupe_ttl: float = 0.0) -> bool:
        now = self.clock.now()
        added = await self._script(
            "ENQUEUE",
            repr(now),
            dedupe_key or "",
            repr(now + dedupe_ttl),
            _ms(dedupe_ttl),
            *_job_args(jobs),
        )
        return bool(added)

    @guarded
    async def claim_jobs(self, kinds: Sequence[str], *, limit: int, lease: float) -> list[Job]:
        claimed: list[Job] = []
        for lane in dict.fromkeys(lane_of(kind) for kind in kinds):
            if len(claimed) >= limit:
                break
            now = self.clock.now()
            args = [
                repr(now),
                lane,
                self.consumer,
                repr(now + lease),
                limit - len(claimed),
                # pending entries with no lease record are taken over after twice the lease
                _ms(2 * lease),
                *(kind for kind in kinds if lane_of(kind) == lane),
            ]
            try:
                found = await self._script("CLAIM_JOBS", *args)
            except redis_errors.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._ensure_groups()  # the data went away under us (a restart without persistence)
                found = await self._script("CLAIM_JOBS", *args)
            for receipt, data in zip(found[::2], found[1::2], strict=True):
                job = Job.model_validate_json(data)
                job.receipt = receipt
                claimed.append(job)
        return claimed

    @guarded
    async def complete_job(self, job: Job, *, then: Sequence[Job] = ()) -> None:
        await self.finish_job(job, then=then)

    @guarded
    async def finish_job(
        self, job: Job, *, then: Sequence[Job] = (), writes: Writes | None = None, take: Take | None = None
    ) -> Job | None:
        """The records, then the completion script, in one MULTI: one round trip, all or nothing.

        A job no longer queued (another host took it over after its lease
        and finished it) is left alone, follow-ups included.
        """
        now = self.clock.now()
        args = [
            self.prefix,
            repr(now),
            job.id,
            job.key,
            ",".join(take.kinds) if take else "",
            repr(now + take.lease) if take else "0",
            *_job_args(then),
        ]
        if writes:
            async with self.redis.pipeline(transaction=True) as pipe:
                await self._queue_writes(pipe, writes)
                self._queue_script(pipe, "COMPLETE", args)
                answer = (await pipe.execute())[-1]
        else:
            answer = await self._scripts["COMPLETE"](keys=[], args=args)
        if not isinstance(answer, list):
            return None
        _, receipt, taken_id = answer
        taken = next(j for j in then if j.id == taken_id).model_copy()
        taken.receipt = receipt
        return taken

    @guarded
    async def retry_job(self, job: Job, *, not_before: float, error: str) -> None:
        retried = job.model_copy(update={"attempts": job.attempts + 1, "not_before": not_before, "last_error": error})
        await self._script(
            "RETRY", repr(self.clock.now()), job.id, job.key, repr(float(not_before)), retried.model_dump_json()
        )

    @guarded
    async def release_leases(self) -> int:
        """End every lease now — of every host sharing this Redis.

        The engine never calls this for a shared store (a restarting host
        cannot tell its own leases from those of hosts still running); leases
        simply expire. It is here for the contract and for an operator who has
        stopped every host.
        """
        return int(await self._script("RELEASE_LEASES"))

    @guarded
    async def queue_depth(self) -> dict[str, int]:
        depth = await self.redis.hgetall(self.k("depth"))
        return {kind: int(n) for kind, n in depth.items() if int(n) > 0}

    # --- outbound messages ---

    @guarded
    async def put_outbound(self, message: OutboundMessage, channel: str) -> None:
        await self.write(Writes(outbound=[(message, channel)]))

    def _outbound_expiry(self, now: float) -> float:
        """When an outbound message or history entry written now expires (inf: kept until purged)."""
        return now + self.outbound_ttl if self.outbound_ttl > 0 else math.inf

    async def _queue_writes(self, pipe: Pipeline, writes: Writes) -> None:
        now = self.clock.now()
        contacts: dict[tuple[str, str], dict[str, float]] = {}
        history_ttl = _ms(self.outbound_ttl) if self.outbound_ttl > 0 else None
        for conversation in writes.conversations:
            # The latest of a contact is kept for its timeout (counted from now, when
            # it last moved) plus a day, so the engine still finds an expired one to
            # close at the bot; its copy by id is history, kept as long as messages.
            ttl = math.ceil(conversation.timeout + CONVERSATION_GRACE) if conversation.timeout else None
            data = conversation.model_dump_json()
            pipe.set(self.k("conv", conversation.sender_id, conversation.contact), data, ex=ttl)
            pipe.set(self.k("conversation", conversation.id), data, px=history_ttl)
            expiry = self._outbound_expiry(now)
            account = conversation.account_id or ""
            if account:
                pipe.zadd(self.k("conversations", account), {conversation.id: 0})
                pipe.zrem(self.k("aging", "conversations"), f"{conversation.id}:")  # written before it had one
            closed = conversation.closed_at or conversation.last_mo_at
            purgeable = closed if conversation.state == "closed" else math.inf
            pipe.zadd(self.k("aging", "conversations"), {f"{conversation.id}:{account}": min(purgeable, expiry)})
            member = f"conversation:{conversation.id}"
            contacts.setdefault((conversation.sender_id, conversation.contact), {})[member] = expiry
        outbound_ttl = _ms(self.outbound_ttl) if self.outbound_ttl > 0 else None
        for message, _ in writes.outbound:
            pipe.set(self.k("outbound", message.id), message.model_dump_json(), px=outbound_ttl)
            if message.provider_message_id:
                index = self.k("outbound-by-sender", message.sender_id, message.provider_message_id)
                pipe.set(index, message.id, px=outbound_ttl)
            self._index_outbound(pipe, message, message.account_id or "", now, contacts)
        for entry in writes.history:
            expiry = self._outbound_expiry(now)
            pipe.set(self.k("entry", entry.id), entry.model_dump_json(), px=outbound_ttl)
            pipe.zadd(self.k("history", entry.conversation_id), {entry.id: 0})
            pipe.zadd(self.k("aging", "history"), {f"{entry.id}:{entry.conversation_id}": min(entry.at, expiry)})
            contacts.setdefault((entry.sender_id, entry.contact), {})[f"entry:{entry.id}"] = expiry
        self._index_contacts(pipe, contacts, now)
        self._queue_stream(pipe, writes.stream)

    def _queue_stream(self, pipe: Pipeline, items: Sequence[StreamItem]) -> None:
        """Queue live-stream items: each record, its account's index entry and its aging member.

        Every key written gets the stream TTL again: the indexes outlive none of their records by more than it.
        """
        if not items:
            return
        ttl = _ms(STREAM_TTL)
        accounts: dict[str, dict[str, float]] = {}
        for item in items:
            pipe.set(self.k("live-item", item.id), item.model_dump_json(), px=ttl)
            accounts.setdefault(item.account_id, {})[item.id] = 0
        for account, ids in accounts.items():
            pipe.zadd(self.k("live", account), ids)
            pipe.pexpire(self.k("live", account), ttl)
        pipe.zadd(self.k("live-aging"), {f"{item.id}:{item.account_id}": float(item.at) for item in items})
        pipe.pexpire(self.k("live-aging"), ttl)

    def _index_outbound(
        self,
        pipe: Pipeline,
        message: OutboundMessage,
        account: str,
        now: float,
        contacts: dict[tuple[str, str], dict[str, float]],
    ) -> None:
        """Queue the listing and aging entries of an outbound message; add it to `contacts`."""
        expiry = self._outbound_expiry(now)
        if account:
            pipe.zadd(self.k("outbounds", account), {message.id: 0})
            pipe.zrem(self.k("aging", "outbound"), f"{message.id}:")
        updated = message.updated_at.timestamp()
        pipe.zadd(self.k("aging", "outbound"), {f"{message.id}:{account}": min(updated, expiry)})
        contacts.setdefault((message.sender_id, message.contact), {})[f"outbound:{message.id}"] = expiry

    def _index_contacts(self, pipe: Pipeline, contacts: dict[tuple[str, str], dict[str, float]], now: float) -> None:
        for (sender_id, contact), members in contacts.items():
            pairs = [part for member, expiry in members.items() for part in (member, repr(expiry))]
            self._queue_script(
                pipe, "INDEX_CONTACT", [self.prefix, repr(now), repr(CONTACT_MARGIN), sender_id, contact, *pairs]
            )

    @guarded
    async def write(self, writes: Writes) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            await self._queue_writes(pipe, writes)
            await pipe.execute()

    @guarded
    async def get_outbound(self, message_id: str) -> OutboundMessage | None:
        raw = await self.redis.get(self.k("outbound", message_id))
        return OutboundMessage.model_validate_json(raw) if raw else None

    @guarded
    async def outbound_by_provider_id(self, sender_id: str, provider_message_id: str) -> OutboundMessage | None:
        message_id = await self.redis.get(self.k("outbound-by-sender", sender_id, provider_message_id))
        if message_id:
            return await self.get_outbound(message_id)
        # Messages indexed before the index was per sender (at most the outbound
        # TTL ago) sit under their channel: found there, they still must be this sender's.
        sender = await self.get_sender(sender_id)
        if sender is None:
            return None
        message_id = await self.redis.get(self.k("outbound-by-provider", sender.channel, provider_message_id))
        message = await self.get_outbound(message_id) if message_id else None
        return message if message is not None and message.sender_id == sender_id else None

    # --- history ---

    @guarded
    async def get_conversation_by_id(self, conversation_id: str) -> Conversation | None:
        raw = await self.redis.get(self.k("conversation", conversation_id))
        return Conversation.model_validate_json(raw) if raw else None

    @guarded
    async def list_conversations(
        self, account_id: str, where: ConversationFilter, *, limit: int = 50, before: str | None = None
    ) -> list[Conversation]:
        return await self._list(
            self.k("conversations", account_id),
            "conversation",
            before,
            limit,
            Conversation.model_validate_json,
            lambda c: c.account_id == account_id and where.matches(c),
            newest=True,
        )

    @guarded
    async def add_history(self, entry: HistoryEntry) -> None:
        await self.write(Writes(history=[entry]))

    @guarded
    async def list_history(
        self, conversation_id: str, *, limit: int = 200, after: str | None = None
    ) -> list[HistoryEntry]:
        return await self._list(
            self.k("history", conversation_id), "entry", after, limit, HistoryEntry.model_validate_json, lambda e: True
        )

    @guarded
    async def list_outbound(
        self, account_id: str, where: MessageFilter, *, limit: int = 50, before: str | None = None
    ) -> list[OutboundMessage]:
        # A message without account_id was written before history was kept and
        # indexed under its sender's account when the store was first opened since.
        return await self._list(
            self.k("outbounds", account_id),
            "outbound",
            before,
            limit,
            OutboundMessage.model_validate_json,
            lambda m: m.account_id in (account_id, None) and where.matches(m),
            newest=True,
        )

    # --- the live stream ---

    @guarded
    async def append_stream(self, items: Sequence[StreamItem]) -> None:
        await self.write(Writes(stream=list(items)))

    @guarded
    async def read_stream(self, account_id: str, *, after: str | None = None, limit: int = 100) -> list[StreamItem]:
        """The account's ids in order (`ZRANGEBYLEX`), then their records.

        An id whose record is gone (expired: trimming stopped for longer than
        the TTL) is skipped and dropped from the index.
        """
        index = self.k("live", account_id)
        found: list[StreamItem] = []
        cursor = f"({after}" if after else "-"
        while len(found) < limit:
            wanted = limit - len(found)
            ids = await self.redis.zrangebylex(index, cursor, "+", start=0, num=wanted)
            if not ids:
                break
            raws = await self.redis.mget([self.k("live-item", i) for i in ids])
            found += [StreamItem.model_validate_json(raw) for raw in raws if raw is not None]
            expired = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
            if expired:
                await self.redis.zrem(index, *expired)
            if len(ids) < wanted:
                break
            cursor = f"({ids[-1]}"
        return found

    @guarded
    async def trim_stream(self, before: float) -> int:
        """Read `live-aging` up to `before` a batch at a time (`TRIM_STREAM`: records and indexes together)."""
        gone = 0
        while True:
            deleted, read = await self._script("TRIM_STREAM", repr(float(before)), PURGE_BATCH)
            gone += int(deleted)
            if int(read) < PURGE_BATCH:
                return gone

    @guarded
    async def purge_history(self, before: float) -> int:
        """Read the aging sets up to `before`: purge what is old, drop members whose records expired.

        Each batch is read and removed in one WATCH/MULTI: a record that
        changes meanwhile (a late delivery report) is read again, not lost.
        """
        gone = 0
        for kind in AGING:
            kept = 0
            while True:
                aging = self.k("aging", kind)
                members = await self.redis.zrangebyscore(aging, "-inf", f"({before!r}", start=kept, num=PURGE_BATCH)
                if not members:
                    break
                try:
                    went, stayed = await self._purge_batch(kind, members, before)
                except redis_errors.WatchError:
                    continue
                gone += went
                kept += stayed
        return gone

    async def _purge_batch(self, kind: str, members: list[str], before: float) -> tuple[int, int]:
        """Purge or drop these members of one aging set; return (records purged, members kept)."""
        aging = self.k("aging", kind)
        split = [(member, *member.split(":", 1)) for member in members]
        keys = [self.k(AGING[kind], record_id) for _, record_id, _ in split]
        gone = kept = 0
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(*keys)
            raws = await pipe.mget(keys)
            records: list[Any] = []
            derived: list[str] = []  # the latest conversation of each; each message's provider-id index
            for raw in raws:
                record: Any = None
                if raw is not None and kind == "history":
                    record = HistoryEntry.model_validate_json(raw)
                elif raw is not None and kind == "conversations":
                    record = Conversation.model_validate_json(raw)
                    derived.append(self.k("conv", record.sender_id, record.contact))
                elif raw is not None:
                    record = OutboundMessage.model_validate_json(raw)
                    if record.provider_message_id:
                        derived.append(self.k("outbound-by-sender", record.sender_id, record.provider_message_id))
                records.append(record)
            values: dict[str, str | None] = {}
            if derived:
                await pipe.watch(*derived)
                values = dict(zip(derived, await pipe.mget(derived), strict=True))
            pipe.multi()
            for (member, record_id, owner), key, record in zip(split, keys, records, strict=True):
                if record is None:  # expired: only its index entries are left
                    pipe.zrem(aging, member)
                    if kind == "history":
                        pipe.zrem(self.k("history", owner), record_id)
                    elif owner:
                        pipe.zrem(self.k(LISTING[kind], owner), record_id)
                    continue
                if isinstance(record, HistoryEntry):
                    old = record.at < before
                elif isinstance(record, Conversation):
                    latest = values.get(self.k("conv", record.sender_id, record.contact))
                    old = (
                        record.state == "closed"
                        and (record.closed_at or record.last_mo_at) < before
                        and (latest is None or Conversation.model_validate_json(latest).id != record.id)
                    )
                else:
                    old = record.updated_at.timestamp() < before
                if not old:
                    kept += 1
                    continue
                gone += 1
                pipe.delete(key)
                pipe.zrem(aging, member)
                pipe.zrem(self.k("contact", record.sender_id, record.contact), f"{AGING[kind]}:{record_id}")
                if isinstance(record, HistoryEntry):
                    pipe.zrem(self.k("history", record.conversation_id), record_id)
                else:
                    pipe.zrem(self.k(LISTING[kind], record.account_id or owner), record_id)
                if isinstance(record, OutboundMessage) and record.provider_message_id:
                    index = self.k("outbound-by-sender", record.sender_id, record.provider_message_id)
                    if values.get(index) == record_id:
                        pipe.delete(index)
            await pipe.execute()
        return gone, kept

    @guarded
    async def erase_contact(self, account_id: str, contact: str, sender_ids: Sequence[str]) -> int:
        """Erase a contact's records (through `contact:{sender}:{contact}`), dead letters and queued jobs.

        Records and dead letters go in WATCH/MULTI transactions, one per
        sender and per batch; the conversations' queued jobs in one script.
        Event jobs are picked by reading the queue first: one enqueued while
        the erasure runs can be missed (as one written by a job that was
        running when it started).
        """
        senders = list(dict.fromkeys(sender_ids))
        if not senders:
            return 0
        gone = 0
        for sender_id in senders:
            gone += await self._erase_records(account_id, contact, sender_id)
        subscriptions = await self.redis.zrange(self.k("subscriptions", account_id), 0, -1)
        for subscription_id in subscriptions:
            gone += await self._erase_failures(subscription_id, contact)
        gone += await self._erase_jobs(set(subscriptions), contact, senders)
        return gone

    async def _erase_records(self, account_id: str, contact: str, sender_id: str) -> int:
        index, latest = self.k("contact", sender_id, contact), self.k("conv", sender_id, contact)
        sender = await self.get_sender(sender_id)
        while True:
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    await pipe.watch(index, latest)
                    members = await pipe.zrange(index, 0, -1)
                    keys = [self.prefix + member for member in members]
                    if keys:
                        await pipe.watch(*keys)
                    raws = await pipe.mget(keys) if keys else []
                    gone = int(await pipe.exists(latest))
                    provider_keys: list[str] = []
                    for member, raw in zip(members, raws, strict=True):
                        if raw is not None and member.startswith("outbound:"):
                            message = OutboundMessage.model_validate_json(raw)
                            if message.provider_message_id:
                                provider_keys.append(
                                    self.k("outbound-by-sender", sender_id, message.provider_message_id)
                                )
                                if sender is not None:  # the index of an earlier version, per channel
                                    provider_keys.append(
                                        self.k("outbound-by-provider", sender.channel, message.provider_message_id)
                                    )
                    provider_ids: dict[str, str | None] = {}
                    if provider_keys:
                        provider_ids = dict(zip(provider_keys, await pipe.mget(provider_keys), strict=True))
                    pipe.multi()
                    pipe.delete(latest, index)
                    for member, raw in zip(members, raws, strict=True):
                        gone += raw is not None
                        self._queue_erase(pipe, account_id, member, raw, provider_ids)
                    await pipe.execute()
                    return gone
            except redis_errors.WatchError:
                continue

    def _queue_erase(
        self, pipe: Pipeline, account_id: str, member: str, raw: str | None, provider_ids: dict[str, str | None]
    ) -> None:
        """Queue the deletion of one record of a contact's index and of its index entries."""
        kind, record_id = member.split(":", 1)
        pipe.delete(self.prefix + member)
        if kind == "entry":
            if raw is not None:
                entry = HistoryEntry.model_validate_json(raw)
                pipe.zrem(self.k("history", entry.conversation_id), record_id)
                pipe.zrem(self.k("aging", "history"), f"{record_id}:{entry.conversation_id}")
            return  # one that expired left only ids, which purge_history drops
        owners = {account_id, ""}
        if raw is not None:
            record: Conversation | OutboundMessage
            if kind == "conversation":
                record = Conversation.model_validate_json(raw)
            else:
                record = OutboundMessage.model_validate_json(raw)
                for name, value in provider_ids.items():
                    if value == record_id:
                        pipe.delete(name)
            owners.add(record.account_id or "")
        listing, aging = ("conversations", "conversations") if kind == "conversation" else ("outbounds", "outbound")
        for owner in owners:
            if owner:
                pipe.zrem(self.k(listing, owner), record_id)
            pipe.zrem(self.k("aging", aging), f"{record_id}:{owner}")

    async def _erase_failures(self, subscription_id: str, contact: str) -> int:
        index = self.k("failures", subscription_id)
        gone, after = 0, "-"
        while True:
            ids = await self.redis.zrangebylex(index, after, "+", start=0, num=PURGE_BATCH)
            if not ids:
                return gone
            raws = await self.redis.mget([self.k("failure", i) for i in ids])
            doomed = [
                i
                for i, raw in zip(ids, raws, strict=True)
                if raw is None or names_contact(EventFailure.model_validate_json(raw).event, contact)
            ]
            if doomed:
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.delete(*[self.k("failure", i) for i in doomed])
                    pipe.zrem(index, *doomed)
                    deleted, _ = await pipe.execute()
                gone += int(deleted)
            after = f"({ids[-1]}"

    async def _erase_jobs(self, subscriptions: set[str], contact: str, senders: list[str]) -> int:
        whole = [conversation_key(sender_id, contact) for sender_id in senders]
        pairs: list[tuple[str, str]] = []  # (key, job id) of event jobs naming the contact
        if subscriptions:
            keys = [key async for key, _ in self.redis.hscan_iter(self.k("tok"), count=500) if key not in whole]
            for start in range(0, len(keys), PURGE_BATCH):
                pairs += await self._event_jobs_naming(keys[start : start + PURGE_BATCH], subscriptions, contact)
        targets = set(whole) | {key for key, _ in pairs}
        stale: list[str] = []  # stream entries naming those keys: dropped unless they are a key's token
        for lane in LANES:
            cursor = "-"
            while True:
                entries = await self.redis.xrange(self.k("stream", lane), min=cursor, max="+", count=1000)
                if not entries:
                    break
                stale += [
                    part
                    for entry_id, fields in entries
                    if fields.get("k") in targets
                    for part in (lane, entry_id, fields["k"])
                ]
                cursor = f"({entries[-1][0]}"
        flat = [part for pair in pairs for part in pair]
        removed = await self._script(
            "ERASE_JOBS", repr(self.clock.now()), len(whole), *whole, len(pairs), *flat, *stale
        )
        return int(removed)

    async def _event_jobs_naming(self, keys: list[str], subscriptions: set[str], contact: str) -> list[tuple[str, str]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.lrange(self.k("q", key), 0, -1)
            queued = [(key, job_id) for key, ids in zip(keys, await pipe.execute(), strict=True) for job_id in ids]
        async with self.redis.pipeline(transaction=False) as pipe:
            for _, job_id in queued:
                pipe.hget(self.k("job", job_id), "kind")
            events = [q for q, kind in zip(queued, await pipe.execute(), strict=True) if kind == "event"]
        async with self.redis.pipeline(transaction=False) as pipe:
            for _, job_id in events:
                pipe.hget(self.k("job", job_id), "data")
            found = []
            for (key, job_id), data in zip(events, await pipe.execute(), strict=True):
                payload = Job.model_validate_json(data).payload if data else {}
                event = payload.get("event")
                if payload.get("subscription_id") in subscriptions and isinstance(event, dict):
                    if names_contact(event, contact):
                        found.append((key, job_id))
        return found

    # --- opt-outs ---
    # One script each (see `scripts.py`): the record, its per-sender-and-contact
    # key and both listings change together. Not erased by erase_contact: the
    # suppression list is what proves an opt-out is honoured.

    @guarded
    async def put_opt_out(self, opt_out: OptOut) -> bool:
        return bool(
            await self._script(
                "PUT_OPT_OUT",
                opt_out.id,
                opt_out.account_id,
                opt_out.sender_id,
                opt_out.contact,
                opt_out.model_dump_json(),
            )
        )

    @guarded
    async def get_opt_out(self, sender_id: str, contact: str) -> OptOut | None:
        raw = await self._script("GET_OPT_OUT", sender_id, contact)
        return OptOut.model_validate_json(raw) if raw else None

    @guarded
    async def delete_opt_out(self, sender_id: str, contact: str) -> bool:
        return bool(await self._script("DELETE_OPT_OUT", sender_id, contact))

    @guarded
    async def list_opt_outs(
        self, account_id: str, *, sender_id: str | None = None, limit: int = 50, after: str | None = None
    ) -> list[OptOut]:
        index = self.k("opt-outs", account_id) if sender_id is None else self.k("opt-outs-by-sender", sender_id)
        return await self._list(
            index,
            "opt-out",
            after,
            limit,
            OptOut.model_validate_json,
            lambda o: o.account_id == account_id and (sender_id is None or o.sender_id == sender_id),
        )

    # --- subscriptions ---

    @guarded
    async def create_subscription(self, subscription: Subscription) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.k("subscription", subscription.id), subscription.model_dump_json())
            pipe.zadd(self.k("subscriptions", subscription.account_id), {subscription.id: 0})
            await pipe.execute()

    @guarded
    async def get_subscription(self, subscription_id: str) -> Subscription | None:
        raw = await self.redis.get(self.k("subscription", subscription_id))
        return Subscription.model_validate_json(raw) if raw else None

    @guarded
    async def list_subscriptions(
        self, account_id: str, *, topic: str | None = None, limit: int = 50, after: str | None = None
    ) -> list[Subscription]:
        return await self._list(
            self.k("subscriptions", account_id),
            "subscription",
            after,
            limit,
            Subscription.model_validate_json,
            lambda s: topic is None or s.topic == topic,
        )

    @guarded
    async def delete_subscription(self, subscription_id: str) -> bool:
        raw = await self.redis.get(self.k("subscription", subscription_id))
        if raw is None:
            return False
        subscription = Subscription.model_validate_json(raw)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.k("subscription", subscription_id))
            pipe.zrem(self.k("subscriptions", subscription.account_id), subscription_id)
            deleted, _ = await pipe.execute()
        return bool(deleted)

    @guarded
    async def add_event_failure(self, failure: EventFailure) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.k("failure", failure.id), failure.model_dump_json())
            pipe.zadd(self.k("failures", failure.subscription_id), {failure.id: 0})
            await pipe.execute()

    @guarded
    async def list_event_failures(
        self, subscription_id: str, *, limit: int = 50, after: str | None = None
    ) -> list[EventFailure]:
        return await self._list(
            self.k("failures", subscription_id),
            "failure",
            after,
            limit,
            EventFailure.model_validate_json,
            lambda f: True,
        )

    # --- rate limits ---

    @guarded
    async def reserve_send_slot(self, key: str, rate: float, now: float) -> float:
        """The spacing of `Store.reserve_send_slot`, kept in Redis: one schedule for every host."""
        wait = await self._script("SEND_SLOT", key, repr(float(now)), repr(SLOT_MARGIN / rate))
        return max(0.0, float(wait))

    @guarded
    async def admit_send(self, key: str, rate: float, now: float, ticket: str, hold: float) -> float:
        """`Store.admit_send` on one sorted set per key, shared by every host."""
        count, seconds = send_window(rate)
        answer = await self._script("ADMIT_SEND", key, repr(float(now)), count, repr(float(hold)), ticket)
        return 0.0 if answer == "admitted" else admission_wait(float(answer), now, count, seconds)

    @guarded
    async def reserve_and_admit(
        self, key: str, rate: float, now: float, ticket: str, hold: float
    ) -> tuple[float, float | None]:
        """Both steps of a send's pacing in one script: one round trip in the common case."""
        count, seconds = send_window(rate)
        interval = repr(SLOT_MARGIN / rate)
        wait, answer = await self._script(
            "SLOT_AND_ADMIT", key, repr(float(now)), interval, count, repr(float(hold)), ticket
        )
        if answer is None:
            return max(0.0, float(wait)), None
        return 0.0, 0.0 if answer == "admitted" else admission_wait(float(answer), now, count, seconds)

    @guarded
    async def finish_send(self, key: str, ticket: str, rate: float, now: float) -> None:
        _, seconds = send_window(rate)
        await self._script("FINISH_SEND", key, ticket, repr(float(now + seconds)), repr(seconds + 60.0))
