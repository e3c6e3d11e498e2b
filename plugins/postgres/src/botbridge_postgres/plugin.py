"""The hook implementation botbridge finds through the `postgres` entry point."""

from __future__ import annotations

from typing import Any

from botbridge import hookimpl
from botbridge_postgres.store import PostgresStore


@hookimpl
def register_stores(register: Any) -> None:
    register("postgresql", PostgresStore.from_url)
    register("postgres", PostgresStore.from_url)
