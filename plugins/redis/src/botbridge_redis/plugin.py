"""The hook implementation botbridge finds through the `redis` entry point."""

from __future__ import annotations

from typing import Any

from botbridge import hookimpl
from botbridge_redis.store import RedisStore


@hookimpl
def register_stores(register: Any) -> None:
    register("redis", RedisStore.from_url)
