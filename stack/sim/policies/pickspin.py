"""PickSpin's Spin: the project's scaler policy (``pickspin_scaler.policy``, Algorithm 1) driving KEDA + HPA.

Nothing of the policy is re-implemented here. Per model, every poll (the scaler's poller interval):

1. the observation is read the way the scaler's PromQL reads it, from the last Prometheus scrape:
   rate = increase(pickspin_requests_total[window]) / window, latency = increase(duration_sum) /
   increase(count), demand = pickspin_inflight_requests (includes requests waiting for a cold start),
   recent = increase(requests_total[tau]); ``last_used`` moves when demand > 0 or the total moved
   (as ``pickspin_scaler.prom`` does);
2. ``pickspin_scaler.policy.decide(observation, params, now)`` gives ``active`` and ``desired``;
   parameters come from the scaler's own metadata model (``ScalerMetadata``: concurrency, tier warm
   pool, idleSeconds, windowSeconds);
3. ``active`` goes to KEDA at once (``external-push``: StreamIsActive), which takes 0 <-> 1 with the
   ScaledObject's cooldown; every HPA sync, ``desired`` is the HPA's proposal (the HPA lands on
   ceil(metric_value / c) = desired) subject to its tolerance, rate limit and stabilisation window.

The policy module is looked up at call time (``scaler_policy.decide``), so patching it changes the run.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pickspin.contract import trigger_metadata
from pickspin_scaler import policy as scaler_policy
from pickspin_scaler.metadata import ScalerMetadata, parse_metadata

from ..config import SimConfig
from .base import HorizontalPodAutoscaler, KedaScaledObject, Policy, hpa_proposal

if TYPE_CHECKING:
    from ..engine import Simulation


@dataclass
class _State:
    md: ScalerMetadata
    params: Any  # scaler_policy.Params
    so: KedaScaledObject
    last_total: int | None = None
    last_used: float | None = None
    decision: Any = None  # scaler_policy.Decision
    gaps: deque[float] = field(default_factory=deque)  # idle gaps seen (pickspin-adaptive)
    keep_warm: Any = None  # scaler_policy.KeepWarm in force
    rate: float = 0.0  # requests/s over the window at the last poll


class PickSpinPolicy(Policy):
    name = "pickspin"

    def __init__(self, cfg: SimConfig) -> None:
        super().__init__(cfg)
        self.p = cfg.policies.pickspin
        self.state: dict[int, _State] = {}

    def metadata(self, ms_name: str) -> ScalerMetadata:
        """The trigger metadata the project's ScaledObject carries for this model."""
        m = self.cfg.matrix.model(ms_name)
        assert m is not None
        return parse_metadata(trigger_metadata(self.cfg.matrix, m, window_seconds=self.p.window_s))

    def attach(self, sim: Simulation) -> None:
        self.sim = sim
        hpa = self.cfg.policies.hpa
        for ms in sim.models:
            md = self.metadata(ms.name)
            params = scaler_policy.Params(concurrency=md.concurrency, floor=md.floor(), idle_seconds=md.idle_seconds)
            h = HorizontalPodAutoscaler(hpa, 0, ms.model.scaling.max_replicas, self.p.hpa_scale_down_stabilization_s)
            so = KedaScaledObject(h, 0, self.p.keda_cooldown_s)
            so.last_active = 0.0  # the cooldown counts from the deployment
            self.state[ms.idx] = _State(md, params, so)
            n = min(max(params.floor, self.cfg.policies.initial_replicas), ms.model.scaling.max_replicas)
            if n > 0:
                sim.scale(ms, n, 0.0, warm=True)
        sim.every(self.p.poll_interval_s, self.poll)
        sim.every(hpa.sync_period_s, self.sync)

    def observe(self, ms_idx: int, now: float) -> Any:
        """The scaler's Observation for one model from the last scrape (what its PromQL returns)."""
        ms = self.sim.models[ms_idx]
        st = self.state[ms_idx]
        s = ms.scrape_at(now)
        if s is None:
            return scaler_policy.Observation(last_used=st.last_used)
        w = st.md.window_seconds
        old = ms.scrape_at(s.t - w)
        d_total = s.total - (old.total if old is not None else 0)
        d_sum = s.duration_sum - (old.duration_sum if old is not None else 0.0)
        rate = d_total / w
        latency = d_sum / d_total if d_total > 0 else float("nan")  # PromQL 0/0 -> NaN -> 0 in the policy
        old_tau = ms.scrape_at(s.t - st.md.idle_seconds)
        recent = float(s.total - (old_tau.total if old_tau is not None else 0))
        if s.inflight > 0 or (st.last_total is not None and s.total != st.last_total):
            st.last_used = now
        st.last_total = s.total
        return scaler_policy.Observation(rate=rate, latency=latency, demand=float(s.inflight), recent=recent,
                                         last_used=st.last_used)

    def poll(self, now: float) -> None:
        for ms in self.sim.models:
            st = self.state[ms.idx]
            obs = self.observe(ms.idx, now)
            st.decision = scaler_policy.decide(obs, st.params, now)
            st.so.activity(self.sim, ms, now, bool(st.decision.active))

    def sync(self, now: float) -> None:
        tol = self.cfg.policies.hpa.tolerance
        for ms in self.sim.models:
            st = self.state[ms.idx]
            d = st.decision
            if d is None:
                continue
            cur = ms.n_replicas
            proposal = hpa_proposal(float(d.metric_value), float(st.params.concurrency), cur, tol, int(d.desired))
            st.so.sync(self.sim, ms, now, proposal)


class PickSpinAdaptivePolicy(PickSpinPolicy):
    """The same scaler policy with adaptive keep-warm: every ``keep_warm_every_s`` each model's warm floor
    and tau are re-chosen by ``pickspin_scaler.policy.choose_keep_warm`` from the idle gaps the scaler
    has seen (a gap = from the last poll with activity to the next one with activity) instead of the
    configured tau; the tier's warm pool stays a lower bound (letting the small tier go to zero between
    diurnal bursts cost more than it saved: each wake-up under load starts several replicas at once,
    which the one-replica cost model does not see)."""

    name = "pickspin-adaptive"

    def attach(self, sim: Simulation) -> None:
        super().attach(sim)
        for st in self.state.values():
            st.gaps = deque(maxlen=self.p.keep_warm_gaps)
        sim.every(self.p.keep_warm_every_s, self.rechoose)

    def observe(self, ms_idx: int, now: float) -> Any:
        st = self.state[ms_idx]
        before = st.last_used
        obs = super().observe(ms_idx, now)
        if st.last_used is not None and before is not None and st.last_used - before > self.p.poll_interval_s:
            st.gaps.append(st.last_used - before)  # activity again after an idle gap
        st.rate = scaler_policy.clean(obs.rate)
        return obs

    def rechoose(self, now: float) -> None:
        for ms in self.sim.models:
            st = self.state[ms.idx]
            cost = scaler_policy.ColdStartCost(
                load_s=ms.cluster.cold_start_s, gpus=ms.cluster.gpus, slo_miss_gpu_s=self.p.slo_miss_gpu_s,
                rate=st.rate, extra_idle_s=self.p.keda_cooldown_s)
            default = scaler_policy.KeepWarm(st.md.floor(), st.md.idle_seconds, float("nan"), 0)
            kw = scaler_policy.choose_keep_warm(list(st.gaps), cost, default)
            st.keep_warm = kw
            st.params = scaler_policy.Params(concurrency=st.md.concurrency, floor=max(kw.floor, st.md.floor()),
                                             idle_seconds=kw.idle_seconds)
