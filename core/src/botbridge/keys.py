"""API keys: who a bearer key belongs to, and its life cycle.

A key is looked up in the store on every request, never cached, so a key
revoked on one host answers 401 at once on every host sharing the store.
Its last use is written at most once a minute per key: a request that
finds the key used less than a minute ago writes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from botbridge.clock import Clock
from botbridge.crypto import generate_secret, hash_api_key
from botbridge.errors import StoreUnavailable
from botbridge.models import ApiKey
from botbridge.store import Store

logger = logging.getLogger("botbridge.keys")

TOUCH_INTERVAL = 60.0
KEY_PREFIX = "bb_"


class ApiKeys:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._touched: dict[str, float] = {}

    async def account_for(self, key: str) -> str | None:
        """The account of an active key; None for an unknown or revoked one."""
        record = await self.store.api_key_by_hash(hash_api_key(key))
        if record is None or record.revoked:
            return None
        await self._touch(record)
        return record.account_id

    async def _touch(self, record: ApiKey) -> None:
        now = self.clock.now()
        last = max(record.last_used_at or 0.0, self._touched.get(record.id, 0.0))
        if now - last < TOUCH_INTERVAL:
            return
        # Noted before the write, so requests arriving meanwhile do not write too.
        if len(self._touched) > 10_000:
            self._touched.clear()
        self._touched[record.id] = now
        try:
            await self.store.touch_api_key(record.id, now)
        except StoreUnavailable as exc:
            # The last-use time is a hint; the request it belongs to goes on.
            logger.warning("could not record the last use of API key %s: %s", record.id, exc)


async def create_key(store: Store, clock: Clock, account_id: str, name: str = "") -> tuple[ApiKey, str]:
    """A new random key for `account_id`: the record and the key, which is shown once and never stored."""
    key = KEY_PREFIX + generate_secret()
    now = clock.now()
    record = ApiKey(account_id=account_id, key_hash=hash_api_key(key), name=name, source="cli", created_at=now)
    if not await store.create_api_key(record):
        raise RuntimeError("a freshly generated API key is already stored")  # 256 random bits: never
    return record, key


@dataclass
class Reconciled:
    created: list[ApiKey] = field(default_factory=list)
    revoked: list[ApiKey] = field(default_factory=list)


async def reconcile(store: Store, clock: Clock, pairs: list[tuple[str, str]]) -> Reconciled:
    """Make the stored "setting" keys match BOTBRIDGE_API_KEYS (`pairs` of account and key).

    A key in the setting is created when missing; a key bootstrapped from
    the setting earlier and no longer in it is revoked. Keys made with
    `botbridge keys create` are left alone. An empty setting changes
    nothing: one host started without it must not lock every account out.
    A revoked key stays revoked even if it comes back into the setting.
    """
    done = Reconciled()
    wanted: dict[str, str] = {}
    for account_id, key in pairs:
        wanted[hash_api_key(key)] = account_id
    for key_hash, account_id in wanted.items():
        stored = await store.api_key_by_hash(key_hash)
        if stored is None:
            record = ApiKey(account_id=account_id, key_hash=key_hash, source="setting", created_at=clock.now())
            if await store.create_api_key(record):
                done.created.append(record)
        elif stored.revoked:
            logger.warning(
                "a key of account %s in BOTBRIDGE_API_KEYS was revoked (key id %s); it stays revoked: "
                "give the account a new key",
                account_id,
                stored.id,
            )
        elif stored.account_id != account_id:
            logger.warning(
                "a key given to account %s in BOTBRIDGE_API_KEYS belongs to account %s (key id %s); "
                "it stays with %s: revoke it and give %s a new key",
                account_id,
                stored.account_id,
                stored.id,
                stored.account_id,
                account_id,
            )
    if not wanted:
        return done
    after: str | None = None
    while page := await store.list_api_keys(None, limit=200, after=after):
        for stored in page:
            if stored.source == "setting" and not stored.revoked and stored.key_hash not in wanted:
                if await store.revoke_api_key(stored.id, clock.now()):
                    done.revoked.append(stored)
        after = page[-1].id
    return done
