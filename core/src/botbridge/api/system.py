"""Health, readiness, plugin listing and the OpenAPI document."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from botbridge.api.common import account, runtime


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    rt = runtime(request)
    problems = [] if await rt.store.ping() else ["store unreachable"]
    problems += rt.engine.problems()
    if rt.secret_problem:
        problems.append(rt.secret_problem)
    durability = rt.store.durability()
    extra = {} if durability is None else {"store": {"durable": durability.durable, "detail": durability.detail}}
    if problems:
        return JSONResponse({"status": "; ".join(problems), **extra}, status_code=503)
    return JSONResponse({"status": "ready", **extra})


async def list_plugins(request: Request) -> Response:
    await account(request)
    return JSONResponse({"plugins": runtime(request).plugins.describe()})


async def openapi(request: Request) -> Response:
    from botbridge.openapi import document

    return JSONResponse(document(request.app))


async def metrics(request: Request) -> Response:
    rt = runtime(request)
    depth = await rt.store.queue_depth()
    return Response(
        rt.metrics.render(depth, rt.store.durability()), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
