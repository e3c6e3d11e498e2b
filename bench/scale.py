"""The scale row: 10k, 100k and 1M stored conversations in the Redis store, the conversation lookup and memory.

    python bench/scale.py                                   # 10k, 100k, 1M: a few minutes
    python bench/scale.py --counts 10000,100000 --out DIR   # other sizes, results elsewhere

Starts a redis-server of its own (loopback, a free port, nothing written to
disk, in a temporary directory) and stops it at the end, whatever happens:
never the shared Redis. For each count, ascending, the same database grows
to that many synthetic conversations, written through the store's own write
path; then the row measures the latency of `get_conversation(sender_id,
contact)` and `get_conversation_by_id` for random stored conversations, and
the memory Redis holds per conversation. Writes bench/results/scale.json and
prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from common import HERE, LOOPBACK, Proc, contact_for, free_port, processes
from loadgen import percentile

from botbridge.clock import SystemClock
from botbridge.ids import new_id
from botbridge.models import DEFAULT_CONVERSATION_TIMEOUT, Conversation
from botbridge.store import Writes
from botbridge_redis.store import RedisStore

COUNTS = (10_000, 100_000, 1_000_000)
LOOKUPS = 5_000
ACCOUNTS = 100  # one sender and one connector each; conversations spread over them round-robin
CONTACT_POOL = "555"  # contacts +1555 and 7 digits
BATCH = 500  # conversations per write: one MULTI of the store's commands for each
IN_FLIGHT = 4  # writes in flight: the client packs the next batches while Redis runs one
SAMPLE = 100  # conversations per row read back whole and compared with what was written
WARM_UP = 200  # untimed lookups first: connections and code paths warm
FLAT = 1.5  # a p99 at the largest count within this factor of the smallest one's counts as not growing
REDIS_OPTIONS = ("--save", "", "--appendonly", "no")


@dataclass(frozen=True)
class Fleet:
    """The accounts the synthetic conversations belong to, and the time they are written at."""

    accounts: list[str]
    senders: list[str]
    connectors: list[str]
    now: float

    @classmethod
    def make(cls, now: float) -> Fleet:
        def ids() -> list[str]:
            return [new_id(now) for _ in range(ACCOUNTS)]

        return cls(ids(), ids(), ids(), now)


def synthetic(fleet: Fleet, index: int, conversation_id: str | None = None) -> Conversation:
    """Conversation `index`: the same fields every time (given its id), so a read can be compared with it.

    An open Direct Line conversation that moved within its timeout, its
    backend state shaped as the Direct Line backend saves it (conversation
    id, the opaque user id, a token as long as its fake issues, the token's
    expiry and the watermark). A new one gets an id of its opening time.
    """
    slot = index % ACCOUNTS
    last_mo_at = fleet.now - (index * 7919) % int(DEFAULT_CONVERSATION_TIMEOUT * 0.8)
    opened_at = last_mo_at - index % 900
    return Conversation(
        id=conversation_id or new_id(opened_at),
        account_id=fleet.accounts[slot],
        sender_id=fleet.senders[slot],
        contact=contact_for(index, CONTACT_POOL),
        connector_id=fleet.connectors[slot],
        opened_at=opened_at,
        last_mo_at=last_mo_at,
        timeout=DEFAULT_CONVERSATION_TIMEOUT,
        backend_state={
            "conversation_id": f"{index * 0x9E3779B97F4A7C15 % 16**22:022X}-us",
            "user_id": f"bb-{index * 2654435761 % 16**32:032x}",
            "token": f"fake-token.{index:032x}",
            "token_expires_at": opened_at + 1800.0,
            "token_refresh_at": opened_at + 1500.0,
            "watermark": str(index % 40 + 1),
        },
    )


# --- the server ---------------------------------------------------------------


def start_redis(procs: list[Proc], workdir: Path) -> str:
    """A redis-server of this run's own; `processes()` stops it. Returns its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("no redis-server on PATH")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", LOOPBACK, "--dir", str(workdir), *REDIS_OPTIONS]
    proc = Proc("redis", argv, log=workdir / "redis.log")
    procs.append(proc)
    client = redis.Redis(host=LOOPBACK, port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 10
    try:
        while True:
            if not proc.alive():
                raise RuntimeError(f"redis-server exited early:\n{proc.tail()}")
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    finally:
        client.close()
    return f"redis://{LOOPBACK}:{port}/0"


# --- fill and measure -----------------------------------------------------------


async def fill(store: RedisStore, fleet: Fleet, ids: list[str], count: int) -> float:
    """Grow the store from len(ids) to `count` conversations through `RedisStore.write`; returns seconds taken.

    `write` is what `put_conversation` and a job's completion run: the
    record by sender and contact, its copy by id, the account's listing, the
    aging set and the contact's index (the INDEX_CONTACT script), in one MULTI.
    """
    began = time.perf_counter()
    pending: set[asyncio.Task[None]] = set()
    for first in range(len(ids), count, BATCH):
        batch = []
        for index in range(first, min(count, first + BATCH)):
            batch.append(synthetic(fleet, index))
            ids.append(batch[-1].id)
        if len(pending) >= IN_FLIGHT:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        pending.add(asyncio.create_task(store.write(Writes(conversations=batch))))
    await asyncio.gather(*pending)
    return time.perf_counter() - began


async def verify(store: RedisStore, fleet: Fleet, ids: list[str], rng: random.Random) -> int:
    """Read a sample back both ways and compare it with what was written; returns how many matched."""
    for index in rng.sample(range(len(ids)), min(SAMPLE, len(ids))):
        expected = synthetic(fleet, index, ids[index])
        by_contact = await store.get_conversation(expected.sender_id, expected.contact)
        by_id = await store.get_conversation_by_id(expected.id)
        if by_contact != expected or by_id != expected:
            raise RuntimeError(f"conversation {index} did not read back as written: {by_contact!r} / {by_id!r}")
    return min(SAMPLE, len(ids))


def micros(samples: list[float]) -> dict[str, float | None]:
    stats: dict[str, float | None] = {}
    for q in (50, 95, 99):
        value = percentile(samples, q)
        stats[f"p{q}"] = round(value * 1e6, 1) if value is not None else None
    stats["max"] = round(max(samples) * 1e6, 1)
    return stats


async def lookups(store: RedisStore, fleet: Fleet, ids: list[str], count: int, rng: random.Random) -> dict[str, Any]:
    """Time `count` lookups of random stored conversations each way, one at a time."""
    picks = [rng.randrange(len(ids)) for _ in range(count)]
    targets = [(fleet.senders[i % ACCOUNTS], contact_for(i, CONTACT_POOL), ids[i]) for i in picks]
    for sender_id, contact, conversation_id in targets[:WARM_UP]:
        await store.get_conversation(sender_id, contact)
        await store.get_conversation_by_id(conversation_id)
    # The fill's garbage collected now, not in the middle of some lookup.
    gc.collect()
    by_contact: list[float] = []
    by_id: list[float] = []
    found = 0
    for sender_id, contact, conversation_id in targets:
        started = time.perf_counter()
        conversation = await store.get_conversation(sender_id, contact)
        by_contact.append(time.perf_counter() - started)
        started = time.perf_counter()
        again = await store.get_conversation_by_id(conversation_id)
        by_id.append(time.perf_counter() - started)
        found += conversation is not None and again is not None and conversation.id == again.id == conversation_id
    return {"lookups": count, "found": found, "lookup_us": micros(by_contact), "by_id_us": micros(by_id)}


async def memory(store: RedisStore) -> dict[str, int]:
    info = await store.redis.info("memory")
    return {"used": int(info["used_memory"]), "dataset": int(info["used_memory_dataset"])}


async def measure(url: str, counts: Sequence[int], lookup_count: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    store = RedisStore.from_url(url, SystemClock())
    rng = random.Random(20_000_101)  # the same lookups in every run
    rows: list[dict[str, Any]] = []
    try:
        await store.open()
        fleet = Fleet.make(time.time())
        # The store as a host leaves it after opening (stream groups, schema
        # markers) is the baseline: what the conversations add is counted.
        empty = await memory(store)
        server = await store.redis.info("server")
        ids: list[str] = []
        for count in counts:
            print(f"\n== {count:,} conversations", flush=True)
            added = count - len(ids)
            seconds = await fill(store, fleet, ids, count)
            print(f"  {added:,} written in {seconds:.1f} s ({added / max(seconds, 1e-9):,.0f}/s)", flush=True)
            # The fill's connections go: query buffers of its large MULTIs would count as memory.
            await store.redis.connection_pool.disconnect()
            held = await memory(store)
            keys = int(await store.redis.dbsize())
            row: dict[str, Any] = {
                "conversations": count,
                "fill_s": round(seconds, 2),
                "bytes_per_conversation": round((held["used"] - empty["used"]) / count, 1),
                "dataset_bytes_per_conversation": round((held["dataset"] - empty["dataset"]) / count, 1),
                "used_memory": held["used"],
                "keys": keys,
                "verified": await verify(store, fleet, ids, rng),
                **await lookups(store, fleet, ids, lookup_count, rng),
            }
            rows.append(row)
            print(
                f"  lookup p50/p99 {row['lookup_us']['p50']}/{row['lookup_us']['p99']} µs"
                f"  by id p50/p99 {row['by_id_us']['p50']}/{row['by_id_us']['p99']} µs"
                f"  {row['bytes_per_conversation']:,.0f} bytes per conversation  {keys:,} keys"
                f"  {row['verified']} read back as written, {row['found']} of {lookup_count} lookups found",
                flush=True,
            )
        record = synthetic(fleet, 0, ids[0]).model_dump_json() if ids else ""
        setup = {
            "redis_version": server["redis_version"],
            "redis_options": " ".join(o if o else '""' for o in REDIS_OPTIONS),
            "empty_used_memory": empty["used"],
            "accounts": ACCOUNTS,
            "record_json_bytes": len(record),
            "fill": f"RedisStore.write(Writes(conversations=[{BATCH} conversations])), {IN_FLIGHT} in flight",
            "lookups_per_row": lookup_count,
            "read_back_per_row": SAMPLE,
        }
        return setup, rows
    finally:
        await store.close()


def growth(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The p99s of the largest count over those of the smallest: ~1 when lookups do not grow with the count."""
    if len(rows) < 2:
        return {}
    small, large = rows[0], rows[-1]

    def ratio(column: str) -> float | None:
        a, b = small[column]["p99"], large[column]["p99"]
        return round(b / a, 2) if a and b else None

    lookup, by_id = ratio("lookup_us"), ratio("by_id_us")
    return {
        "from": small["conversations"],
        "to": large["conversations"],
        "lookup_p99_ratio": lookup,
        "by_id_p99_ratio": by_id,
        "flat_within": FLAT,
        "grows": any(r is not None and r > FLAT for r in (lookup, by_id)),
    }


def table(results: dict[str, Any]) -> str:
    head = ("conversations", "lookup p50 µs", "lookup p99 µs", "by-id p99 µs", "bytes per conversation", "fill seconds")
    rows: list[tuple[str, ...]] = [head]
    for row in results["rows"]:
        rows.append(
            (
                f"{row['conversations']:,}",
                str(row["lookup_us"]["p50"]),
                str(row["lookup_us"]["p99"]),
                str(row["by_id_us"]["p99"]),
                f"{row['bytes_per_conversation']:,.0f}",
                f"{row['fill_s']:.1f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines.append("fill seconds: writing the conversations added since the row above")
    grew = results["growth"]
    if grew:
        verdict = "grew" if grew["grows"] else f"did not grow (within {grew['flat_within']}x)"
        lines.append(
            f"p99 at {grew['to']:,} / at {grew['from']:,}: lookup {grew['lookup_p99_ratio']}x,"
            f" by id {grew['by_id_p99_ratio']}x — {verdict}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--counts", default=",".join(str(c) for c in COUNTS), help="comma list of conversation counts, ascending"
    )
    parser.add_argument("--lookups", type=int, default=LOOKUPS, help="timed lookups per row (each way)")
    parser.add_argument("--out", default=str(HERE / "results"), help="directory for scale.json")
    args = parser.parse_args(argv)
    counts = sorted({int(c) for c in args.counts.split(",") if c.strip()})
    if not counts or counts[0] <= 0:
        parser.error("--counts needs positive numbers")
    if args.lookups < 1:
        parser.error("--lookups needs at least 1")
    # This server keeps nothing on disk on purpose: the store's warning about it is no news here.
    logging.getLogger("botbridge.redis").setLevel(logging.ERROR)
    workdir = Path(tempfile.mkdtemp(prefix="botbridge-scale-"))
    began = time.time()
    try:
        with processes() as procs:
            url = start_redis(procs, workdir)
            setup, rows = asyncio.run(measure(url, counts, args.lookups))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began)),
        "duration_s": round(time.time() - began, 1),
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "setup": setup,
        "rows": rows,
        "growth": growth(rows),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
