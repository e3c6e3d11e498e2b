"""botbridge inside your own application.

    from botbridge import Botbridge

    bridge = Botbridge(plugins=[my_bot_plugin], mount_path="/bridge")
    app = FastAPI(lifespan=bridge.lifespan)      # or: async with bridge: … in your own lifespan
    app.mount("/bridge", bridge.app)

`bridge.app` is the host's ASGI app (REST API, provider webhooks, console);
Starlette and FastAPI do not run a mounted app's lifespan, so the outer
app's lifespan starts and stops botbridge through `bridge.lifespan`.
In-process plugins are objects or modules with `@hookimpl` functions (the
same hooks as an installed plugin's): a bot backend answering from the
application's own code, an observer writing every message to its database.
The methods below do without HTTP what the REST API does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette

from botbridge.api.messages import queue_message
from botbridge.clock import Clock
from botbridge.errors import NotFound
from botbridge.host import create_app
from botbridge.models import (
    Conversation,
    Media,
    MessageCreate,
    Option,
    OutboundMessage,
    StreamItem,
    TimelineItem,
)
from botbridge.plugins import Plugins
from botbridge.runtime import Runtime
from botbridge.settings import Settings
from botbridge.store import ConversationFilter, Store
from botbridge.timeline import timeline


class Botbridge:
    """The host as an object: its ASGI `app`, its lifespan, and the operations of the REST API."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        plugins: Sequence[Any] = (),
        store: Store | None = None,
        http: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
        mount_path: str = "",
    ) -> None:
        """`plugins`: in-process plugin objects, registered beside the installed ones.

        `mount_path`: where the outer application mounts `app` (webhook URLs
        and the Bird signed URL include it; learnt from the first request
        when not given).
        """
        self.settings = settings or Settings()
        found = Plugins.discover(self.settings)
        for number, plugin in enumerate(plugins):
            name = getattr(plugin, "name", None) or getattr(plugin, "__name__", None) or type(plugin).__name__
            found.add(plugin, f"{name}-{number}" if name in found.infos else str(name))
        found.collect()
        self.app: Starlette = create_app(
            self.settings, plugins=found, store=store, http=http, clock=clock, root_path=mount_path or None
        )
        self.runtime: Runtime = self.app.state.runtime
        self._started = False

    # --- life ---

    async def start(self) -> None:
        """Open the store and start the workers (what the host's lifespan does)."""
        if not self._started:
            await self.runtime.start()
            self._started = True

    async def stop(self) -> None:
        """Stop the workers and close the store; nothing of botbridge keeps running."""
        if self._started:
            self._started = False
            await self.runtime.stop()

    async def __aenter__(self) -> Botbridge:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """For `FastAPI(lifespan=bridge.lifespan)` / `Starlette(lifespan=bridge.lifespan)`."""
        async with self:
            yield

    # --- the REST API's operations, in-process ---

    async def send_message(
        self,
        sender_id: str,
        to: str,
        text: str = "",
        *,
        media: Sequence[Media] = (),
        options: Sequence[Option] = (),
        external_id: str | None = None,
        conversation_id: str | None = None,
    ) -> OutboundMessage:
        """Queue an MT through a sender (as `POST /v1/messages`); follow it with `message()`.

        With `conversation_id`, it is part of that conversation's timeline (an agent's answer).
        """
        sender = await self.runtime.store.get_sender(sender_id)
        if sender is None:
            raise NotFound(f"no sender {sender_id!r}")
        body = MessageCreate(
            sender_id=sender_id,
            to=to,
            text=text,
            media=list(media),
            options=list(options),
            external_id=external_id,
            conversation_id=conversation_id,
        )
        return await queue_message(self.runtime, sender, body)

    async def message(self, message_id: str) -> OutboundMessage | None:
        return await self.runtime.store.get_outbound(message_id)

    async def conversation(self, conversation_id: str) -> Conversation | None:
        return await self.runtime.store.get_conversation_by_id(conversation_id)

    async def conversations(
        self, account_id: str, where: ConversationFilter | None = None, *, limit: int = 50, before: str | None = None
    ) -> list[Conversation]:
        return await self.runtime.store.list_conversations(
            account_id, where or ConversationFilter(), limit=limit, before=before
        )

    async def timeline(self, conversation_id: str) -> list[TimelineItem]:
        """A conversation's entries and messages in time order (as `GET /v1/conversations/{id}/messages`)."""
        conversation = await self.conversation(conversation_id)
        return await timeline(self.runtime.store, conversation) if conversation is not None else []

    async def events(
        self, account_id: str, *, after: str | None = None, poll: float = 0.5
    ) -> AsyncIterator[StreamItem]:
        """The account's events and conversation changes as they happen (the live stream, in-process).

        Resume after the last item's id with `after`; items from any host sharing the store.
        """
        rt = self.runtime
        while True:
            items = await rt.store.read_stream(account_id, after=after, limit=200)
            for item in items:
                after = item.id
                yield item
            if not items:
                await rt.stream_broadcast.wait(poll)
            else:
                await asyncio.sleep(0)


__all__ = ["Botbridge"]
