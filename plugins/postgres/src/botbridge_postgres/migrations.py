"""The schema, as numbered migrations applied in order, each once.

A migration is never edited after release: a change to the schema is a new
entry at the end. `migrate` holds a session advisory lock for the whole run,
so hosts starting at once apply each step exactly once (the others wait, then
find nothing left to do).
"""

from __future__ import annotations

import logging
import zlib

import asyncpg

logger = logging.getLogger("botbridge.postgres")

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE api_keys (key_hash TEXT PRIMARY KEY, account_id TEXT NOT NULL);
        CREATE TABLE senders (id TEXT PRIMARY KEY, account_id TEXT NOT NULL, data JSONB NOT NULL);
        CREATE INDEX senders_account ON senders (account_id, id);
        CREATE TABLE connectors (
            id TEXT PRIMARY KEY, account_id TEXT NOT NULL, sender_id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL, external_id TEXT, version_number INTEGER NOT NULL, data JSONB NOT NULL);
        CREATE INDEX connectors_account ON connectors (account_id, id);
        CREATE TABLE conversations (
            sender_id TEXT NOT NULL, contact TEXT NOT NULL, data JSONB NOT NULL,
            PRIMARY KEY (sender_id, contact));
        CREATE TABLE claims (key TEXT PRIMARY KEY, expires_at DOUBLE PRECISION NOT NULL);
        CREATE INDEX claims_expiry ON claims (expires_at);
        CREATE TABLE jobs (
            seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, key TEXT NOT NULL,
            not_before DOUBLE PRECISION NOT NULL, lease_until DOUBLE PRECISION NOT NULL DEFAULT 0,
            data JSONB NOT NULL);
        CREATE INDEX jobs_key ON jobs (key, seq);
        CREATE TABLE outbound (
            id TEXT PRIMARY KEY, sender_id TEXT NOT NULL, channel TEXT NOT NULL, provider_message_id TEXT,
            data JSONB NOT NULL);
        CREATE INDEX outbound_provider ON outbound (sender_id, provider_message_id)
            WHERE provider_message_id IS NOT NULL;
        CREATE TABLE subscriptions (
            id TEXT PRIMARY KEY, account_id TEXT NOT NULL, topic TEXT NOT NULL, data JSONB NOT NULL);
        CREATE INDEX subscriptions_account ON subscriptions (account_id, id);
        CREATE TABLE event_failures (id TEXT PRIMARY KEY, subscription_id TEXT NOT NULL, data JSONB NOT NULL);
        CREATE INDEX event_failures_subscription ON event_failures (subscription_id, id);
        CREATE TABLE send_slots (key TEXT PRIMARY KEY, next_slot DOUBLE PRECISION NOT NULL);
        """,
    ),
    (
        # API keys get a life cycle. The keys of version 1 all came from
        # BOTBRIDGE_API_KEYS: they become "setting" keys (ids from their hash:
        # unique, 22 characters of the id alphabet).
        2,
        """
        ALTER TABLE api_keys RENAME TO api_keys_v1;
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, account_id TEXT NOT NULL, name TEXT NOT NULL,
            source TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, last_used_at DOUBLE PRECISION,
            revoked_at DOUBLE PRECISION);
        CREATE INDEX api_keys_account ON api_keys (account_id, id);
        INSERT INTO api_keys
            SELECT left(md5(key_hash), 22), key_hash, account_id, '', 'setting', extract(epoch FROM now()), NULL, NULL
            FROM api_keys_v1;
        DROP TABLE api_keys_v1;
        CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        """,
    ),
    (
        3,
        """
        CREATE TABLE send_times (key TEXT NOT NULL, at DOUBLE PRECISION NOT NULL);
        CREATE INDEX send_times_key ON send_times (key, at);
        """,
    ),
    (
        4,
        # a send counts until it stops counting (its answer plus the window, or its hold): one time per ticket
        """
        DROP TABLE send_times;
        CREATE TABLE send_times (key TEXT NOT NULL, ticket TEXT NOT NULL, until DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (key, ticket));
        CREATE INDEX send_times_until ON send_times (key, until);
        """,
    ),
    (
        # Conversation history. `conversation_log` keeps every conversation by
        # id (`conversations` keeps the latest of each sender and contact, for
        # the engine), `history` what happened in them; outbound messages get
        # the columns history filters, erases and purges them by, filled from
        # their records (the account from the sender when a record has none).
        # The conversations of now start the log.
        5,
        """
        SET LOCAL TimeZone = 'UTC';
        CREATE TABLE conversation_log (
            id TEXT PRIMARY KEY, account_id TEXT, sender_id TEXT NOT NULL, connector_id TEXT, contact TEXT NOT NULL,
            state TEXT NOT NULL, opened_at DOUBLE PRECISION NOT NULL, closed_at DOUBLE PRECISION,
            data JSONB NOT NULL);
        CREATE INDEX conversation_log_account ON conversation_log (account_id, id);
        CREATE INDEX conversation_log_contact ON conversation_log (sender_id, contact);
        CREATE INDEX conversation_log_closed ON conversation_log ((coalesce(closed_at, opened_at)))
            WHERE state = 'closed';
        INSERT INTO conversation_log
            SELECT c.data->>'id', coalesce(c.data->>'account_id', s.account_id), c.sender_id,
                c.data->>'connector_id', c.contact, coalesce(c.data->>'state', 'open'),
                coalesce((c.data->>'opened_at')::float8, 0), (c.data->>'closed_at')::float8, c.data
            FROM conversations c LEFT JOIN senders s ON s.id = c.sender_id
            WHERE c.data->>'id' IS NOT NULL
            ON CONFLICT (id) DO NOTHING;
        CREATE TABLE history (
            id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, sender_id TEXT NOT NULL, contact TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL, data JSONB NOT NULL);
        CREATE INDEX history_conversation ON history (conversation_id, id);
        CREATE INDEX history_contact ON history (sender_id, contact);
        CREATE INDEX history_at ON history (at);
        ALTER TABLE outbound
            ADD COLUMN account_id TEXT, ADD COLUMN contact TEXT, ADD COLUMN conversation_id TEXT,
            ADD COLUMN state TEXT, ADD COLUMN external_id TEXT, ADD COLUMN created_at DOUBLE PRECISION,
            ADD COLUMN updated_at DOUBLE PRECISION;
        UPDATE outbound SET
            account_id = coalesce(data->>'account_id',
                                  (SELECT s.account_id FROM senders s WHERE s.id = outbound.sender_id)),
            contact = data->>'contact',
            conversation_id = data->>'conversation_id',
            state = data->>'state',
            external_id = data->>'external_id',
            created_at = extract(epoch FROM (data->>'created_at')::timestamptz),
            updated_at = extract(epoch FROM coalesce(data->>'updated_at', data->>'created_at')::timestamptz);
        CREATE INDEX outbound_account ON outbound (account_id, id);
        CREATE INDEX outbound_contact ON outbound (sender_id, contact);
        CREATE INDEX outbound_updated ON outbound (updated_at);
        """,
    ),
    (
        # The live stream: a short buffer of each account's events, read in id
        # order per account and trimmed by `at`.
        6,
        """
        CREATE TABLE stream (
            id TEXT PRIMARY KEY, account_id TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, data JSONB NOT NULL);
        CREATE INDEX stream_account ON stream (account_id, id);
        CREATE INDEX stream_at ON stream (at);
        """,
    ),
    (
        # SMS opt-outs: one per sender and contact (the primary key decides
        # between concurrent STOPs), listed per account in id order, optionally
        # of one sender. Not erased with a contact's history.
        7,
        """
        CREATE TABLE opt_outs (
            sender_id TEXT NOT NULL, contact TEXT NOT NULL, id TEXT NOT NULL, account_id TEXT NOT NULL,
            data JSONB NOT NULL, PRIMARY KEY (sender_id, contact));
        CREATE INDEX opt_outs_account ON opt_outs (account_id, id);
        CREATE INDEX opt_outs_account_sender ON opt_outs (account_id, sender_id, id);
        """,
    ),
)

LATEST = MIGRATIONS[-1][0]


def lock_id(schema: str) -> int:
    """The advisory lock of one schema's migrations (a signed 64-bit key)."""
    return zlib.crc32(f"botbridge-migrate:{schema}".encode()) - 2**31


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


async def migrate(conn: asyncpg.Connection, schema: str) -> list[int]:
    """Apply the migrations `schema` lacks; return the versions applied now.

    `conn` has `schema` as its search_path (it need not exist yet).
    """
    applied: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", lock_id(schema))
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in MIGRATIONS:
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            logger.info("postgres schema %s: applied migration %d", schema, version)
            applied.append(version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", lock_id(schema))
    return applied


async def current_version(conn: asyncpg.Connection, schema: str) -> int:
    exists = await conn.fetchval("SELECT to_regclass($1)", f"{quote(schema)}.schema_migrations")
    if exists is None:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))
