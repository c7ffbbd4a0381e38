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

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pickspin.contract import trigger_metadata
from pickspin_scaler import policy as scaler_policy
from pickspin_scaler.metadata import ScalerMetadata, parse_metadata
from pickspin_scaler.prom import PollerConfig

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
    keep_warm: Any = None  # scaler_policy.KeepWarm in force
    learner: Any = None  # scaler_policy.KeepWarmLearner (pickspin-adaptive)
    pushed: tuple[float, float] | None = None  # (held, time) of the router's last demand push


class PickSpinPolicy(Policy):
    name = "pickspin"

    def __init__(self, cfg: SimConfig) -> None:
        super().__init__(cfg)
        self.p = cfg.policies.pickspin
        self.state: dict[int, _State] = {}
        self.push_ttl_s = PollerConfig().push_ttl_s

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

    def on_arrival(self, sim: Simulation, ms: Any, now: float) -> None:
        """The router's demand push (``functions/router/demand.py`` -> the scaler's ``POST /v1/demand``): a
        request held for a model with no ready replica reports the model's held requests at once, the open
        ``StreamIsActive`` stream turns active (KEDA takes 0 -> 1 now, not after a scrape) and the next HPA
        sync sizes 0 -> N from held + load."""
        if ms.n_ready > 0:
            return
        st = self.state[ms.idx]
        st.pushed = (float(ms.inflight), now)
        st.decision = scaler_policy.decide(self.observe(ms.idx, now), st.params, now)
        st.so.activity(sim, ms, now, bool(st.decision.active))

    def _held(self, st: _State, now: float) -> float:
        if st.pushed is None or now - st.pushed[1] > self.push_ttl_s:
            return 0.0
        return st.pushed[0]

    def observe(self, ms_idx: int, now: float) -> Any:
        """The scaler's Observation for one model from the last scrape (what its PromQL returns), with the
        router's pushed demand while it is fresh (``Poller.push``)."""
        ms = self.sim.models[ms_idx]
        st = self.state[ms_idx]
        s = ms.scrape_at(now)
        held = self._held(st, now)
        if held > 0 and st.pushed is not None:  # as Poller.push: a push is a use, at the time it came
            st.last_used = max(st.last_used or st.pushed[1], st.pushed[1])
        if s is None:
            return scaler_policy.Observation(demand=held, held=held, last_used=st.last_used)
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
        return scaler_policy.Observation(rate=rate, latency=latency, demand=max(float(s.inflight), held), held=held,
                                         recent=recent, last_used=st.last_used)

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
    """The same scaler policy with adaptive keep-warm: ``pickspin_scaler.policy.KeepWarmLearner`` per model,
    as the scaler and the activator run it. Every ``keep_warm_every_s`` (floor, tau) is re-chosen from the
    idle gaps the scaler has seen (a gap = from the last poll with activity to the next one with activity);
    every poll the floor is raised to 1 while this time of day was busy on past days (``time_of_day``).
    The floor is learned, not the tier's: the tier's warm pool and tau hold only until enough gaps are seen."""

    name = "pickspin-adaptive"

    def attach(self, sim: Simulation) -> None:
        super().attach(sim)
        for st in self.state.values():
            st.learner = scaler_policy.KeepWarmLearner(min_gap_s=max(scaler_policy.MIN_GAP_S, self.p.poll_interval_s,
                                                                      self.p.keda_cooldown_s),
                                                       max_gaps=self.p.keep_warm_gaps, time_of_day=self.p.time_of_day)
        sim.every(self.p.keep_warm_every_s, self.rechoose)

    def _day_t(self, now: float) -> float:
        return now - self.sim.t0  # the trace's own clock: 0 = midnight of its first day

    def observe(self, ms_idx: int, now: float) -> Any:
        st = self.state[ms_idx]
        before = st.last_used
        obs = super().observe(ms_idx, now)
        if st.last_used is not None and st.last_used != before:
            st.learner.used(now, self._day_t(now), obs.rate)
        return obs

    def _cost(self, ms: Any, st: _State) -> Any:
        return scaler_policy.ColdStartCost(load_s=ms.cluster.cold_start_s, gpus=ms.cluster.gpus,
                                           slo_miss_gpu_s=self.p.slo_miss_gpu_s, rate=st.learner.busy_rate,
                                           extra_idle_s=self.p.keda_cooldown_s)

    def rechoose(self, now: float) -> None:
        for ms in self.sim.models:
            st = self.state[ms.idx]
            default = scaler_policy.KeepWarm(st.md.floor(), st.md.idle_seconds, float("nan"), 0)
            st.keep_warm = kw = scaler_policy.choose_keep_warm(list(st.learner.gaps), self._cost(ms, st), default)
            st.params = scaler_policy.Params(concurrency=st.md.concurrency, floor=kw.floor,
                                             idle_seconds=kw.idle_seconds)

    def poll(self, now: float) -> None:
        if self.p.time_of_day:
            for ms in self.sim.models:
                st = self.state[ms.idx]
                base = st.keep_warm.floor if st.keep_warm is not None else st.md.floor()
                pre = 1 if base == 0 and st.learner.prewarm(self._cost(ms, st), self._day_t(now)) else 0
                if max(base, pre) != st.params.floor:
                    st.params = scaler_policy.Params(st.params.concurrency, max(base, pre), st.params.idle_seconds)
        super().poll(now)
