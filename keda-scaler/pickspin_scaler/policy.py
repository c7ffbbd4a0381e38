"""Spin's scaling policy (the paper's Algorithm 1) as pure functions: no I/O, no clock.

Per model m, over a window w:

* r_m   = request rate (req/s), lat_m = mean end-to-end latency (s);
* load  = r_m * lat_m, the mean number of requests in service (Little's law, L = lambda * W);
* target = ceil(load / c) replicas, c = requests one replica serves at once;
* held  = requests waiting for a replica to become ready (a model at zero or waking: the router's push);
  waking sizes 0 -> N at once from held + load (the backlog, plus what keeps arriving while it drains),
  and a replica still loading is supply already: it is in the current scale the HPA compares with;
* floor = the warm pool of the model's tier; desired = max(target, floor, ceil((held + load) / c));
* active while there is demand now, or the model was used within tau, or floor > 0;
  after tau of idleness with a zero floor it is inactive and goes to zero.

On Kubernetes the scaler does not set replicas itself: it reports ``metric_value`` against a
per-replica target of c (HPA ``AverageValue``), so the HPA computes ceil(metric / c) = desired,
and KEDA alone takes 0 <-> 1 from ``is_active``. The local activator calls the same functions.
Every input that is NaN, infinite, negative or missing counts as 0.
"""

from __future__ import annotations

import math
from collections import deque
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
    held: float = 0.0  # of those, waiting for a replica to become ready (0 while one is warm)
    recent: float = 0.0  # requests seen over the last tau (e.g. PromQL increase(...[tau]))
    last_used: float | None = None  # when a request was last seen, on the caller's clock


@dataclass(frozen=True)
class Decision:
    load: float  # r_m * lat_m
    target: int  # ceil(load / c)
    floor: int
    desired: int  # max(target, floor, ceil((held + load) / c), ceil(demand / c)) while active, else 0
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
    """The HPA metric: max(r * lat + held, floor * c, demand now), in requests (concurrency units).

    With ``AverageValue`` target c, the HPA lands on ceil(metric / c) = max(target with the held backlog
    added, floor, now-demand).
    """
    return max(littles_law_load(obs.rate, obs.latency) + clean(obs.held), float(p.floor * p.concurrency),
               clean(obs.demand))


def is_active(obs: Observation, p: Params, now: float) -> bool:
    """True while there is demand now, the model was used within tau, or its warm floor is above zero."""
    if clean(obs.demand) > 0 or clean(obs.held) > 0 or p.floor > 0:
        return True
    if p.idle_seconds <= 0:
        return False
    if obs.last_used is not None and math.isfinite(obs.last_used):
        return now - obs.last_used < p.idle_seconds
    # No use seen by this process yet (a fresh scaler): requests counted over the trigger's tau window. Once
    # the last use is known it decides alone: an adaptive tau shorter than that PromQL window must count.
    return clean(obs.recent) > 0


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


# -- adaptive keep-warm ------------------------------------------------------------------------------
#
# A model at zero pays a cold start on its next request; a model kept warm pays for idle GPUs. Per
# model, from the idle gaps it has actually had (time between the end of one burst of demand and the
# next request), choose how long to stay warm after the last request - tau - by comparing, over those
# gaps, the GPU-seconds of staying warm with the expected cost of a cold start: the GPU-seconds the
# replica holds while loading, plus each request that then misses its SLO, priced in GPU-seconds.
# Choosing "forever" means a warm floor of one replica. This is the ski-rental trade-off, solved on the
# model's own empirical gap distribution instead of a fixed tier floor and a fixed tau.

#: Taus tried, in seconds; ``math.inf`` = never go to zero (warm floor 1).
TAU_CANDIDATES: tuple[float, ...] = (0.0, 15.0, 30.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1200.0, 1800.0,
                                     3600.0, math.inf)


@dataclass(frozen=True)
class ColdStartCost:
    """What one cold start of a model costs, in GPU-seconds."""

    load_s: float  # zero -> ready (weights load + engine warm-up)
    gpus: int = 1  # GPUs one replica holds
    slo_miss_gpu_s: float = 0.0  # the price of one request that misses its SLO, in GPU-seconds
    rate: float = 0.0  # requests/s while active: those arriving during the load miss their SLO too
    extra_idle_s: float = 0.0  # idle time the platform adds after tau before zero (KEDA cooldown, ...)

    def cold_gpu_s(self) -> float:
        misses = 1.0 + clean(self.rate) * clean(self.load_s)
        return clean(self.load_s) * self.gpus + misses * clean(self.slo_miss_gpu_s)


