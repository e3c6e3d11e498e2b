"""Fixtures for plugin authors, registered through the `pytest11` entry point.

Every pytest run in an environment with botbridge installed loads this
module, including runs of projects that never heard of botbridge. So it is a
top-level module (importing `botbridge.anything` would import the whole
`botbridge` package first) and imports nothing beyond pytest until one of
its fixtures is used.

- `fake_clock`: a clock that moves only when the test calls `advance(seconds)`.
- `botbridge_host`: `async with botbridge_host("myplugin") as (app, client)`: a
  host with only core's built-ins and the named installed plugins, and an API
  client already carrying a valid key.
- `provider_fake`: `provider_fake("channel", "sinch")`: a registered fake
  (`ChannelFake.phone_says` sends correctly signed webhooks; `BotFake` scripts a bot).
- `botbridge_allow_private_urls = true` in a project's pytest configuration
  runs each of its tests with BOTBRIDGE_ALLOW_PRIVATE_URLS=true, since fakes
  listen on loopback or answer in-process under names that do not resolve; a
  test of the outbound-URL policy itself is marked
  `@pytest.mark.outbound_policy` and gets the default (refuse) instead. A
  project that does not ask for it keeps its environment as it is: installing
  botbridge never relaxes another project's tests. `botbridge_host` allows
  private URLs by itself (pass `allow_private_urls=False` to test the policy).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import httpx

    from botbridge.clock import FakeClock

API_KEY = "test-api-key-0001"
_ALLOWANCES = ("BOTBRIDGE_ALLOW_PRIVATE_URLS", "BOTBRIDGE_ALLOW_PRIVATE_WEBHOOK_URLS", "BOTBRIDGE_OUTBOUND_ALLOW")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "botbridge_allow_private_urls",
        type="bool",
        default=False,
        help="run every test with BOTBRIDGE_ALLOW_PRIVATE_URLS=true (fakes on loopback), "
        "except those marked outbound_policy (default: false)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "outbound_policy: run with the default outbound-URL policy (private addresses refused)"
    )


@pytest.fixture(autouse=True)
def _outbound_allowance(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback and in-process fakes are allowed unless the test is about the policy (when the project asks)."""
    if not request.config.getini("botbridge_allow_private_urls"):
        return
    for name in _ALLOWANCES:
        monkeypatch.delenv(name, raising=False)
    if request.node.get_closest_marker("outbound_policy") is None:
        monkeypatch.setenv("BOTBRIDGE_ALLOW_PRIVATE_URLS", "true")


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock that moves only when the test calls `advance(seconds)`."""
    from botbridge.clock import FakeClock

    return FakeClock()


@pytest.fixture
def botbridge_host() -> Callable[..., AbstractAsyncContextManager[tuple[Any, httpx.AsyncClient]]]:
    """Start a host with only the named plugins loaded (plus core's stores).

    Pass `clock=fake_clock` to steer time (providers' signatures carry real
    timestamps, so the default is the system clock), `http=` to route the
    plugins' calls (e.g. to an in-process fake), and any Settings field.
    """
    from botbridge.host import create_app
    from botbridge.plugins import Plugins
    from botbridge.settings import Settings
    from botbridge.testing.app import api_client

    @asynccontextmanager
    async def start(
        *names: str, http: httpx.AsyncClient | None = None, clock: Any = None, **settings: Any
    ) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
        config = Settings(
            store="memory://",
            api_keys=f"test:{API_KEY}",  # type: ignore[arg-type]
            secret_key="test-secret-key-0001",  # type: ignore[arg-type]
            load_plugins=",".join(names) or "-",
            **{"allow_private_urls": True, **settings},
        )
        app = create_app(config, plugins=Plugins.discover(config), http=http, clock=clock)
        async with api_client(app, API_KEY) as client:
            yield app, client

    return start


@pytest.fixture
def provider_fake() -> Callable[[str, str], Any]:
    """A registered provider fake by kind ("channel" or "bot") and name."""
    from botbridge.plugins import Plugins
    from botbridge.settings import Settings

    fakes = Plugins.discover(Settings()).fakes

    def make(kind: str, name: str) -> Any:
        return fakes[(kind, name)]()

    return make
