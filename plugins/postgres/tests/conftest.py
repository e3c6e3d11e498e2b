from __future__ import annotations

from collections.abc import Iterator

import pytest

from botbridge_postgres.testing import drop_schema, postgres_test_url, unavailable_reason, unique_schema


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test PostgreSQL; every test using it is skipped, with the reason, when none answers."""
    url = postgres_test_url()
    reason = unavailable_reason(url)
    if reason is not None:
        pytest.skip(reason)
    return url


@pytest.fixture
def schema(postgres_url: str) -> Iterator[str]:
    """A schema of this test's own, dropped afterwards."""
    name = unique_schema()
    try:
        yield name
    finally:
        drop_schema(postgres_url, name)
