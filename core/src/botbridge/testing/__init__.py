"""The plugin author's kit: conformance suites and helpers.

Subclass a contract in your plugin's tests and provide its fixture:

    class TestMyStore(StoreContract):
        def create_store(self, clock):
            return MyStore(url, clock)

The suites are pytest classes; run them with `pytest` as usual.
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
