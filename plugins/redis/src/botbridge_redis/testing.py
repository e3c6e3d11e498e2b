"""Helpers for tests that need a real Redis: find it once, give each test its own prefix, clean up.

The server is `BOTBRIDGE_TEST_REDIS_URL` (default `redis://127.0.0.1:6379/0`).
Tests never flush a database: each one works under `bbtest:<uuid>:` and
deletes exactly the keys under it afterwards.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import redis

DEFAULT_TEST_URL = "redis://127.0.0.1:6379/0"


def redis_test_url() -> str:
    return os.environ.get("BOTBRIDGE_TEST_REDIS_URL", DEFAULT_TEST_URL)


@functools.cache
def unavailable_reason(url: str) -> str | None:
    """None when a Redis answers PING at `url`, else why not (asked once per process)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"no Redis answers at {url} ({type(exc).__name__}); set BOTBRIDGE_TEST_REDIS_URL to run these tests"
    finally:
        client.close()
    return None


def unique_prefix() -> str:
    return f"bbtest:{uuid.uuid4().hex}:"


def store_url(url: str, prefix: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}prefix={prefix}"


def delete_prefix(url: str, prefix: str) -> int:
    """Delete every key under `prefix` (SCAN + UNLINK; never FLUSHDB)."""
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
    client = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=5.0)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += client.unlink(*batch)
                batch = []
        if batch:
            deleted += client.unlink(*batch)
    finally:
        client.close()
    return deleted


class OwnRedis:
    """A redis-server of a test's own on a free port, to stop and restart at will.

    Never the shared server: tests that restart Redis use this one. It keeps
    its data in an append-only file in `workdir`, so a restart keeps it
    (`appendonly=False`: Redis keeping nothing on disk).
    """

    def __init__(self, workdir: Path, *, appendonly: bool = True) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self.workdir = workdir
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("no redis-server binary")
        options = ["--save", "", "--appendonly", "yes" if self.appendonly else "no", "--dir", str(self.workdir)]
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis(port=self.port, socket_connect_timeout=0.2) as client:
                    client.ping()
                    return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
