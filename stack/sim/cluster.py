"""The simulated cluster: per model, replicas of a vLLM server behind a Knative-style activator.

* A replica costs ``gpus`` GPUs from the moment it is created (pod scheduled) until it is gone; it
  serves only after ``cold_start_s`` (weights load + engine warm-up).
* Requests for a model queue in one FIFO (the activator / queue-proxy buffer while no replica is ready,
  the engines' waiting queues otherwise) and are admitted to the least-loaded ready replica while it
  runs fewer than ``max_batch`` sequences (vLLM's KV-bound batch).
* Service time is fixed at admission from the batch size then: TTFT = (base + prefill x input tokens)
  x slowdown(b), decode = output tokens x TPOT x slowdown(b), slowdown(b) = 1 + slope x max(0, b - knee).
* A request not finished within the request timeout (Knative's revision timeout) fails at the deadline.
* Scale-down removes starting replicas first, then idle ones, then the least busy, which drain:
  they take no new work and go away when their last request ends.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field

from pickspin.config import Model

from .config import ModelCluster


class Replica:
    __slots__ = ("active", "busy_s", "busy_since", "draining", "gone", "model", "ready", "t_created", "t_end",
                 "t_ready")

    def __init__(self, model: int, t_created: float, t_ready: float, ready: bool) -> None:
        self.model = model
        self.t_created = t_created
        self.t_ready = t_ready
        self.ready = ready
        self.draining = False
        self.gone = False
        self.active = 0
        self.busy_s = 0.0
        self.busy_since = 0.0
        self.t_end = float("inf")


@dataclass
class Scrape:
    """Counters and gauges of one model as a Prometheus scrape saw them."""

    t: float
    total: int  # requests answered (router pickspin_requests_total; vLLM e2e count)
    duration_sum: float  # sum of their end-to-end latencies
    inflight: int  # router in-flight gauge (incl. waiting for a cold backend)
    waiting: int  # vllm:num_requests_waiting summed over the model's ready replicas
    running: int  # vllm:num_requests_running
    arrivals: int  # requests received (vllm:num_incoming_requests_total / router side)


@dataclass
class ModelState:
    idx: int
    name: str
    model: Model
    cluster: ModelCluster
    replicas: list[Replica] = field(default_factory=list)
    pending: deque[int] = field(default_factory=deque)
    inflight: int = 0  # routed here and not yet answered (pending + running)
    running: int = 0
    # Concurrency integral (for time-averaged concurrency, Knative-style).
    conc_area: float = 0.0
    conc_t: float = 0.0
    # Event history (append-only, in time order) for windowed queries.
    arrival_t: list[float] = field(default_factory=list)
    done_t: list[float] = field(default_factory=list)
    done_cum_lat: list[float] = field(default_factory=list)
    last_arrival: float | None = None
    scrapes: list[Scrape] = field(default_factory=list)
    scrape_t: list[float] = field(default_factory=list)
    # Accounting.
    starts: int = 0  # replicas created after t=0 (cold starts)
    cold_requests: int = 0  # requests that arrived while no replica was ready
    gpu_s: float = 0.0
    cold_gpu_s: float = 0.0
    idle_gpu_s: float = 0.0
    replica_s: float = 0.0

    # -- counts -----------------------------------------------------------------------------
    @property
    def n_replicas(self) -> int:
        """Replicas the autoscaler sees as the current scale (starting + ready, not draining)."""
        return sum(1 for r in self.replicas if not r.draining)

    @property
    def n_ready(self) -> int:
        return sum(1 for r in self.replicas if r.ready and not r.draining)

    @property
    def n_alive(self) -> int:
        return len(self.replicas)

    @property
    def waiting(self) -> int:
        """vLLM's num_requests_waiting: queued requests while some engine is up (0 at zero replicas)."""
        return len(self.pending) if any(r.ready for r in self.replicas) else 0

    # -- time-weighted concurrency -----------------------------------------------------------
    def touch(self, now: float) -> None:
        self.conc_area += self.inflight * (now - self.conc_t)
        self.conc_t = now

    def area_at(self, now: float) -> float:
        self.touch(now)
        return self.conc_area

    # -- windows over history ----------------------------------------------------------------
    def arrivals_since(self, t0: float) -> int:
        return len(self.arrival_t) - bisect.bisect_left(self.arrival_t, t0)

    def done_since(self, t0: float) -> tuple[int, float]:
        """(count, latency sum) of answers at or after ``t0``."""
        k = bisect.bisect_left(self.done_t, t0)
        n = len(self.done_t) - k
        if n == 0:
            return 0, 0.0
        before = self.done_cum_lat[k - 1] if k > 0 else 0.0
        return n, self.done_cum_lat[-1] - before

    def scrape_at(self, t: float) -> Scrape | None:
        """The last scrape at or before ``t``."""
        k = bisect.bisect_right(self.scrape_t, t)
        return self.scrapes[k - 1] if k > 0 else None


def service_times(mc: ModelCluster, in_tok: int, out_tok: int, batch: int) -> tuple[float, float]:
    """(TTFT, end-to-end) service time of one request admitted as the ``batch``-th running sequence."""
    f = mc.slowdown(batch)
    ttft = (mc.ttft_base_s + mc.prefill_s_per_token * in_tok) * f
    return ttft, ttft + out_tok * mc.tpot_s * f
