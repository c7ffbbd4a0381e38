"""Algorithm 1 as pure functions: table-driven cases, plus properties over random inputs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pickspin_scaler.policy import (
    Observation,
    Params,
    clean,
    decide,
    desired_replicas,
    is_active,
    littles_law_load,
    metric_value,
    target_replicas,
)

NAN = math.nan
NOW = 10_000.0

# (case, observation, params, expected: load, target, metric_value, active, desired)
CASES = [
    ("zero load, no floor, never used", Observation(), Params(4, 0, 300), 0.0, 0, 0.0, False, 0),
    ("zero load, floor 1", Observation(), Params(4, 1, 300), 0.0, 0, 4.0, True, 1),
    ("steady: r=2/s lat=1.5s c=4 -> L=3 -> 1 replica",
     Observation(rate=2.0, latency=1.5, recent=10), Params(4, 0, 300), 3.0, 1, 3.0, True, 1),
    ("burst: r=40/s lat=2s c=8 -> L=80 -> 10 replicas",
     Observation(rate=40.0, latency=2.0, demand=60, recent=500), Params(8, 1, 300), 80.0, 10, 80.0, True, 10),
    ("exact multiple does not round up: L=8, c=4 -> 2",
     Observation(rate=4.0, latency=2.0, recent=1), Params(4, 0, 300), 8.0, 2, 8.0, True, 2),
    ("floor above target: L=1, floor 3, c=2 -> 3",
     Observation(rate=1.0, latency=1.0, recent=1), Params(2, 3, 300), 1.0, 1, 6.0, True, 3),
    ("demand now above the windowed load (cold burst): demand 9, c=4 -> 3",
     Observation(rate=0.1, latency=1.0, demand=9), Params(4, 0, 300), 0.1, 1, 9.0, True, 3),
    ("request waiting for a cold backend: demand 1 -> active, 1 replica",
     Observation(demand=1), Params(8, 0, 300), 0.0, 0, 1.0, True, 1),
    ("used within tau, no load now -> active at 1 replica",
     Observation(last_used=NOW - 100), Params(4, 0, 300), 0.0, 0, 0.0, True, 1),
    ("recent requests within tau (Prometheus increase) -> active",
     Observation(recent=2), Params(4, 0, 300), 0.0, 0, 0.0, True, 1),
    ("idle past tau, floor 0 -> inactive (scale to zero)",
     Observation(last_used=NOW - 301), Params(4, 0, 300), 0.0, 0, 0.0, False, 0),
    ("idle past tau, floor 1 -> stays warm",
     Observation(last_used=NOW - 10_000), Params(4, 1, 300), 0.0, 0, 4.0, True, 1),
    ("windowed rate lingers past tau but no recent use -> inactive",
     Observation(rate=0.01, latency=2.0, recent=0, last_used=NOW - 400), Params(4, 0, 300), 0.02, 1, 0.02, False, 0),
    ("tau = 0: inactive the moment demand is gone",
     Observation(recent=5, last_used=NOW), Params(4, 0, 0), 0.0, 0, 0.0, False, 0),
    ("NaN everywhere counts as 0",
     Observation(rate=NAN, latency=NAN, demand=NAN, recent=NAN), Params(4, 0, 300), 0.0, 0, 0.0, False, 0),
    ("NaN latency (0/0 with no requests) with floor 2",
     Observation(rate=0.0, latency=NAN), Params(3, 2, 300), 0.0, 0, 6.0, True, 2),
    ("negative and infinite inputs count as 0",
     Observation(rate=-1, latency=math.inf, demand=-3), Params(4, 0, 300), 0.0, 0, 0.0, False, 0),
]


@pytest.mark.parametrize(("obs", "params", "load", "target", "value", "active", "desired"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_algorithm1_cases(obs: Observation, params: Params, load: float, target: int, value: float,
                          active: bool, desired: int) -> None:
    d = decide(obs, params, NOW)
    assert d.load == pytest.approx(load)
    assert d.target == target
    assert d.metric_value == pytest.approx(value)
    assert d.active is active
    assert d.desired == desired
    assert d.floor == params.floor


@pytest.mark.parametrize(("rate", "lat", "c", "want"), [
    (0, 0, 1, 0), (1, 1, 1, 1), (1, 1.0001, 1, 2), (10, 0.5, 2, 3), (3, 1, 3, 1), (NAN, 5, 1, 0), (None, 1, 1, 0),
])
def test_target_replicas_is_ceil_of_littles_law(rate: float | None, lat: float, c: int, want: int) -> None:
    assert target_replicas(rate, lat, c) == want


def test_bad_params_rejected() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        Params(0)
    with pytest.raises(ValueError, match="floor"):
        Params(1, -1)
    with pytest.raises(ValueError, match="idle"):
        Params(1, 0, NAN)
    with pytest.raises(ValueError):
        target_replicas(1, 1, 0)


@pytest.mark.parametrize(("x", "want"), [(None, 0.0), (NAN, 0.0), (math.inf, 0.0), (-2.0, 0.0), (2.5, 2.5),
                                          ("3", 3.0), ("junk", 0.0)])
def test_clean(x: object, want: float) -> None:
    assert clean(x) == want  # type: ignore[arg-type]


finite = st.floats(min_value=0, max_value=1e4, allow_nan=False, allow_infinity=False)
anyf = st.one_of(finite, st.just(NAN), st.just(math.inf), st.floats(max_value=-1e-6, min_value=-1e6))


@given(rate=anyf, lat=anyf, demand=anyf, c=st.integers(1, 64), floor=st.integers(0, 8),
       idle=st.floats(0, 1e4), age=st.one_of(st.none(), st.floats(0, 2e4)))
def test_hpa_lands_on_max_of_target_floor_and_demand(rate: float, lat: float, demand: float, c: int, floor: int,
                                                     idle: float, age: float | None) -> None:
    """HPA AverageValue: ceil(metric / c) == max(target, floor, ceil(demand / c)) and never below the floor."""
    obs = Observation(rate=rate, latency=lat, demand=demand, last_used=None if age is None else NOW - age)
    p = Params(c, floor, idle)
    v = metric_value(obs, p)
    assert v >= floor * c
    hpa = math.ceil(v / c - 1e-9)
    want = max(target_replicas(rate, lat, c), floor, math.ceil(clean(demand) / c - 1e-9))
    assert hpa == want
    if is_active(obs, p, NOW):
        assert desired_replicas(obs, p, NOW) == max(1, want)
    else:
        assert floor == 0 and clean(demand) == 0
        assert desired_replicas(obs, p, NOW) == 0
    assert littles_law_load(rate, lat) >= 0


# -- adaptive keep-warm ------------------------------------------------------------------------------
from pickspin_scaler.policy import ColdStartCost, KeepWarm, choose_keep_warm, keep_warm_cost  # noqa: E402

DEFAULT_KW = KeepWarm(0, 300.0, float("nan"), 0)


def test_keep_warm_cost_counts_idle_hold_and_cold_starts() -> None:
    cost = ColdStartCost(load_s=100, gpus=2)  # a cold start = 200 GPU-s
    # gaps 10 s and 1000 s with tau 60: hold 10 + 60 s (x2 GPUs) and one cold start
    assert keep_warm_cost([10, 1000], 60, cost) == (10 + 60) * 2 + 200
    assert keep_warm_cost([10, 1000], float("inf"), cost) == (10 + 1000) * 2


def test_frequent_short_gaps_keep_it_warm_rare_long_ones_let_it_go() -> None:
    cost = ColdStartCost(load_s=120, gpus=8, slo_miss_gpu_s=60)
    # a cold start costs 120 s x 8 GPUs + one SLO miss = 1020 GPU-s: riding out a 100 s gap (800) is cheaper
    busy = choose_keep_warm([20.0] * 50 + [100.0] * 5, cost, DEFAULT_KW)
    assert busy.idle_seconds >= 100 or busy.floor == 1
    # ...but not a 200 s gap (1600): reload instead, after staying warm through the short gaps
    mixed = choose_keep_warm([20.0] * 50 + [200.0] * 5, cost, DEFAULT_KW)
    assert (mixed.floor, mixed.idle_seconds) == (0, 30.0)
    sparse = choose_keep_warm([4 * 3600.0] * 20, cost, DEFAULT_KW)
    assert (sparse.floor, sparse.idle_seconds) == (0, 0.0)  # hours between requests: go to zero at once
    assert sparse.expected_gpu_s == 20 * cost.cold_gpu_s()


def test_slo_price_and_arrival_rate_make_cold_starts_dearer() -> None:
    gaps = [600.0] * 30
    cheap = choose_keep_warm(gaps, ColdStartCost(load_s=60, gpus=1), DEFAULT_KW)
    dear = choose_keep_warm(gaps, ColdStartCost(load_s=60, gpus=1, slo_miss_gpu_s=400, rate=0.5), DEFAULT_KW)
    assert cheap.idle_seconds == 0 and cheap.floor == 0
    assert dear.floor == 1 or dear.idle_seconds >= 600


def test_too_few_gaps_keep_the_configured_default_and_the_platform_idle_time_counts() -> None:
    cost = ColdStartCost(load_s=60, gpus=1)
    few = choose_keep_warm([5.0, 7.0], cost, KeepWarm(1, 300.0, float("nan"), 0))
    assert (few.floor, few.idle_seconds, few.gaps) == (1, 60.0, 2)  # the configured floor, break-even tau
    dear = ColdStartCost(load_s=120, gpus=8, slo_miss_gpu_s=80, rate=0.5, extra_idle_s=30)  # 960 + 61 x 80
    assert choose_keep_warm([], dear, KeepWarm(0, 3600.0, 0, 0)).idle_seconds == pytest.approx((960 + 61 * 80) / 8 - 30)
    assert choose_keep_warm([], dear, DEFAULT_KW).idle_seconds == 300.0  # never beyond the configured tau
    with_cooldown = ColdStartCost(load_s=60, gpus=1, extra_idle_s=30)
    assert keep_warm_cost([100.0], 0, with_cooldown) == 30 + 60  # held through the cooldown, then reloaded


def test_the_scaler_poller_adapts_tau_from_the_gaps_it_sees() -> None:
    """The gRPC scaler's poller runs the same choice: a model asked for every ~400 s, 8 GPUs, a 120 s
    load and no SLO price goes to zero at once (tau 0) once enough gaps are seen; a fixed trigger keeps
    its tau."""
    from pickspin.config import parse_config
    from pickspin.contract import trigger_metadata
    from pickspin_scaler.metadata import parse_metadata
    from pickspin_scaler.prom import Poller, PollerConfig, params_of

    class Prom:
        total = 0.0

        def query(self, address: str, promql: str) -> float | None:
            return self.total if promql.startswith("sum(pickspin_requests_total") else 0.0

    now = [1000.0]
    prom = Prom()
    poller = Poller(PollerConfig(interval_s=2.0), client=prom, clock=lambda: now[0])  # type: ignore[arg-type]
    matrix = parse_config({"models": [{
        "name": m, "tier": "large", "capability": {"low": 1, "medium": 1, "high": 1}, "cost": {"per_1k_tokens": 1},
        "scaling": {"keep_warm": kw, "gpus": 8, "slo_miss_gpu_s": 0, "idle_seconds": 300},
        "backends": [{"name": f"{m}-b", "url": "http://127.0.0.1:9", "served_model_name": m, "cold_start_s": 120}]}
        for m, kw in (("adaptive", "adaptive"), ("fixed", "fixed"))]})
    mds = {m.name: parse_metadata(trigger_metadata(matrix, m)) for m in matrix.models}
    assert mds["adaptive"].keep_warm == "adaptive" and mds["adaptive"].load_seconds == 120
    keys = {n: poller.subscribe(md) for n, md in mds.items()}
    for _ in range(8):  # a request every 400 s; KEDA keeps asking (the subscriptions stay)
        for n, md in mds.items():
            poller.subscribe(md, key=keys[n])
        prom.total += 1
        poller.poll_once()
        now[0] += 400
        poller.poll_once()
    assert poller.params(keys["fixed"], mds["fixed"]) == params_of(mds["fixed"])
    p = poller.params(keys["adaptive"], mds["adaptive"])
    assert (p.floor, p.idle_seconds) == (0, 0.0)


def test_held_backlog_adds_to_the_load_and_keeps_the_model_active() -> None:
    """0 -> N: 30 requests held while 1 req/s x 4 s keeps arriving need ceil((30 + 4) / 8) = 5 replicas now;
    the same 30 in flight on a warm model (held 0) need only max(load, demand)."""
    p = Params(concurrency=8, floor=0, idle_seconds=0)
    cold = Observation(rate=1.0, latency=4.0, demand=30, held=30)
    warm = Observation(rate=1.0, latency=4.0, demand=30)
    assert metric_value(cold, p) == 34 and desired_replicas(cold, p, NOW) == 5
    assert metric_value(warm, p) == 30 and desired_replicas(warm, p, NOW) == 4
    assert is_active(Observation(held=1), p, NOW)
    assert metric_value(Observation(held=float("nan")), p) == 0


# -- time of day -------------------------------------------------------------------------------------------
from pickspin_scaler.policy import DAY_S, KeepWarmLearner, prewarm_slots  # noqa: E402


def test_prewarm_slots_weigh_the_share_of_busy_days_against_a_warm_slot() -> None:
    cost = ColdStartCost(load_s=80, gpus=1, slo_miss_gpu_s=60, rate=0.4)  # 80 + 33 x 60 = 2060 GPU-s
    assert prewarm_slots([7, 3, 2, 0], 7, 600.0, cost) == frozenset({0, 1})  # p >= 600 / 2060 = 0.29
    assert prewarm_slots([7, 3, 2, 0], 1, 600.0, cost) == frozenset()  # one day is no pattern yet
    assert prewarm_slots([7, 7], 7, 600.0, ColdStartCost(load_s=80, gpus=8)) == frozenset()  # 640 < 4800


def test_learner_prewarms_before_the_slot_that_was_busy_every_day_and_not_elsewhere() -> None:
    """A model used at 08:10-08:20 for three days, nothing else: on day 4 it is warm from 08:08:40 (one load
    ahead of the slot) to 08:20, cold at 03:00 and at 12:00; its idle gaps (a day each) say tau 0."""
    cost = ColdStartCost(load_s=80, gpus=1, slo_miss_gpu_s=60, rate=0.4)
    lr = KeepWarmLearner(min_gap_s=2.0)
    for day in range(3):
        for k in range(0, 600, 30):
            t = day * DAY_S + 8 * 3600 + 600 + k
            lr.used(t, t, rate=0.4)
    assert lr.busy_rate == pytest.approx(0.4)
    today = 3 * DAY_S
    default = KeepWarm(0, 300.0, float("nan"), 0)
    assert lr.choose(cost, default, today + 3 * 3600).floor == 0
    assert lr.choose(cost, default, today + 12 * 3600).floor == 0
    before = lr.choose(cost, default, today + 8 * 3600 + 600 - 80)
    assert before.floor == 1 and before.prewarm
    assert lr.choose(cost, default, today + 8 * 3600 + 600 - 90).floor == 0
    assert lr.choose(cost, default, today + 8 * 3600 + 1190).floor == 1
    off = KeepWarmLearner(min_gap_s=2.0, time_of_day=False)
    off.used(0.0, 0.0)
    assert not off.prewarm(cost, DAY_S * 5)


def test_learner_keeps_bounded_history() -> None:
    lr = KeepWarmLearner(max_gaps=3, days_kept=2)
    for d in range(10):
        lr.used(d * DAY_S, d * DAY_S)
    assert len(lr.gaps) == 3
    counts, days = lr.history(10 * DAY_S)
    assert days == 2 and counts[0] == 2 and sum(counts) == 2
    with pytest.raises(ValueError, match="slot_s"):
        KeepWarmLearner(slot_s=7.0)
