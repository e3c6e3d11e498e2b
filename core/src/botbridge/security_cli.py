"""The operator's security commands: `botbridge keys create|list|revoke`, `botbridge rotate-secrets`.

They work on the store directly (BOTBRIDGE_STORE), with or without a host
running: every host reads keys from the store on each request, so a key
revoked here answers 401 at once everywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from botbridge.clock import Clock, SystemClock
from botbridge.crypto import SecretBox
from botbridge.errors import StoreUnavailable
from botbridge.keys import create_key
from botbridge.models import ApiKey, from_epoch
from botbridge.plugins import Plugins
from botbridge.rotation import Rotated, rotate_secrets
from botbridge.settings import Settings, SettingsInvalid
from botbridge.store import Store

T = TypeVar("T")


def register(commands: Any) -> None:
    """Add the commands to `botbridge`'s subparsers."""
    keys = commands.add_parser("keys", help="API keys: create, list, revoke").add_subparsers(
        dest="action", required=True
    )
    create = keys.add_parser("create", help="make a key for an account and print it (once)")
    create.add_argument("account", help="the account the key acts for")
    create.add_argument("--name", default="", help="what the key is for, shown by `keys list` (default: none)")
    create.set_defaults(func=_create)
    listing = keys.add_parser("list", help="every key (never the key itself): account, name, last use, revocation")
    listing.add_argument("--account", help="only this account's keys (default: every account)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table (default: a table)")
    listing.set_defaults(func=_list)
    revoke = keys.add_parser("revoke", help="revoke a key by id: it answers 401 at once on every host")
    revoke.add_argument("id", help="the key's id, from `keys list`")
    revoke.set_defaults(func=_revoke)
    rotate = commands.add_parser(
        "rotate-secrets", help="re-encrypt every stored secret with the newest key of BOTBRIDGE_SECRET_KEY"
    )
    rotate.set_defaults(func=_rotate)


def _on_store(command: str, work: Callable[[Store, Clock], Awaitable[T]]) -> T | None:
    """Run `work` on the opened store; None (and one line on stderr) when the store cannot be used."""
    from botbridge.runtime import open_store

    async def run() -> T:
        settings = Settings()
        clock = SystemClock()
        store = open_store(settings, Plugins.discover(settings), clock)
        await store.open()
        try:
            return await work(store, clock)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except SettingsInvalid:
        raise  # `botbridge` prints it as one line naming the setting, exit 2
    except (StoreUnavailable, OSError, ValueError) as exc:
        print(f"botbridge {command}: {exc}", file=sys.stderr)
        return None


def _create(args: argparse.Namespace) -> int:
    account = args.account.strip()
    if not account:
        print("botbridge keys create: ACCOUNT must not be empty", file=sys.stderr)
        return 2

    async def work(store: Store, clock: Clock) -> tuple[ApiKey, str]:
        return await create_key(store, clock, account, args.name)

    made = _on_store("keys create", work)
    if made is None:
        return 1
    record, key = made
    # The key alone on stdout (for `KEY=$(botbridge keys create acct)`); it is not stored and never shown again.
    print(key)
    print(f"created API key {record.id} for account {account}; store it now, it is not shown again", file=sys.stderr)
    return 0


def _all_keys(account: str | None) -> Callable[[Store, Clock], Awaitable[list[ApiKey]]]:
    async def work(store: Store, clock: Clock) -> list[ApiKey]:
        found: list[ApiKey] = []
        after: str | None = None
        while page := await store.list_api_keys(account, limit=200, after=after):
            found += page
            after = page[-1].id
        return found

    return work


def _when(seconds: float | None) -> str:
    return "-" if seconds is None else from_epoch(seconds).strftime("%Y-%m-%d %H:%M:%SZ")


def _list(args: argparse.Namespace) -> int:
    keys = _on_store("keys list", _all_keys(args.account))
    if keys is None:
        return 1
    if args.json:
        print(json.dumps([{**key.public(), "account_id": key.account_id} for key in keys], indent=2))
        return 0
    print(f"{'ID':<22}  {'ACCOUNT':<16} {'NAME':<20} {'SOURCE':<8} {'CREATED':<20} {'LAST USED':<20} REVOKED")
    for key in keys:
        print(
            f"{key.id:<22}  {key.account_id:<16} {key.name or '-':<20} {key.source:<8} "
            f"{_when(key.created_at):<20} {_when(key.last_used_at):<20} {_when(key.revoked_at)}"
        )
    return 0


def _revoke(args: argparse.Namespace) -> int:
    async def work(store: Store, clock: Clock) -> tuple[ApiKey | None, bool]:
        revoked = await store.revoke_api_key(args.id, clock.now())
        return await store.get_api_key(args.id), revoked

    done = _on_store("keys revoke", work)
    if done is None:
        return 1
    key, revoked = done
    if key is None:
        print(f"botbridge keys revoke: no API key {args.id!r}", file=sys.stderr)
        return 1
    if revoked:
        print(f"revoked API key {key.id} of account {key.account_id}")
    else:
        print(f"API key {key.id} of account {key.account_id} was already revoked at {_when(key.revoked_at)}")
    if key.source == "setting":
        print("it is in BOTBRIDGE_API_KEYS: remove it there too, it stays revoked either way", file=sys.stderr)
    return 0


def _rotate(args: argparse.Namespace) -> int:
    settings = Settings()
    if settings.secret_key is None:
        print(
            "botbridge rotate-secrets: BOTBRIDGE_SECRET_KEY must be set: the new key first, then the old ones",
            file=sys.stderr,
        )
        return 2

    async def work(store: Store, clock: Clock) -> Rotated:
        assert settings.secret_key is not None
        return await rotate_secrets(store, SecretBox(settings.secret_key.get_secret_value()))

    done = _on_store("rotate-secrets", work)
    if done is None:
        return 1
    print(f"re-encrypted {done.secrets} secrets of {done.records} records with the newest key")
    for what in done.unreadable:
        print(f"cannot decrypt {what} with any key of BOTBRIDGE_SECRET_KEY", file=sys.stderr)
    for what in done.changed:
        print(f"{what} kept changing during the rotation; run rotate-secrets again", file=sys.stderr)
    return 1 if done.unreadable or done.changed else 0
