"""Spin's scaling policy (the paper's Algorithm 1) as pure functions: no I/O, no clock.

Per model m, over a window w:

* r_m   = request rate (req/s), lat_m = mean end-to-end latency (s);
* load  = r_m * lat_m, the mean number of requests in service (Little's law, L = lambda * W);
* target = ceil(load / c) replicas, c = requests one replica serves at once;
* floor = the warm pool of the model's tier; desired = max(target, floor);
* active while there is demand now, or the model was used within tau, or floor > 0;
  after tau of idleness with a zero floor it is inactive and goes to zero.

On Kubernetes the scaler does not set replicas itself: it reports ``metric_value`` against a
per-replica target of c (HPA ``AverageValue``), so the HPA computes ceil(metric / c) = desired,
and KEDA alone takes 0 <-> 1 from ``is_active``. The local activator calls the same functions.
Every input that is NaN, infinite, negative or missing counts as 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Tolerance so that 2.0000000001 replicas' worth of load (float noise) does not become 3 replicas.
_EPS = 1e-9


def clean(x: float | None) -> float:
    """NaN, +-inf, negatives and None -> 0.0 (Prometheus returns NaN for 0/0, empty for no series)."""
    if x is None:
        return 0.0
    try:
        v = float(x)
    except (TypeError, ValueError):
        return 0.0
    if not math.isfinite(v) or v < 0:
        return 0.0
    return v


def _ceil(x: float) -> int:
    return max(0, math.ceil(x - _EPS))


@dataclass(frozen=True)
class Params:
    """Per-model policy parameters (from the trigger metadata or the service matrix)."""

    concurrency: int  # c >= 1
    floor: int = 0  # warm pool of the tier
    idle_seconds: float = 300.0  # tau

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.floor < 0:
            raise ValueError("floor must be >= 0")
        if not self.idle_seconds >= 0:
            raise ValueError("idle_seconds must be >= 0")


@dataclass(frozen=True)
class Observation:
    """What is known about one model at one instant (any field may be NaN: it counts as 0)."""

    rate: float = 0.0  # r_m, requests/s over the window
    latency: float = 0.0  # lat_m, mean seconds per request over the window
    demand: float = 0.0  # requests in flight or queued now (incl. those waiting for a cold backend)
    recent: float = 0.0  # requests seen over the last tau (e.g. PromQL increase(...[tau]))
    last_used: float | None = None  # when a request was last seen, on the caller's clock


@dataclass(frozen=True)
class Decision:
    load: float  # r_m * lat_m
    target: int  # ceil(load / c)
    floor: int
    desired: int  # max(target, floor, ceil(demand / c)) while active, else 0
    metric_value: float  # what GetMetrics reports; ceil(metric_value / c) == desired when active
    active: bool


def littles_law_load(rate: float | None, latency: float | None) -> float:
    """Mean requests in service, r * lat (0 if either is unknown)."""
    return clean(rate) * clean(latency)


def target_replicas(rate: float | None, latency: float | None, concurrency: int) -> int:
    """Algorithm 1's target: ceil(r_m * lat_m / c)."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    return _ceil(littles_law_load(rate, latency) / concurrency)


def metric_value(obs: Observation, p: Params) -> float:
    """The HPA metric: max(r * lat, floor * c, demand now), in requests (concurrency units).

    With ``AverageValue`` target c, the HPA lands on ceil(metric / c) = max(target, floor, now-demand).
    """
    return max(littles_law_load(obs.rate, obs.latency), float(p.floor * p.concurrency), clean(obs.demand))


def is_active(obs: Observation, p: Params, now: float) -> bool:
    """True while there is demand now, the model was used within tau, or its warm floor is above zero."""
    if clean(obs.demand) > 0 or p.floor > 0:
        return True
    if p.idle_seconds <= 0:
        return False
    if clean(obs.recent) > 0:
        return True
    return obs.last_used is not None and math.isfinite(obs.last_used) and now - obs.last_used < p.idle_seconds


def desired_replicas(obs: Observation, p: Params, now: float) -> int:
    """Replicas the pair KEDA + HPA ends up at: 0 when inactive, else max(target, floor, demand), >= 1."""
    if not is_active(obs, p, now):
        return 0
    return max(1, _ceil(metric_value(obs, p) / p.concurrency))


def decide(obs: Observation, p: Params, now: float) -> Decision:
    load = littles_law_load(obs.rate, obs.latency)
    active = is_active(obs, p, now)
    return Decision(
        load=load,
        target=_ceil(load / p.concurrency),
        floor=p.floor,
        desired=desired_replicas(obs, p, now),
        metric_value=metric_value(obs, p),
        active=active,
    )
