"""Delivering an event to a subscriber: signed, through the outbound-URL policy, retried, dead-lettered.

Each delivery is a job of its own (kind "event"), so one slow or failing
subscriber holds up no other and no conversation. A delivery that fails is
retried with backoff up to `EngineSettings.event_attempts`, then kept as an
`EventFailure` an operator can list and redeliver. A URL the policy refuses
(loopback, private, metadata addresses) is not tried again.
"""

from __future__ import annotations

import logging

from botbridge.events import delivery_body
from botbridge.http import OutboundRefused
from botbridge.models import EventFailure, Job
from botbridge.outbound import UnsafeURL
from botbridge.signing import standard_webhook_headers
from botbridge.steps import EngineSettings, Host, Retry

logger = logging.getLogger("botbridge.deliveries")


async def deliver(host: Host, settings: EngineSettings, job: Job) -> None:
    """POST one event to one subscription (`job.payload`); raise `Retry` while attempts remain."""
    subscription = await host.store.get_subscription(job.payload["subscription_id"])
    if subscription is None:
        return
    event = job.payload["event"]
    attempt = job.attempts + 1
    body = delivery_body(event, attempt)
    headers = standard_webhook_headers(
        host.box.decrypt(subscription.secret_enc), event["event-id"], int(host.clock.now()), body
    )
    headers["content-type"] = "application/json"
    try:
        await host.outbound.check_url(subscription.url)
        response = await host.http.post(subscription.url, content=body, headers=headers, timeout=settings.event_timeout)
        error = None if response.is_success else f"subscriber answered {response.status_code}"
    except (UnsafeURL, OutboundRefused) as exc:
        error = f"refused url: {exc}"
    except Exception as exc:  # any transport failure is the subscriber's, not ours
        error = f"delivery failed: {type(exc).__name__}"
    if error is None:
        host.metrics.events_delivered.inc()
        return
    if attempt < settings.event_attempts and not error.startswith("refused"):
        raise Retry(error, settings.backoff(job.attempts))
    host.metrics.events_failed.inc()
    await host.store.add_event_failure(
        EventFailure(subscription_id=subscription.id, event=event, attempts=attempt, last_error=error)
    )
    logger.warning("event %s dead-lettered for subscription %s: %s", event["event-id"], subscription.id, error)


__all__ = ["deliver"]
