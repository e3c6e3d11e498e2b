"""Redis as a botbridge store (`BOTBRIDGE_STORE=redis://host:port/db`): several hosts, one state."""

from botbridge_redis.store import RedisStore, parse_url

__all__ = ["RedisStore", "parse_url"]
