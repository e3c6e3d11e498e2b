"""Run the host in-process for tests, lifespan included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette


@asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[Starlette]:
    """Run the app's lifespan (store opened, keys bootstrapped) around a block."""
    async with app.router.lifespan_context(app):
        yield app


@asynccontextmanager
async def api_client(app: Starlette, api_key: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the running app in-process."""
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://botbridge.test", headers=headers) as client:
            yield client