@dataclass(frozen=True)
class KeepWarm:
    floor: int  # 1 when the model should never go to zero, else 0
    idle_seconds: float  # tau (finite; 0 with a floor of 1, where tau does not matter)
    expected_gpu_s: float  # the chosen option's cost over the observed gaps
    gaps: int  # how many gaps it was chosen on
    prewarm: bool = False  # floor 1 because this time of day was busy on past days (KeepWarmLearner)


def keep_warm_cost(gaps: list[float], tau: float, cost: ColdStartCost) -> float:
    """GPU-seconds over ``gaps`` when staying warm ``tau`` (+ the platform's extra idle time) after each
    burst: idle time held while warm, and a cold start for every gap longer than that."""
    hold = tau + cost.extra_idle_s
    cold = cost.cold_gpu_s()
    total = 0.0
    for g in gaps:
        g = clean(g)
        total += min(g, hold) * cost.gpus + (cold if g > hold else 0.0)
    return total


def break_even_tau(cost: ColdStartCost) -> float:
    """Ski rental with no history: stay warm while the idle GPU-seconds are below one cold start's cost
    (platform idle time included). On any sequence of gaps this costs at most twice the offline optimum."""
    return max(0.0, cost.cold_gpu_s() / max(1, cost.gpus) - cost.extra_idle_s)


def choose_keep_warm(gaps: list[float], cost: ColdStartCost, default: KeepWarm, *, min_gaps: int = 5,
                     candidates: tuple[float, ...] = TAU_CANDIDATES) -> KeepWarm:
    """The cheapest (floor, tau) over the observed idle ``gaps``. Until ``min_gaps`` are known: ``default``'s
    floor (the configured warm pool) and the break-even tau, never longer than ``default``'s (the operator's
    tau bounds the idle time until there is evidence: a one-off burst's rate would price a cold start as if
    it always came in one). Ties go to the shorter tau: equal cost on the gaps seen, less exposure to a long
    gap not yet seen."""
    if len(gaps) < min_gaps:
        return KeepWarm(default.floor, min(break_even_tau(cost), default.idle_seconds), math.nan, len(gaps))
    best_tau, best = candidates[0], math.inf
    for tau in candidates:
        c = keep_warm_cost(gaps, tau, cost)
        if c < best:
            best_tau, best = tau, c
    if math.isinf(best_tau):
        return KeepWarm(1, 0.0, best, len(gaps))
    return KeepWarm(0, best_tau, best, len(gaps))


# -- time of day -----------------------------------------------------------------------------------------
#
# Many streams wake at the same hours every day (a batch job at 08:10, office hours). A model that was busy
# in a slot of the day on enough past days is worth having warm before that slot starts: the expected cold
# start it avoids (p * cold_gpu_s, p = share of past days with activity in the slot) against the GPU-seconds
# of a slot spent warm. Day boundaries are on the caller's day clock (UTC seconds on a cluster).

DAY_S = 86_400.0
#: Idle gaps no longer than this are not recorded: they are within the platform's own idle time (KEDA's
#: cooldownPeriod, 30 s in the chart), cost the same under every tau and never end in a cold start, and at a
#: steady trickle they would crowd the informative long gaps out of the bounded history.
MIN_GAP_S = 30.0


def prewarm_slots(active_days: list[int], days: int, slot_s: float, cost: ColdStartCost, *,
                  min_days: int = 2) -> frozenset[int]:
    """Slots of the day (index = seconds since midnight // slot_s) worth being warm in: those where
    p * cold_gpu_s >= slot_s * gpus, with p = active_days[slot] / days. Empty until ``min_days`` are known."""
    if days < max(1, min_days):
        return frozenset()
    cold, warm = cost.cold_gpu_s(), slot_s * cost.gpus
    return frozenset(i for i, a in enumerate(active_days) if a > 0 and (a / days) * cold >= warm)


