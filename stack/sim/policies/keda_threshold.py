"""vLLM production-stack's KEDA policy: scale on ``vllm:num_requests_waiting`` > 5, cooldown 360 s.

Two Prometheus triggers, as in the production-stack tutorial's scale-to-zero variant:

* ``vllm:num_requests_waiting`` (the engines' queues), AverageValue target 5 -> ceil(waiting / 5);
* a keepalive ``sum(rate(vllm:num_incoming_requests_total[1m]) > bool 0)``, target 1.

KEDA polls every 15 s: active while any trigger is above 0; after ``cooldownPeriod`` (360 s) without
activity it scales to zero (``minReplicaCount: 0``). The HPA (sync 15 s, tolerance 10 %, scale-down
stabilisation 300 s) takes the larger of the two proposals. Metrics are read from the last scrape.
The keepalive counts requests the router sends to the model, including ones waiting for a cold
start (a model at zero has no vLLM to report them; see docs/simulation.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import SimConfig
from .base import HorizontalPodAutoscaler, KedaScaledObject, Policy, ceil_div, hpa_proposal

if TYPE_CHECKING:
    from ..engine import Simulation


class KedaThresholdPolicy(Policy):
    name = "keda-threshold"

    def __init__(self, cfg: SimConfig) -> None:
        super().__init__(cfg)
        self.p = cfg.policies.keda_threshold
        self.objects: dict[int, KedaScaledObject] = {}

    def attach(self, sim: Simulation) -> None:
        self.sim = sim
        hpa = self.cfg.policies.hpa
        for ms in sim.models:
            h = HorizontalPodAutoscaler(hpa, self.p.min_replicas, ms.model.scaling.max_replicas)
            so = KedaScaledObject(h, self.p.min_replicas, self.p.cooldown_s)
            so.last_active = 0.0  # the cooldown counts from the deployment
            self.objects[ms.idx] = so
            n = min(max(self.p.min_replicas, self.cfg.policies.initial_replicas), ms.model.scaling.max_replicas)
            if n > 0:
                sim.scale(ms, n, 0.0, warm=True)
        sim.every(self.p.polling_interval_s, self.poll)
        sim.every(hpa.sync_period_s, self.sync)

    def _metrics(self, ms_idx: int, now: float) -> tuple[float, float]:
        ms = self.sim.models[ms_idx]
        s = ms.scrape_at(now)
        if s is None:
            return 0.0, 0.0
        old = ms.scrape_at(s.t - self.p.keepalive_window_s)
        incoming = s.arrivals - (old.arrivals if old is not None else 0)
        return float(s.waiting), 1.0 if incoming > 0 else 0.0

    def poll(self, now: float) -> None:
        for ms in self.sim.models:
            waiting, keepalive = self._metrics(ms.idx, now)
            self.objects[ms.idx].activity(self.sim, ms, now, waiting > 0 or keepalive > 0)

    def sync(self, now: float) -> None:
        tol = self.cfg.policies.hpa.tolerance
        for ms in self.sim.models:
            waiting, keepalive = self._metrics(ms.idx, now)
            cur = ms.n_replicas
            by_queue = hpa_proposal(waiting, self.p.threshold, cur, tol, ceil_div(waiting, self.p.threshold))
            by_keepalive = hpa_proposal(keepalive, 1.0, cur, tol, ceil_div(keepalive, 1.0))
            self.objects[ms.idx].sync(self.sim, ms, now, max(by_queue, by_keepalive))
