"""Run the whole benchmark: fakes, both floors, one botbridge host (SQLite), hosts on PostgreSQL and Redis.

    python bench/run.py            # full run, ~9 minutes
    python bench/run.py --quick    # smoke run, ~2-3 minutes

Writes bench/results/latest.json and bench/results/latest.png and prints a table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from common import (
    ESS_SECRET,
    HERE,
    LOOPBACK,
    SCG_FROM,
    SCG_TOKEN,
    SENDER_ADDRESS,
    Proc,
    cpu_seconds,
    free_port,
    processes,
    python,
    wait_for,
)

API_KEY = "bench-api-key-0001"
DL_SECRET = "FakeSecret0.cwA.xyz.Zr4kDm7F24cwABEsSz0w9A3HT1jhIo67glkty"
REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"

# The Direct Line connector's polling, for the bench: a turn reads the
# activities right after its POST (the echo bot has answered by then), then
# every 50 ms for up to 5 s; the late-reply poller stops after its first nap.
DIRECT_LINE_CONFIG = {"reply_wait": 5, "poll_interval": 0.05, "late_reply_window": 0}
# The Direct Line defaults the late-reply row runs with (see the plugin's README).
LATE_REPLY_WINDOW = 60.0
LATE_REPLY_BUDGET = 20.0


@dataclass
class Profile:
    pool: int
    warm_seconds: float
    full_seconds: float
    open_seconds: float
    fractions: tuple[float, ...]
    flood_seconds: float
    drain: float
    httpx_default: bool


FULL = Profile(1000, 60, 20, 15, (0.25, 0.5, 0.75, 1.0), 5, 10, True)
QUICK = Profile(200, 20, 6, 5, (0.5,), 3, 5, False)


class Bench:
    def __init__(
        self, profile: Profile, workdir: Path, procs: list[Proc], workers: int | None, profile_to: Path | None = None
    ) -> None:
        self.profile_to = profile_to
        self.profile = profile
        self.workdir = workdir
        self.procs = procs
        self.workers = workers
        self.runs = 0
        self.scg_url = self.dl_url = self.stream = ""
        self.fakes: Proc | None = None

    # --- processes ---

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, argv, env, self.workdir / f"{name}.log")
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        self.procs.remove(proc)

    def start_fakes(self) -> None:
        scg_port, dl_port = free_port(), free_port()
        self.fakes = self.start(
            "fakes", python(str(HERE / "fakes.py"), "--scg-port", str(scg_port), "--dl-port", str(dl_port))
        )
        self.scg_url, self.dl_url = f"http://{LOOPBACK}:{scg_port}", f"http://{LOOPBACK}:{dl_port}"
        self.stream = self.scg_url + "/bench/stream"
        wait_for(self.scg_url + "/bench/status", self.fakes)

    def start_floor(self, script: str, transport: str | None = None) -> tuple[list[Proc], list[str]]:
        port = free_port()
        argv = python(str(HERE / script), "--port", str(port), "--scg-url", self.scg_url, "--dl-url", self.dl_url)
        if transport:
            argv += ["--transport", transport]
        proc = self.start(script.removesuffix(".py") + (f"-{transport}" if transport else ""), argv)
        url = f"http://{LOOPBACK}:{port}"
        wait_for(url + "/healthz", proc)
        return [proc], [url + "/v1/webhooks/scg/floor"]

    def start_hosts(
        self, store: str, count: int, direct_line: dict[str, Any] | None = None
    ) -> tuple[list[Proc], list[str]]:
        procs, urls = [], []
        for n in range(count):
            port = free_port()
            url = f"http://{LOOPBACK}:{port}"
            env = {
                "BOTBRIDGE_STORE": store,
                "BOTBRIDGE_API_KEYS": f"bench:{API_KEY}",
                "BOTBRIDGE_SECRET_KEY": "bench-secret-key-0001",
                "BOTBRIDGE_LOG_LEVEL": "WARNING",
                "BOTBRIDGE_PUBLIC_URL": url,
                # the fakes the benchmark drives listen on loopback
                "BOTBRIDGE_ALLOW_PRIVATE_URLS": "true",
            }
            if self.workers:
                env["BOTBRIDGE_WORKERS"] = str(self.workers)
            argv = python("-m", "botbridge.cli", "serve", "--host", LOOPBACK, "--port", str(port))
            proc = self.start(f"host{n + 1}-{store.split(':')[0]}", argv, env)
            wait_for(url + "/healthz", proc)
            procs.append(proc)
            urls.append(url)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with httpx.Client(base_url=urls[0], headers=headers, timeout=10) as api:
            sender = api.post(
                "/v1/senders",
                json={
                    "channel": "scg",
                    "address": SENDER_ADDRESS,
                    "credentials": SCG_TOKEN,
                    "webhook_secret": ESS_SECRET,
                    "config": {"base_url": self.scg_url, "from": SCG_FROM},
                },
            )
            sender.raise_for_status()
            sender_id = sender.json()["id"]
            connector = api.post(
                "/v1/connectors",
                json={
                    "type": "AZURE_BOT_DIRECT_LINE",
                    "sender_id": sender_id,
                    "credentials": DL_SECRET,
                    "config": {
                        "base_url": self.dl_url,
                        "rate_limit": 10000,
                        **(DIRECT_LINE_CONFIG if direct_line is None else direct_line),
                    },
                },
            )
            connector.raise_for_status()
        return procs, [f"{url}/v1/webhooks/scg/{sender_id}" for url in urls]

    # --- load ---

    def load(self, targets: list[str], procs: list[Proc], pool_prefix: str, **spec: Any) -> dict[str, Any]:
        self.runs += 1
        assert self.fakes is not None
        spec = {
            "targets": targets,
            "stream": self.stream,
            "seq_base": self.runs * 10_000_000,
            "pool": self.profile.pool,
            "pool_prefix": pool_prefix,
            "drain": self.profile.drain,
            "pids": {"system": [p.pid for p in procs], "fakes": [self.fakes.pid]},
            **spec,
        }
        bound = spec["seconds"] + spec["drain"] + 60
        done = subprocess.run(
            python(str(HERE / "loadgen.py"), json.dumps(spec)), capture_output=True, text=True, timeout=bound
        )
        if done.returncode != 0:
            raise RuntimeError(f"load generator failed:\n{done.stderr[-3000:]}")
        httpx.post(self.scg_url + "/bench/reset", timeout=10)
        return json.loads(done.stdout)

    def measure(
        self, name: str, procs: list[Proc], targets: list[str], pool_prefix: str, flood: bool
    ) -> dict[str, Any]:
        p = self.profile
        print(f"\n== {name}", flush=True)
        result: dict[str, Any] = {"name": name, "processes": len(procs), "runs": []}

        def run(label: str, **spec: Any) -> dict[str, Any]:
            outcome = self.load(targets, procs, pool_prefix, **spec)
            outcome["label"] = label
            result["runs"].append(outcome)
            added = outcome["added_ms"]
            print(
                f"  {label:<16} accepted {outcome['accepted_per_s']:>7.1f}/s"
                f"  completed {outcome['completed_per_s']:>7.1f}/s"
                f"  added p50/p95/p99 {added['p50']}/{added['p95']}/{added['p99']} ms"
                f"  cpu {outcome['cpu_ms_per_msg'].get('system')} ms/msg  errors {outcome['errors']}"
                # accepted but not replied to by the end of the drain period (still queued, not lost)
                f"  unreplied at end {outcome['lost_or_late']}",
                flush=True,
            )
            return outcome

        warm = run("warm-up", mode="closed", concurrency=32, seconds=p.warm_seconds, count=p.pool)
        if warm["completed"] < p.pool * 0.95:
            raise RuntimeError(f"{name}: warm-up completed only {warm['completed']} of {p.pool}")
        spy = self.spy(name, procs, p.full_seconds)
        full = run("full speed", mode="closed", concurrency=32, seconds=p.full_seconds)
        if spy is not None:
            spy.wait(timeout=60)
            self.summarize(name)
        sustainable = full["completed_per_s"]
        result["sustainable_per_s"] = sustainable
        for fraction in p.fractions:
            rate = max(1.0, round(sustainable * fraction, 1))
            run(f"open {fraction:.0%}", mode="open", rate=rate, seconds=p.open_seconds)
        if flood:
            run("flood (accept)", mode="flood", concurrency=32, seconds=p.flood_seconds, drain=0.5)
        result["peak_rss_mib"] = max(r["peak_rss_mib"].get("system") or 0 for r in result["runs"])
        return result

    def spy(self, name: str, procs: list[Proc], seconds: float) -> subprocess.Popen[bytes] | None:
        """py-spy on the first process of a botbridge system during its full-speed run (collapsed stacks)."""
        if self.profile_to is None or not name.startswith("botbridge") or not shutil.which("py-spy"):
            return None
        self.profile_to.mkdir(parents=True, exist_ok=True)
        argv = ["py-spy", "record", "--pid", str(procs[0].pid), "--format", "raw", "--rate", "250"]
        argv += ["--duration", str(int(seconds)), "--nonblocking", "-o", str(self.profile_to / f"profile-{name}.txt")]
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def summarize(self, name: str) -> None:
        """Keep a summary of the raw stacks (shares per function, no directories of this machine)."""
        from report import summarize_profile

        assert self.profile_to is not None
        raw = self.profile_to / f"profile-{name}.txt"
        if raw.exists():
            raw.write_text(summarize_profile(raw))

    def activity_gets(self) -> int:
        status = httpx.get(self.scg_url + "/bench/status", timeout=10).text.split()
        return int(status[status.index("activity_gets") + 1])

    def late_replies(self, store: str) -> dict[str, Any]:
        """Direct Line's defaults on: `pool` conversations after one turn each, then only the poller reads.

        Samples the Direct Line fake's GETs of activities and the host's CPU
        every second from the first turn until the last conversation's
        late-reply window has ended.
        """
        name = "botbridge-1-sqlite-late-replies"
        print(f"\n== {name}", flush=True)
        procs, targets = self.start_hosts(store, 1, direct_line={})
        pid = procs[0].pid
        samples: list[tuple[float, int, float]] = []  # (monotonic, activity GETs so far, host CPU seconds)
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append((time.monotonic(), self.activity_gets(), cpu_seconds(pid)))
                stop.wait(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        try:
            sampler.start()
            turns = self.load(
                targets, procs, "558", mode="closed", concurrency=32, seconds=120, count=self.profile.pool, drain=2
            )
            last_turn = time.monotonic()
            time.sleep(LATE_REPLY_WINDOW + 5)
        finally:
            stop.set()
            sampler.join(timeout=10)
            for proc in procs:
                self.stop(proc)
        after = [s for s in samples if s[0] >= last_turn]
        # per sampling interval, divided by its actual length (about a second)
        per_second = [round((b[1] - a[1]) / (b[0] - a[0]), 1) for a, b in itertools.pairwise(after)]
        cpu_ms = [(b[2] - a[2]) * 1000 / (b[0] - a[0]) for a, b in itertools.pairwise(after)]
        total_gets = samples[-1][1] - samples[0][1]
        result = {
            "name": name,
            "conversations": self.profile.pool,
            "turns": turns["completed"],
            "budget_gets_per_s": LATE_REPLY_BUDGET,
            "poller_gets_per_s_peak": max(per_second, default=0.0),
            "poller_cpu_ms_per_s_peak": round(max(cpu_ms, default=0.0), 1),
            "poller_gets_per_s_mean": round((after[-1][1] - after[0][1]) / (after[-1][0] - after[0][0]), 1),
            "poller_cpu_ms_per_s": round((after[-1][2] - after[0][2]) * 1000 / (after[-1][0] - after[0][0]), 1),
            "gets_total": total_gets,
            "gets_per_conversation": round(total_gets / max(1, self.profile.pool), 2),
            "per_second_after_last_turn": per_second,
        }
        print(
            f"  {result['conversations']} conversations: poller GETs/s peak {result['poller_gets_per_s_peak']}"
            f" mean {result['poller_gets_per_s_mean']} (budget {LATE_REPLY_BUDGET})"
            f"  host cpu {result['poller_cpu_ms_per_s']} ms/s  GETs per conversation {result['gets_per_conversation']}",
            flush=True,
        )
        return result

    def system(
        self, name: str, pool_prefix: str, start: Callable[[], tuple[list[Proc], list[str]]], flood: bool
    ) -> dict[str, Any]:
        procs, targets = start()
        try:
            return self.measure(name, procs, targets, pool_prefix, flood)
        finally:
            for proc in procs:
                self.stop(proc)


def store_installed(scheme: str) -> bool:
    listing = subprocess.run(
        python("-m", "botbridge.cli", "plugins"), capture_output=True, text=True, timeout=60, check=False
    )
    return f"store {scheme}://" in listing.stdout


def postgres_cleanup(schema: str) -> None:
    import asyncio

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


def redis_cleanup(prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    deleted = 0
    try:
        batch = []
        for key in client.scan_iter(match=prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += client.delete(*batch)
                batch = []
        if batch:
            deleted += client.delete(*batch)
    finally:
        client.close()
    return deleted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--workers", type=int, default=None, help="BOTBRIDGE_WORKERS for the hosts (default: theirs)")
    parser.add_argument("--profile", action="store_true", help="py-spy the hosts' full-speed runs into results/")
    parser.add_argument("--only", default="", help="comma list of systems to run (default: all)")
    parser.add_argument("--out", default=str(HERE / "results"), help="directory for latest.json / latest.png")
    args = parser.parse_args()
    profile = QUICK if args.quick else FULL
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    workdir = Path(tempfile.mkdtemp(prefix="botbridge-bench-"))
    began = time.time()
    systems: list[dict[str, Any]] = []
    late_replies: dict[str, Any] | None = None
    skipped: dict[str, str] = {}
    try:
        with processes() as procs:
            bench = Bench(profile, workdir, procs, args.workers, Path(args.out) if args.profile else None)
            bench.start_fakes()
            plan: list[tuple[str, str, Callable[[], tuple[list[Proc], list[str]]], bool]] = [
                ("floor-aiohttp", "551", lambda: bench.start_floor("floor_aiohttp.py"), False),
                ("floor-httpx-aiohttp", "552", lambda: bench.start_floor("floor_httpx.py", "aiohttp"), False),
            ]
            if profile.httpx_default:
                plan.append(("floor-httpx-default", "553", lambda: bench.start_floor("floor_httpx.py", "httpx"), False))
            db = workdir / "bench.db"
            plan.append(("botbridge-1-sqlite", "554", lambda: bench.start_hosts(f"sqlite:///{db}", 1), True))
            for name, prefix, start, flood in plan:
                if not only or name in only:
                    systems.append(bench.system(name, prefix, start, flood))
            if not only or "botbridge-1-sqlite-late-replies" in only:
                late_replies = bench.late_replies(f"sqlite:///{workdir / 'late-replies.db'}")
            for name, contacts, hosts in (("botbridge-1-postgres", "556", 1), ("botbridge-2-postgres", "557", 2)):
                if only and name not in only:
                    continue
                if not store_installed("postgresql"):
                    skipped[name] = "skipped: postgres store not installed"
                    print(f"\n== {name}: {skipped[name]}")
                    continue
                schema = f"bench_{uuid.uuid4().hex}"
                store = f"{POSTGRES_URL}?schema={schema}"
                try:
                    systems.append(bench.system(name, contacts, lambda s=store, n=hosts: bench.start_hosts(s, n), True))
                finally:
                    postgres_cleanup(schema)
                    print(f"  postgres schema {schema} dropped")
            name = "botbridge-2-redis"
            if only and name not in only:
                pass
            elif not store_installed("redis"):
                skipped[name] = "skipped: redis store not installed"
                print(f"\n== {name}: {skipped[name]}")
            else:
                prefix = f"bench-{uuid.uuid4().hex}:"
                store = f"{REDIS_URL}?prefix={prefix}"
                try:
                    systems.append(bench.system(name, "555", lambda: bench.start_hosts(store, 2), True))
                finally:
                    print(f"  redis keys removed: {redis_cleanup(prefix)}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began)),
        "duration_s": round(time.time() - began, 1),
        "quick": args.quick,
        "machine": {"cpus": _cpus(), "python": platform.python_version(), "platform": platform.platform()},
        "setup": {
            "contacts": profile.pool,
            "direct_line_config": DIRECT_LINE_CONFIG,
            "host_workers": args.workers or "default",
            "closed_loop_concurrency": 32,
        },
        "systems": systems,
        "late_replies": late_replies,
        "skipped": skipped,
        "ratios": ratios(systems),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    from report import chart, table

    chart(results, out / "latest.png")
    print()
    print(table(results))
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def ratios(systems: list[dict[str, Any]]) -> dict[str, float | None]:
    rate = {s["name"]: s.get("sustainable_per_s") for s in systems}

    def ratio(a: str, b: str) -> float | None:
        if rate.get(a) and rate.get(b):
            return round(rate[a] / rate[b], 3)
        return None

    return {
        "botbridge_1 / floor_httpx_aiohttp": ratio("botbridge-1-sqlite", "floor-httpx-aiohttp"),
        "botbridge_1 / floor_aiohttp": ratio("botbridge-1-sqlite", "floor-aiohttp"),
        "botbridge_1 / floor_httpx_default": ratio("botbridge-1-sqlite", "floor-httpx-default"),
        "botbridge_2 / botbridge_1": ratio("botbridge-2-redis", "botbridge-1-sqlite"),
        "botbridge_1_postgres / botbridge_1": ratio("botbridge-1-postgres", "botbridge-1-sqlite"),
        "botbridge_2_postgres / botbridge_1_postgres": ratio("botbridge-2-postgres", "botbridge-1-postgres"),
        "floor_httpx_aiohttp / floor_aiohttp": ratio("floor-httpx-aiohttp", "floor-aiohttp"),
    }


if __name__ == "__main__":
    sys.exit(main())
