from __future__ import annotations

from collections.abc import Iterator

import pytest

from botbridge_redis.testing import delete_prefix, redis_test_url, unavailable_reason, unique_prefix


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis; every test using it is skipped, with the reason, when none answers."""
    url = redis_test_url()
    reason = unavailable_reason(url)
    if reason is not None:
        pytest.skip(reason)
    return url


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = unique_prefix()
    try:
        yield name
    finally:
        delete_prefix(redis_url, name)
