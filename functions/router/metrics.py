"""The router's Prometheus metrics. Names come from pickspin.contract: the scaler and dashboards rely on them.

Correct under several gunicorn workers: when ``PROMETHEUS_MULTIPROC_DIR`` is set (``pickspin router``
sets it), every worker writes its own files and ``/metrics`` aggregates them.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from pickspin import contract as c

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
DECISION_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            c.REQUESTS_TOTAL, "Requests answered by the router.",
            ["model", "backend", "status", "complexity"], registry=registry)
        self.duration = Histogram(
            c.REQUEST_DURATION, "End-to-end request latency at the router.",
            ["model", "backend"], buckets=LATENCY_BUCKETS, registry=registry)
        self.ttft = Histogram(
            c.TTFT, "Time to the backend's first byte.",
            ["model", "backend"], buckets=LATENCY_BUCKETS, registry=registry)
        self.inflight = Gauge(
            c.INFLIGHT, "Requests in flight at the router, per model (incl. waiting).",
            ["model"], multiprocess_mode="livesum", registry=registry)
        self.decision = Histogram(
            c.DECISION_DURATION, "Time to classify and score one request.",
            buckets=DECISION_BUCKETS, registry=registry)
        self.retries = Counter(
            c.UPSTREAM_RETRIES, "Attempts that failed before the first byte and moved on.",
            ["backend", "reason"], registry=registry)
        self.fallbacks = Counter(
            c.CLASSIFIER_FALLBACKS, "Semantic classification fell back to keywords.",
            ["reason"], registry=registry)
        self.downgrades = Counter(
            c.DOWNGRADES, "Requests served by another model because the best one was not ready within "
            "the request's wait budget.", ["from_model", "to_model"], registry=registry)
        self.backend_up = Gauge(
            c.BACKEND_UP, "1 if the router considers the backend healthy.",
            ["backend"], multiprocess_mode="max", registry=registry)
        self.circuit = Gauge(
            c.BACKEND_CIRCUIT, "Circuit breaker state per backend: 0 closed, 1 half-open, 2 open.",
            ["backend"], multiprocess_mode="max", registry=registry)
        self.circuit_transitions = Counter(
            c.CIRCUIT_TRANSITIONS, "Circuit breaker state changes per backend, by new state.",
            ["backend", "to"], registry=registry)

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            reg = CollectorRegistry()
            MultiProcessCollector(reg)
            return generate_latest(reg)
        return generate_latest(self.registry)
