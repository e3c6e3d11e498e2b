"""`/v1/subscriptions`: where an account's events are delivered."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from botbridge.api.common import account, json_body, no_content, not_found, owned, page, page_params, runtime
from botbridge.errors import ConfigInvalid
from botbridge.models import EventFailure, Job, Subscription, SubscriptionCreate
from botbridge.outbound import UnsafeURL
from botbridge.runtime import Runtime


async def owned_subscription(rt: Runtime, account_id: str, subscription_id: str) -> Subscription:
    return owned(await rt.store.get_subscription(subscription_id), account_id, "subscription", subscription_id)


async def create_subscription(request: Request) -> Response:
    account_id = await account(request)
    rt = runtime(request)
    body = await json_body(request, SubscriptionCreate)
    try:
        await rt.outbound.check_url(body.url)
    except UnsafeURL as exc:
        raise ConfigInvalid("url", str(exc)) from None
    subscription = Subscription(
        account_id=account_id, url=body.url, topic=body.topic, secret_enc=rt.box.encrypt(body.secret)
    )
    await rt.store.create_subscription(subscription)
    rt.cache.clear()
    return JSONResponse(subscription.public(), status_code=201)


async def list_subscriptions(request: Request) -> Response:
    account_id = await account(request)
    limit, cursor = page_params(request)
    found = await runtime(request).store.list_subscriptions(account_id, limit=limit, after=cursor)
    return page([s.public() for s in found], limit)


async def get_subscription(request: Request) -> Response:
    account_id = await account(request)
    subscription = await owned_subscription(runtime(request), account_id, request.path_params["subscription_id"])
    return JSONResponse(subscription.public())


async def delete_subscription(request: Request) -> Response:
    account_id = await account(request)
    rt = runtime(request)
    subscription = await owned_subscription(rt, account_id, request.path_params["subscription_id"])
    await rt.store.delete_subscription(subscription.id)
    rt.cache.clear()
    return no_content()


async def list_failures(request: Request) -> Response:
    account_id = await account(request)
    rt = runtime(request)
    subscription = await owned_subscription(rt, account_id, request.path_params["subscription_id"])
    limit, cursor = page_params(request)
    failures = await rt.store.list_event_failures(subscription.id, limit=limit, after=cursor)
    return page([f.model_dump(mode="json") for f in failures], limit)


async def _failure(rt: Runtime, subscription_id: str, failure_id: str) -> EventFailure | None:
    after = None
    while batch := await rt.store.list_event_failures(subscription_id, limit=200, after=after):
        for failure in batch:
            if failure.id == failure_id:
                return failure
        after = batch[-1].id
    return None


async def redeliver_failure(request: Request) -> Response:
    """Queue a dead-lettered event for its subscription again: a fresh delivery job, same `event-id`.

    The failure stays listed (the store keeps dead letters until retention or erasure removes them).
    """
    account_id = await account(request)
    rt = runtime(request)
    subscription = await owned_subscription(rt, account_id, request.path_params["subscription_id"])
    failure_id = request.path_params["failure_id"]
    failure = await _failure(rt, subscription.id, failure_id)
    if failure is None:
        raise not_found("failure", failure_id)
    event_id = str(failure.event.get("event-id") or failure.id)
    job = Job(
        kind="event",
        key=f"event:{subscription.id}:{event_id}",
        payload={"subscription_id": subscription.id, "event": failure.event},
    )
    await rt.store.enqueue([job])
    rt.engine.wake(1, "event")
    return JSONResponse({"redelivering": True}, status_code=202)