class KeepWarmLearner:
    """One model's history for adaptive keep-warm, shared by the scaler, the local activator and the simulator.

    ``used(now, day_t, rate)`` records a request (or demand) at ``now`` (any monotonic clock; the gap since the
    previous use is an idle gap when it exceeds ``min_gap_s``), at ``day_t`` on the day clock (time of day), and
    the request rate then (``busy_rate``: a cold start costs the requests that arrive while it loads, at the rate
    of a busy period, not at the rate of the idle moment the choice happens to be made in).
    ``choose(cost, default, day_t)`` gives the (floor, tau) to use: :func:`choose_keep_warm` on the gaps, with the
    floor raised to 1 while ``day_t`` or ``day_t + cost.load_s`` falls in a slot :func:`prewarm_slots` picks.
    Bounded: ``max_gaps`` gaps, ``days_kept`` days of slots.
    """

    def __init__(self, *, min_gap_s: float = MIN_GAP_S, max_gaps: int = 500, slot_s: float = 600.0,
                 days_kept: int = 14, time_of_day: bool = True) -> None:
        if slot_s <= 0 or DAY_S % slot_s:
            raise ValueError("slot_s must divide a day")
        self.min_gap_s = min_gap_s
        self.gaps: deque[float] = deque(maxlen=max_gaps)
        self.last_used: float | None = None
        self.busy_rate = 0.0  # EWMA of the request rate seen at uses (requests/s)
        self.slot_s = slot_s
        self.days_kept = days_kept
        self.time_of_day = time_of_day
        self._first_day: int | None = None
        self._slots: dict[int, set[int]] = {}  # day number -> slots with activity
        self._cached: tuple[int, list[int], int] | None = None  # (day, counts, days): past days do not change

    def used(self, now: float, day_t: float | None = None, rate: float | None = None) -> None:
        r = clean(rate)
        if r > 0:  # the rate while busy: what a cold start in the middle of a burst would make wait
            self.busy_rate = r if self.busy_rate == 0 else 0.8 * self.busy_rate + 0.2 * r
        if self.last_used is not None and now - self.last_used > self.min_gap_s:
            self.gaps.append(now - self.last_used)
        if self.last_used is None or now >= self.last_used:
            self.last_used = now
        if day_t is not None and self.time_of_day:
            day = int(day_t // DAY_S)
            if self._first_day is None:
                self._first_day = day
            self._slots.setdefault(day, set()).add(int((day_t % DAY_S) // self.slot_s))
            for d in [d for d in self._slots if d <= day - self.days_kept]:
                del self._slots[d]

    def busy_until(self, now: float) -> None:
        """In use until ``now`` (a request ended): the next idle gap counts from here, not from its start."""
        if self.last_used is None or now > self.last_used:
            self.last_used = now

    def history(self, day_t: float) -> tuple[list[int], int]:
        """(days with activity per slot, complete days observed) over the kept days before ``day_t``'s day."""
        today = int(day_t // DAY_S)
        if self._cached is not None and self._cached[0] == today:
            return self._cached[1], self._cached[2]
        counts = [0] * int(DAY_S // self.slot_s)
        days = 0 if self._first_day is None else max(0, min(self.days_kept, today - self._first_day))
        for d, slots in self._slots.items():
            if today - days <= d < today:
                for s in slots:
                    counts[s] += 1
        if self._first_day is not None and self._first_day < today:
            self._cached = (today, counts, days)
        return counts, days

    def prewarm(self, cost: ColdStartCost, day_t: float | None) -> bool:
        """True while ``day_t`` (or the end of a cold start begun now) is in a slot worth being warm in."""
        if day_t is None or not self.time_of_day:
            return False
        counts, days = self.history(day_t)
        slots = prewarm_slots(counts, days, self.slot_s, cost)
        return bool(slots) and any(int((t % DAY_S) // self.slot_s) in slots for t in (day_t, day_t + cost.load_s))

    def choose(self, cost: ColdStartCost, default: KeepWarm, day_t: float | None = None) -> KeepWarm:
        kw = choose_keep_warm(list(self.gaps), cost, default)
        if kw.floor == 0 and self.prewarm(cost, day_t):
            return KeepWarm(1, kw.idle_seconds, kw.expected_gpu_s, kw.gaps, prewarm=True)
        return kw
