"""What every autoscaling strategy implements, and the Kubernetes pieces two of them share (HPA, KEDA)."""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

from ..cluster import ModelState
from ..config import HPA, SimConfig

if TYPE_CHECKING:
    from ..engine import Simulation

_EPS = 1e-9


class Policy:
    """A control loop over the simulated cluster. ``attach`` sets the initial scale and registers ticks."""

    name = "base"

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg

    def attach(self, sim: Simulation) -> None:
        raise NotImplementedError

    def on_arrival(self, sim: Simulation, ms: ModelState, now: float) -> None:
        """A request was routed to ``ms`` (the activator sees it). Default: nothing."""


def hpa_proposal(metric_total: float, target: float, current: int, tolerance: float, desired: int) -> int:
    """The HPA's replica proposal for one AverageValue metric: ``desired`` (= ceil(total / target))
    unless the usage ratio total / (target x current) is within ``tolerance`` of 1 (then: no change)."""
    if current > 0 and abs(metric_total / (target * current) - 1.0) <= tolerance:
        return current
    return desired


def ceil_div(total: float, target: float) -> int:
    return max(0, math.ceil(total / target - _EPS))


class HorizontalPodAutoscaler:
    """The HPA's 1 <-> N behaviour: scale-up rate limit, scale-down stabilisation window, bounds."""

    def __init__(self, p: HPA, min_replicas: int, max_replicas: int, down_window_s: float | None = None) -> None:
        self.p = p
        self.min = max(1, min_replicas)
        self.max = max_replicas
        self.down_window = p.scale_down_stabilization_s if down_window_s is None else down_window_s
        self.history: deque[tuple[float, int]] = deque()

    def reset(self) -> None:
        self.history.clear()

    def step(self, now: float, current: int, proposal: int) -> int:
        proposal = min(max(proposal, self.min), self.max)
        self.history.append((now, proposal))
        while self.history and self.history[0][0] < now - self.down_window:
            self.history.popleft()
        if proposal < current:
            # Scale down only to the highest recommendation of the stabilisation window.
            proposal = min(current, max(r for _, r in self.history))
        limit = max(math.ceil(current * (1 + self.p.scale_up_percent / 100.0)), current + self.p.scale_up_pods)
        return min(max(min(proposal, limit), self.min), self.max)


class KedaScaledObject:
    """KEDA's part: 0 <-> 1 from the trigger's activity, with ``cooldownPeriod``; the HPA does 1 <-> N."""

    def __init__(self, hpa: HorizontalPodAutoscaler, min_replicas: int, cooldown_s: float) -> None:
        self.hpa = hpa
        self.min_replicas = min_replicas
        self.cooldown_s = cooldown_s
        self.last_active: float | None = None

    def activity(self, sim: Simulation, ms: ModelState, now: float, active: bool) -> None:
        if active:
            self.last_active = now
            if ms.n_replicas == 0:
                sim.scale(ms, max(1, self.min_replicas), now)
            return
        if ms.n_replicas > 0 and self.min_replicas == 0 and (
                self.last_active is None or now - self.last_active >= self.cooldown_s):
            sim.scale(ms, 0, now)
            self.hpa.reset()

    def sync(self, sim: Simulation, ms: ModelState, now: float, proposal: int) -> None:
        cur = ms.n_replicas
        if cur == 0:
            return  # the HPA does not act on a target KEDA holds at zero
        want = self.hpa.step(now, cur, proposal)
        if want != cur:
            sim.scale(ms, want, now)
