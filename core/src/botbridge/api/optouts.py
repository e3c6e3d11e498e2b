"""`/v1/opt-outs`: the contacts who opted out of an account's senders, and an operator's override."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from botbridge.api.common import account, json_body, no_content, not_found, page, page_params, runtime
from botbridge.api.senders import named_sender, owned_sender
from botbridge.events import contact_fields, make_event
from botbridge.models import OptOut, OptOutCreate, OptOutView, Sender
from botbridge.runtime import Runtime


def view(opt_out: OptOut) -> dict[str, object]:
    return OptOutView.model_validate(opt_out.model_dump()).model_dump(mode="json")


async def _changed(rt: Runtime, sender: Sender, contact: str, kind: str) -> None:
    event = make_event(kind, contact_fields(sender, contact, "api", None), rt.clock.now())
    await rt.engine.announce(sender.account_id, event)


async def list_opt_outs(request: Request) -> Response:
    account_id = await account(request)
    rt = runtime(request)
    limit, cursor = page_params(request)
    sender_id = request.query_params.get("sender_id") or None
    found = await rt.store.list_opt_outs(account_id, sender_id=sender_id, limit=limit, after=cursor)
    return page([view(o) for o in found], limit)


async def create_opt_out(request: Request) -> Response:
    """Opt a contact out as an operator: the same effect as their STOP, without a confirmation text."""
    account_id = await account(request)
    rt = runtime(request)
    body = await json_body(request, OptOutCreate)
    sender = await named_sender(rt, account_id, body.sender_id)
    record = OptOut(account_id=account_id, sender_id=sender.id, contact=body.contact, keyword="api")
    if await rt.store.put_opt_out(record):
        await _changed(rt, sender, body.contact, "contact_opted_out")
        return JSONResponse(view(record), status_code=201)
    existing = await rt.store.get_opt_out(sender.id, body.contact)
    return JSONResponse(view(existing or record), status_code=200)


async def delete_opt_out(request: Request) -> Response:
    """Opt a contact back in as an operator (they asked another way); no text is sent to them."""
    account_id = await account(request)
    rt = runtime(request)
    sender = await owned_sender(rt, account_id, request.path_params["sender_id"])
    contact = request.path_params["contact"]  # already decoded, as for DELETE /v1/contacts/{contact}
    if not await rt.store.delete_opt_out(sender.id, contact):
        raise not_found("opt-out of contact", contact)
    await _changed(rt, sender, contact, "contact_opted_in")
    return no_content()
