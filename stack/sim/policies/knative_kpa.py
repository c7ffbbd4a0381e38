"""Knative's Pod Autoscaler (KPA) with its defaults: concurrency target, stable and panic windows, scale to zero.

Every ``tick`` (2 s): the average concurrency per model (requests in flight, including those the
activator buffers) over the stable window (60 s) and the panic window (10 % of it, 6 s);
desired = ceil(average / (target x utilisation)). Panic mode starts when the panic-window desire is at
least 200 % of the ready pods and lasts a stable window after the last such tick; in panic the scale
never goes down. Scale-up and scale-down rates are bounded (x1000, /2 per tick). A model with no
concurrency for a stable window goes to zero after the scale-to-zero grace period. A request for a
model at zero makes the activator poke the autoscaler at once (scale to 1).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..cluster import ModelState
from ..config import SimConfig
from .base import Policy, ceil_div

if TYPE_CHECKING:
    from ..engine import Simulation


@dataclass
class _State:
    samples: deque[tuple[float, float]] = field(default_factory=deque)  # (t, concurrency integral)
    last_busy: float | None = None  # last tick at which there was concurrency
    panic_since: float | None = None
    panic_max: int = 0


class KnativeKPAPolicy(Policy):
    name = "knative-kpa"

    def __init__(self, cfg: SimConfig) -> None:
        super().__init__(cfg)
        self.p = cfg.policies.knative_kpa
        self.state: dict[int, _State] = {}

    def attach(self, sim: Simulation) -> None:
        self.sim = sim
        for ms in sim.models:
            # A revision starts at initial-scale and counts as just used (no scale-to-zero before a window).
            self.state[ms.idx] = _State(deque([(0.0, 0.0)]), last_busy=0.0)
            n = min(self.cfg.policies.initial_replicas, ms.model.scaling.max_replicas)
            if n > 0:
                sim.scale(ms, n, 0.0, warm=True)
        sim.every(self.p.tick_s, self.tick)

    def on_arrival(self, sim: Simulation, ms: ModelState, now: float) -> None:
        st = self.state[ms.idx]
        st.last_busy = now
        if ms.n_replicas == 0:
            sim.scale(ms, 1, now)

    def _avg(self, st: _State, now: float, area: float, window: float) -> float:
        t0 = now - window
        # The newest sample at or before t0 (samples are per tick, so the window is tick-aligned).
        old_t, old_a = st.samples[0]
        for t, a in st.samples:
            if t > t0:
                break
            old_t, old_a = t, a
        span = now - old_t
        return (area - old_a) / span if span > 0 else 0.0

    def tick(self, now: float) -> None:
        p = self.p
        sim = self.sim
        panic_window = p.stable_window_s * p.panic_window_percentage / 100.0
        for ms in sim.models:
            st = self.state[ms.idx]
            area = ms.area_at(now)
            prev_area = st.samples[-1][1]
            st.samples.append((now, area))
            while len(st.samples) > 2 and st.samples[1][0] <= now - p.stable_window_s:
                st.samples.popleft()
            if area > prev_area or ms.inflight > 0:
                st.last_busy = now
            target = (p.target or float(ms.model.scaling.concurrency)) * p.target_utilization
            stable = self._avg(st, now, area, p.stable_window_s)
            panic = self._avg(st, now, area, panic_window)
            want_stable = ceil_div(stable, target)
            want_panic = ceil_div(panic, target)
            ready = max(1, ms.n_ready)
            if want_panic / ready >= p.panic_threshold_percentage / 100.0:
                if st.panic_since is None:
                    st.panic_max = ms.n_replicas
                st.panic_since = now
            elif st.panic_since is not None and now - st.panic_since >= p.stable_window_s:
                st.panic_since = None
                st.panic_max = 0
            if st.panic_since is not None:
                want = max(want_panic, st.panic_max)
                st.panic_max = want
            else:
                want = want_stable
            want = min(want, math.ceil(p.max_scale_up_rate * ready))
            if ms.n_ready > 0:
                want = max(want, math.floor(ms.n_ready / p.max_scale_down_rate))
            if want == 0 and ms.n_replicas > 0:
                idle_for = now - st.last_busy if st.last_busy is not None else math.inf
                if ms.inflight > 0 or idle_for < p.stable_window_s + p.scale_to_zero_grace_s:
                    want = 1
            want = min(want, ms.model.scaling.max_replicas)
            if want != ms.n_replicas:
                sim.scale(ms, want, now)
