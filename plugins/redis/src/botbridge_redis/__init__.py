"""Redis as a botbridge store (`BOTBRIDGE_STORE=redis://host:port/db`): several hosts, one state."""

from botbridge_redis.store import NotDurable, RedisStore, parse_url

__all__ = ["NotDurable", "RedisStore", "parse_url"]
