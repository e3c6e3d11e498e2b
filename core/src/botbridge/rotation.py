"""Secret key rotation: re-encrypt every stored secret, and know at start whether the key fits.

The check is one read: a canary value, encrypted in the store's meta values,
that every host decrypts at start. When a store has none yet (it predates
canaries, or is new), a few stored secrets of each kind are tried instead,
and the canary is written only if they open: a host with the wrong key must
never certify its key as the store's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from botbridge.crypto import SecretBox
from botbridge.models import SECRET_FIELDS, Connector, SecretKind, Sender, Subscription
from botbridge.store import Store

CANARY = "secret-key-canary"
CANARY_TEXT = "botbridge secret key canary v1"
SAMPLE = 3  # records of each kind tried when there is no canary
RACE_RETRIES = 5


async def _record(store: Store, kind: SecretKind, record_id: str) -> Sender | Connector | Subscription | None:
    if kind == "sender":
        return await store.get_sender(record_id)
    if kind == "connector":
        return await store.get_connector(record_id)
    return await store.get_subscription(record_id)


def _opens(box: SecretBox, token: str) -> bool:
    try:
        box.decrypt(token)
    except ValueError:
        return False
    return True


def _mismatch(box: SecretBox, what: str) -> str:
    keys = "its key" if box.key_count == 1 else f"any of its {box.key_count} keys"
    return f"BOTBRIDGE_SECRET_KEY does not fit this store: {what} cannot be decrypted with {keys}"


async def check_secret_key(store: Store, box: SecretBox) -> str | None:
    """None when `box` decrypts the store's secrets; otherwise why not (for /readyz and the log)."""
    token = await store.get_meta(CANARY)
    if token is None:
        for kind, fields in SECRET_FIELDS.items():
            for record_id in await store.secret_record_ids(kind, limit=SAMPLE):
                record = await _record(store, kind, record_id)
                for name in fields:
                    if record is not None and not _opens(box, getattr(record, name)):
                        return _mismatch(box, f"{kind} {record_id}")
        await store.put_meta(CANARY, box.encrypt(CANARY_TEXT), only_if_absent=True)
        token = await store.get_meta(CANARY)  # another host's, if it wrote first
    if token is None or not _opens(box, token) or box.decrypt(token) != CANARY_TEXT:
        return _mismatch(box, "the store's canary")
    return None


@dataclass
class Rotated:
    secrets: int = 0  # encrypted fields rewritten with the newest key
    records: int = 0  # records they belong to
    unreadable: list[str] = field(default_factory=list)  # "sender <id> credentials_enc": no key opens it
    changed: list[str] = field(default_factory=list)  # records that kept changing under the rotation


async def rotate_secrets(store: Store, box: SecretBox) -> Rotated:
    """Re-encrypt every stored secret (and the canary) with the newest key.

    Each record's encrypted fields are replaced only if they still hold what
    was read (`Store.replace_secrets`), so a concurrent change is never
    overwritten: the record is read again. Safe to run again at any time;
    what the newest key already encrypted is left alone.
    """
    done = Rotated()
    for kind, fields in SECRET_FIELDS.items():
        for record_id in await store.secret_record_ids(kind):
            for _ in range(RACE_RETRIES):
                record = await _record(store, kind, record_id)
                if record is None:
                    break
                expected = {name: getattr(record, name) for name in fields}
                new: dict[str, str] = {}
                for name, token in expected.items():
                    if box.is_newest(token):
                        continue
                    try:
                        new[name] = box.rotate(token)
                    except ValueError:
                        done.unreadable.append(f"{kind} {record_id} {name}")
                if not new:
                    break
                if await store.replace_secrets(kind, record_id, expected, new):
                    done.secrets += len(new)
                    done.records += 1
                    break
                done.unreadable = [u for u in done.unreadable if not u.startswith(f"{kind} {record_id} ")]
            else:
                done.changed.append(f"{kind} {record_id}")
    canary = await store.get_meta(CANARY)
    if canary is None or not box.is_newest(canary):
        try:
            value = box.encrypt(CANARY_TEXT) if canary is None else box.rotate(canary)
        except ValueError:
            done.unreadable.append("the store's canary")
        else:
            await store.put_meta(CANARY, value)
    return done
