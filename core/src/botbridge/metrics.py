"""Prometheus metrics of one host, labelled by channel and bot type (never by contact)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from botbridge.store import Durability

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.mo_accepted = Counter("botbridge_mo_accepted", "Inbound messages accepted", ["channel"], registry=r)
        self.mo_duplicates = Counter(
            "botbridge_mo_duplicates", "Inbound messages dropped as duplicates", ["channel"], registry=r
        )
        self.mt_sent = Counter("botbridge_mt_sent", "Outbound messages the channel accepted", ["channel"], registry=r)
        self.mt_failed = Counter(
            "botbridge_mt_failed", "Outbound messages that failed for good", ["channel"], registry=r
        )
        self.events_delivered = Counter("botbridge_events_delivered", "Events a subscriber accepted", registry=r)
        self.events_failed = Counter("botbridge_events_failed", "Events dead-lettered", registry=r)
        self.conversations_opened = Counter(
            "botbridge_conversations_opened", "Conversations opened", ["bot"], registry=r
        )
        self.conversations_expired = Counter(
            "botbridge_conversations_expired", "Conversations closed by timeout", ["bot"], registry=r
        )
        self.job_errors = Counter(
            "botbridge_job_errors", "Jobs that raised an unexpected error (retried)", ["kind"], registry=r
        )
        self.bot_errors = Counter("botbridge_bot_errors", "Bot calls that failed", ["bot"], registry=r)
        self.webhooks_rejected = Counter(
            "botbridge_webhooks_rejected",
            "Webhooks refused: signature, malformed, unknown_sender, unknown_channel, too_large, too_slow",
            ["channel", "reason"],
            registry=r,
        )
        self.bot_latency = Histogram(
            "botbridge_bot_call_seconds", "Bot call latency", ["bot"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.send_latency = Histogram(
            "botbridge_send_seconds", "Channel send latency", ["channel"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.client_disconnects = Counter(
            "botbridge_client_disconnects", "Requests whose client left before sending the whole body", registry=r
        )
        self.body_timeouts = Counter(
            "botbridge_body_timeouts", "Requests answered 408: the body did not arrive in time", registry=r
        )
        self.queue_depth = Gauge("botbridge_queue_depth", "Unfinished jobs", ["kind"], registry=r)
        self.store_durable = Gauge(
            "botbridge_store_durable",
            "1 when the store's server keeps accepted work through its own crash, 0 when not, -1 when unknown",
            registry=r,
        )
        self.store_durable.set(-1)

    def render(self, depth: dict[str, int], durability: Durability | None = None) -> bytes:
        for kind in ("mo", "mt", "dr", "conversation", "event"):
            self.queue_depth.labels(kind).set(depth.get(kind, 0))
        durable = None if durability is None else durability.durable
        self.store_durable.set(-1 if durable is None else int(durable))
        return generate_latest(self.registry)
