"""A connector's rate limit, held at the moment of sending.

`wait_for_slot` runs before each send of a connector with a `rate_limit`;
`finish_send` after the provider answered. The store keeps both the slots
and the sends in flight, so the limit holds across hosts.
"""

from __future__ import annotations

import logging

from botbridge.clock import Clock
from botbridge.ids import new_id
from botbridge.models import Connector, Job
from botbridge.steps import Retry
from botbridge.store import Store

logger = logging.getLogger("botbridge.pacing")


async def wait_for_slot(store: Store, clock: Clock, lease: float, job: Job, connector: Connector) -> str:
    """Wait until this message may be sent under the connector's rate limit; return its ticket.

    The reserved slot paces the connector's sends evenly; the admission
    check taken last, against the sends actually in flight or answered
    within the window, is what holds the limit (`Store.admit_send`): a
    worker that wakes late (a busy machine) waits again instead of
    sending next to the following slot's sender. A short wait happens in
    the worker. A long one (a deep queue at a low rate) would outlast the
    job's lease and let another worker send the same message, so the job
    is put back until its slot instead; the slot stays reserved for it
    in the payload.
    """
    rate = connector.settings.rate_limit
    now = clock.now()
    deadline = now + lease / 3
    slot = job.payload.get("slot_at")
    ticket = new_id()
    if slot is None:
        wait, admitted = await store.reserve_and_admit(connector.id, rate, now, ticket, lease)
        if admitted is not None and admitted <= 0:
            return ticket
        slot = now + (wait if admitted is None else admitted)
    while True:
        if slot <= now:
            wait = await store.admit_send(connector.id, rate, now, ticket, lease)
            if wait <= 0:
                return ticket
            slot = now + wait
        if slot > deadline:
            job.payload["slot_at"] = slot
            job.payload["deferrals"] = job.payload.get("deferrals", 0) + 1
            raise Retry("waiting for its send slot", slot - now)
        await clock.sleep(slot - now)
        now = clock.now()


async def finish_send(store: Store, clock: Clock, connector: Connector, ticket: str) -> None:
    """Tell the rate limit the send has its answer; a store error only keeps it counted until its hold ends."""
    try:
        await store.finish_send(connector.id, ticket, connector.settings.rate_limit, clock.now())
    except Exception:  # the send happened: losing its result over this would send it again
        logger.warning("could not record the end of a send on connector %s", connector.id, exc_info=True)


__all__ = ["finish_send", "wait_for_slot"]
