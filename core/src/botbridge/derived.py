"""Values worked out from settings, kept while the settings are the same."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class Derived:
    """Values worked out from a record's settings, kept while the record is the same.

    Key them by what they depend on (a sender's id and `updated_at`, say): a
    changed record has a new key, so nothing needs clearing; the table is
    emptied when it grows past `limit`.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._values: dict[Hashable, Any] = {}

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        try:
            return self._values[key]  # type: ignore[no-any-return]
        except KeyError:
            if len(self._values) >= self.limit:
                self._values.clear()
            value = self._values[key] = make()
            return value
