"""Providers' fakes as the demo and end-to-end tests drive them.

A plugin registers its fake through the `register_fakes` hook. A channel
fake is the provider seen from the phone's side: it knows the sender JSON
that points the plugin at the fake, sends an MO the way the provider
delivers it, and tells what the provider was asked to send. A bot fake knows
the connector JSON for its scripted bot.
"""

from __future__ import annotations

from typing import Any, ClassVar


def digits(address: str) -> str:
    return "".join(c for c in str(address) if c.isdigit())


class ChannelFake:
    name: ClassVar[str]  # the channel name of the plugin it fakes
    app: Any  # the fake provider, an ASGI app

    def sender_body(self, base_url: str) -> dict[str, Any]:
        """`POST /v1/senders` JSON for a sender served by the fake at `base_url`."""
        raise NotImplementedError

    async def phone_says(self, webhook_url: str, text: str, contact: str) -> int | None:
        """Deliver an MO as the provider does; the host's last answer (None: no answer)."""
        raise NotImplementedError

    def sent(self) -> list[dict[str, Any]]:
        """What the fake provider was asked to send, as dicts with "to" and "text"."""
        raise NotImplementedError

    async def report_delivered(self, webhook_url: str) -> int:
        """The provider reports every message it was sent as delivered; how many it reported.

        Optional: a fake without delivery reports keeps this default.
        """
        return 0

    def texts_to(self, contact: str) -> list[str]:
        return [str(m["text"]) for m in self.sent() if digits(m["to"]) == digits(contact)]


class BotFake:
    type: ClassVar[str]  # the connector type of the plugin it fakes
    app: Any
    options_trigger: ClassVar[str] = "options"  # text the scripted bot answers with Billing / Sales

    def connector_body(self, sender_id: str, base_url: str) -> dict[str, Any]:
        """`POST /v1/connectors` JSON for a connector served by the fake at `base_url`."""
        raise NotImplementedError

    def echo(self, text: str) -> str:
        return f"echo: {text}"

    def sessions(self) -> set[str]:
        """The backend session ids the fake has seen (a new conversation adds one)."""
        raise NotImplementedError
