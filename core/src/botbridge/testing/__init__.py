"""The plugin author's kit: conformance suites and helpers (needs the `[test]` extra).

Subclass a contract in your plugin's tests and provide its fixture:

    class TestMyStore(StoreContract):
        def create_store(self, clock):
            return MyStore(url, clock)

The suites are pytest classes; run them with `pytest` as usual. They import
pytest and hypothesis, so nothing that runs outside tests imports this
package: provider fakes build on `botbridge.fakes`, loopback servers are
`botbridge.loopback`, the fixtures are the top-level `botbridge_pytest`.
"""

from botbridge.testing.app import api_client, running
from botbridge.testing.bots import BotBackendContract, BotHarness
from botbridge.testing.channels import ChannelContract, ChannelHarness
from botbridge.testing.stores import StoreContract

__all__ = [
    "BotBackendContract",
    "BotHarness",
    "ChannelContract",
    "ChannelHarness",
    "StoreContract",
    "api_client",
    "running",
]
