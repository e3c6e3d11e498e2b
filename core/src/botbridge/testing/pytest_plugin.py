"""Fixtures for plugin authors, registered through the `pytest11` entry point."""

from __future__ import annotations

import pytest

from botbridge.clock import FakeClock


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock that moves only when the test calls `advance(seconds)`."""
    return FakeClock()
