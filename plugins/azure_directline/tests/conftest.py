from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    # The late-reply poller runs as an asyncio task.
    return "asyncio"
