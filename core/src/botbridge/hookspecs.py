"""Every hook a botbridge plugin can implement.

A plugin is a module (or object) with functions decorated `@hookimpl`,
found through the `botbridge` entry-point group. Hooks evolve additively: an
implementation may accept any subset of a hook's arguments.

Registry hooks are called once, when the host starts, with a `register`
callback; core checks names and collisions. Observer hooks are called for
every message, report and event; they must be quick and must not block (hand
slow work to a task or a queue); an exception in one is logged, never
propagated.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "botbridge"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- registries (called once at start-up) ------------------------------------


@hookspec
def register_channels(register: Any) -> None:
    """Register channel plugins.

    Call `register(ChannelClass)` for each `botbridge.Channel` subclass; its
    `name` (e.g. "sinch") is the `channel` of senders and the `{channel}` of
    `/v1/webhooks/{channel}/{sender_id}`. Returns nothing.
    """


@hookspec
def register_bot_backends(register: Any) -> None:
    """Register bot backends.

    Call `register(BotBackendClass)` for each `botbridge.BotBackend`
    subclass; its `type` (e.g. "AMAZON_LEX") is the connector `type`.
    Returns nothing.
    """


@hookspec
def register_stores(register: Any) -> None:
    """Register store implementations.

    Call `register(scheme, factory)`; `factory(url, clock)` returns a
    `botbridge.Store` for a BOTBRIDGE_STORE URL of that scheme (e.g.
    "redis"). Returns nothing.
    """


@hookspec
def register_fakes(register: Any) -> None:
    """Register strict fakes of providers, for `botbridge demo` and end-to-end tests.

    Call `register(kind, name, factory)` with kind "channel" (name = the
    channel name) or "bot" (name = the connector type); `factory()` returns a
    `botbridge.fakes.ChannelFake` or `BotFake`. Import the fake
    inside the factory so production hosts never load it. Returns nothing.
    """


# --- observers (called for every item; results ignored) -----------------


@hookspec
def on_inbound_message(message: Any, sender: Any) -> None:
    """Called once per accepted inbound message (MO), after dedupe.

    Gets the `InboundMessage` and its `Sender` record. Returns nothing.
    """


@hookspec
def on_outbound_message(message: Any, sender: Any) -> None:
    """Called when an outbound message (MT) changes state (created, sent, failed…).

    Gets the `OutboundMessage` and its `Sender` record. Returns nothing.
    """


@hookspec
def on_delivery_report(report: Any, sender: Any) -> None:
    """Called once per accepted delivery report from a channel, after dedupe.

    Gets the `DeliveryReport` and its `Sender` record. Returns nothing.
    """


@hookspec
def on_event(event: Any, account_id: str) -> None:
    """Called for every event emitted to subscribers, whether or not anyone subscribed.

    Gets the `Event` (SCG event format) and the account it belongs to.
    Returns nothing.
    """
