"""Every activity the tests exchange with a fake is checked against botbuilder-schema's models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from botbridge_azure_directline.testing import FakeDirectLine

from .oracle import ActivityOracle


@pytest.fixture(autouse=True)
def activity_oracle(monkeypatch: pytest.MonkeyPatch) -> Iterator[ActivityOracle]:
    oracle = ActivityOracle()
    # on the class: the fakes tests build inline are checked too
    monkeypatch.setattr(FakeDirectLine, "activity_checks", (oracle,))
    yield oracle
    assert oracle.problems == [], "activities that botbuilder-schema's models do not accept:\n" + "\n".join(
        oracle.problems
    )


@pytest.fixture
def anyio_backend() -> str:
    # The late-reply poller runs as an asyncio task.
    return "asyncio"
