"""PostgreSQL store for botbridge (`postgresql://user@host:port/db`)."""

from botbridge_postgres.store import PostgresStore, parse_url

__all__ = ["PostgresStore", "parse_url"]
