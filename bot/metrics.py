"""Prometheus metrics, in one registry that the operators' `/metrics` endpoint serves.

Defined here, in one place, so every module records into the same series and tests can read them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

JOBS_BY_STATE = Gauge(
    "framecast_jobs", "Jobs by state and family (refreshed from the database).",
    ["state", "family"], registry=REGISTRY,
)
JOBS_CREATED = Counter(
    "framecast_jobs_created_total", "Jobs accepted.", ["family", "model"], registry=REGISTRY,
)
JOBS_FINISHED = Counter(
    "framecast_jobs_finished_total", "Jobs that reached a final state.", ["family", "outcome"], registry=REGISTRY,
)
VENDOR_REQUESTS = Counter(
    "framecast_vendor_requests_total", "Requests to vendor APIs.",
    ["provider", "operation", "outcome"], registry=REGISTRY,
)
VENDOR_LATENCY = Histogram(
    "framecast_vendor_request_seconds", "Vendor API request latency.",
    ["provider", "operation"], registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
NOTIFY_LATENCY = Histogram(
    "framecast_completion_to_notify_seconds",
    "From the vendor finishing (as first observed or reported) to the result handed to Discord.",
    registry=REGISTRY, buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300),
)
QUEUE_DEPTH = Gauge(
    "framecast_queue_depth", "Jobs waiting for a submit slot, by provider.", ["provider"], registry=REGISTRY,
)
CREDITS_SPENT = Counter(
    "framecast_credits_spent_total", "Credits charged for delivered videos.", ["family"], registry=REGISTRY,
)
DELIVERIES = Counter(
    "framecast_deliveries_total", "Result messages posted to Discord.", ["outcome"], registry=REGISTRY,
)
POLLER_CONCURRENCY = Gauge(
    "framecast_poller_concurrency", "Jobs the poller may work on at once right now (less while the loop is slow).",
    registry=REGISTRY,
)
POLLER_HEARTBEAT = Gauge(
    "framecast_poller_heartbeat_timestamp", "Unix time of the poller's last completed tick.", registry=REGISTRY,
)
