"""Policy behaviour on synthetic traces: static never cold-starts, idle models cost nothing under
scale-to-zero, cold starts delay or time out requests, and the PickSpin policy is the scaler's own code."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stack.sim.engine import OK, REJECTED, TIMEOUT
from stack.sim.policies import POLICIES
from tests.sim import simkit

SCALE_TO_ZERO = ("knative-kpa", "keda-threshold", "pickspin")


def two_models(**policies: object) -> simkit.SimConfig:
    # "big" is better at everything, so quality-only routing never sends anything to "spare".
    big = simkit.model("big", "large", (0.9, 0.9, 0.9), 0.02, concurrency=8, max_replicas=4)
    spare = simkit.model("spare", "medium", (0.5, 0.5, 0.5), 0.01, concurrency=8, max_replicas=4)
    return simkit.config([big, spare], {"big": simkit.cluster(gpus=8, cold_start_s=120.0),
                                        "spare": simkit.cluster(gpus=4, cold_start_s=90.0)}, **policies)


def bursty(seconds: float = 7200.0, seed: int = 5) -> simkit.Trace:
    """Bursts of 20 requests every ~15 min with idle gaps: the pattern that makes scale-to-zero pay off."""
    rng = np.random.default_rng(seed)
    times: list[float] = []
    for start in np.arange(60.0, seconds - 300.0, 900.0):
        times += list(start + np.sort(rng.uniform(0, 30, size=20)))
    return simkit.trace_at(times, seconds)


def test_static_never_cold_starts() -> None:
    cfg = two_models()
    res = simkit.run(cfg, bursty(), "static", routing="keyword")
    assert sum(m["cold_starts"] for m in res.per_model.values()) == 0
    assert not res.cold.any()
    assert (res.status == OK).all()
    # Always on: every replica is billed for the whole horizon.
    assert res.per_model["big"]["gpu_seconds"] == pytest.approx(8 * 7200.0)
    assert res.per_model["spare"]["gpu_seconds"] == pytest.approx(4 * 7200.0)


@pytest.mark.parametrize("policy", SCALE_TO_ZERO)
def test_never_requested_model_costs_nothing(policy: str) -> None:
    cfg = two_models()
    res = simkit.run(cfg, bursty(), policy, routing="quality-only")
    assert res.per_model["spare"]["requests"] == 0
    assert res.per_model["spare"]["gpu_seconds"] == 0.0
    assert res.per_model["spare"]["cold_starts"] == 0
    assert res.per_model["big"]["gpu_seconds"] > 0.0


@pytest.mark.parametrize("policy", SCALE_TO_ZERO)
def test_initially_warm_idle_model_is_scaled_away_before_the_measured_window(policy: str) -> None:
    cfg = two_models(initial_replicas=1)
    tr = bursty(9000.0)
    tr.measure_from = 1800.0  # longer than any idle timeout (KPA 90 s, KEDA 360 s, tau 300 s + 30 s)
    res = simkit.run(cfg, tr, policy, routing="quality-only")
    assert res.per_model["spare"]["gpu_seconds"] == 0.0


def sparse(seconds: float = 7200.0) -> simkit.Trace:
    """One request every 15 minutes."""
    return simkit.trace_at(list(np.arange(60.0, seconds - 300.0, 900.0)), seconds)


@pytest.mark.parametrize("policy", SCALE_TO_ZERO)
def test_scale_to_zero_saves_gpu_but_pays_cold_starts(policy: str) -> None:
    cfg = two_models()
    static = simkit.run(cfg, sparse(), "static", routing="quality-only")
    res = simkit.run(cfg, sparse(), policy, routing="quality-only")
    assert res.per_model["big"]["gpu_seconds"] < 0.7 * static.per_model["big"]["gpu_seconds"]
    assert res.per_model["big"]["cold_starts"] == len(res.status)  # every request finds the model at zero
    assert res.cold.all()
    # Each waited out a whole cold start (120 s), then the service time.
    assert float(np.min(res.ttft)) >= 120.0
    assert (res.status == OK).all()  # 120 s cold start + activation lag < 300 s timeout
    assert float(np.max(static.latency)) < 5.0


@pytest.mark.parametrize(("policy", "replicas"), [("pickspin", 3), ("knative-kpa", 4), ("keda-threshold", 1)])
def test_a_burst_at_zero_opens_replicas_that_all_start_cold(policy: str, replicas: int) -> None:
    """20 requests at a model at zero: PickSpin asks ceil(demand / c) = 3, KPA panics to ceil(20 / 5.6) = 4,
    the queue trigger sees no vLLM queue (nothing runs yet) and starts 1. All replicas start together, so
    the extra ones do not shorten the wait; they only cost (docs/simulation.md)."""
    cfg = two_models()
    res = simkit.run(cfg, bursty(), policy, routing="quality-only")
    assert res.per_model["big"]["max_replicas"] == replicas
    assert (res.status == OK).all()


def test_cold_start_longer_than_the_timeout_fails_requests() -> None:
    cfg = simkit.one_model(cold_start_s=400.0)
    res = simkit.run(cfg, simkit.trace_at([10.0, 20.0], 2000.0), "knative-kpa")
    assert (res.status == TIMEOUT).all()
    assert res.per_model["m"]["cold_starts"] == 1


def test_kpa_activator_scales_from_zero_at_once() -> None:
    cfg = simkit.one_model(cold_start_s=60.0)
    res = simkit.run(cfg, simkit.trace_at([100.0], 1000.0), "knative-kpa")
    w = simkit.service_time(cfg, "m", 100, 200)
    assert res.latency[0] == pytest.approx(60.0 + w)
    assert res.per_model["m"]["cold_starts"] == 1


def test_keda_and_pickspin_wait_for_the_metrics_pipeline() -> None:
    """KEDA sees a request at zero only through a Prometheus scrape and its poll: activation lags."""
    cfg = simkit.one_model(cold_start_s=60.0)
    w = simkit.service_time(cfg, "m", 100, 200)
    for policy in ("keda-threshold", "pickspin"):
        res = simkit.run(cfg, simkit.trace_at([100.0], 1000.0), policy)
        lag = float(res.latency[0]) - 60.0 - w
        assert 0.0 < lag <= 15.0 + 15.0 + 1e-6, (policy, lag)


def test_gpu_accounting_adds_up() -> None:
    cfg = two_models()
    res = simkit.run(cfg, bursty(), "pickspin", routing="quality-only")
    big = res.per_model["big"]
    assert big["gpu_seconds"] == pytest.approx(8 * big["replica_seconds"])
    assert 0.0 < big["cold_start_gpu_seconds"] <= big["gpu_seconds"]
    assert 0.0 < big["idle_gpu_seconds"] < big["gpu_seconds"] - big["cold_start_gpu_seconds"] + 1e-6
    assert big["usd"] == pytest.approx(big["gpu_seconds"] * 3.6 / 3600)


def test_warm_floor_keeps_the_small_tier_up() -> None:
    small = simkit.model("s", "small", (0.9, 0.5, 0.2), 0.001, max_replicas=2)  # tier default warm_pool 1
    cfg = simkit.config([small], {"s": simkit.cluster(cold_start_s=80.0)})
    res = simkit.run(cfg, bursty(), "pickspin")
    assert res.per_model["s"]["cold_starts"] == 0
    assert res.per_model["s"]["mean_replicas"] >= 1.0 - 1e-9
    kpa = simkit.run(cfg, bursty(), "knative-kpa")
    assert kpa.per_model["s"]["cold_starts"] >= 2  # no floor: every burst after an idle gap starts cold


def test_simulated_pickspin_is_the_scalers_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Patching pickspin_scaler.policy changes the simulation: nothing of Algorithm 1 is re-implemented."""
    from pickspin_scaler import policy

    cfg = simkit.one_model(concurrency=8, max_replicas=8, cold_start_s=0.0)
    w = simkit.service_time(cfg, "m", 100, 200)
    tr = simkit.poisson_trace(1.5 * 8 / w, 1200.0, warmup_s=300.0)
    base = simkit.run(cfg, tr, "pickspin")
    assert simkit.steady_mode(base) in (2, 3)

    calls = {"n": 0}
    real = policy.desired_replicas

    def plus_two(obs: policy.Observation, p: policy.Params, now: float) -> int:
        calls["n"] += 1
        d = real(obs, p, now)
        return d + 2 if d > 0 else d

    monkeypatch.setattr(policy, "desired_replicas", plus_two)
    patched = simkit.run(cfg, tr, "pickspin")
    assert calls["n"] > 100
    assert simkit.steady_mode(patched) == simkit.steady_mode(base) + 2

    monkeypatch.setattr(policy, "is_active", lambda obs, p, now: False)
    never = simkit.run(cfg, tr, "pickspin")
    assert never.per_model["m"]["gpu_seconds"] == 0.0
    assert not (never.status == OK).any()
    # The first requests time out; then the router's error-rate gate takes the backend out (503s).
    assert (never.status == TIMEOUT).any() and (never.status == REJECTED).any()


def test_policy_registry_names() -> None:
    assert set(POLICIES) >= {"static", "knative-kpa", "keda-threshold", "pickspin"}


def test_keda_threshold_scales_on_the_queue_not_below_it() -> None:
    """The production-stack trigger acts on vllm:num_requests_waiting: no queue, no scale-out."""
    cfg = simkit.one_model(concurrency=8, max_replicas=8, cold_start_s=0.0, max_batch=256)
    w = simkit.service_time(cfg, "m", 100, 200)
    tr = simkit.poisson_trace(4.5 * 8 / w, 1200.0, warmup_s=300.0)  # 36 in flight, fits one 256-seq batch
    assert simkit.steady_mode(simkit.run(cfg, tr, "keda-threshold")) == 1
    assert simkit.steady_mode(simkit.run(cfg, tr, "pickspin")) >= math.ceil(4.5)
    small_batch = simkit.one_model(concurrency=8, max_replicas=8, cold_start_s=0.0, max_batch=8)
    assert simkit.steady_mode(simkit.run(small_batch, tr, "keda-threshold")) >= 4


def test_deterministic() -> None:
    cfg = two_models()
    a = simkit.run(cfg, bursty(), "pickspin", routing="keyword")
    b = simkit.run(cfg, bursty(), "pickspin", routing="keyword")
    assert np.array_equal(a.latency, b.latency, equal_nan=True)
    assert a.per_model == b.per_model


def test_adaptive_keep_warm_learns_to_let_a_sparse_model_go_at_once() -> None:
    """Requests 400 s apart: with the fixed tau (300 s + 30 s cooldown) the model idles on 8 GPUs through
    most gaps; adaptive keep-warm learns from the gaps (about 275 s idle each) that a reload (120 s x 8
    GPUs + the SLO price, 1020 GPU-s) is cheaper than holding (2200), picks tau 0 and trades more cold
    starts for fewer GPU-seconds."""
    cfg = two_models()
    tr = simkit.trace_at(list(np.arange(60.0, 6 * 3600.0, 400.0)), 6 * 3600.0)
    plain = simkit.run(cfg, tr, "pickspin", routing="quality-only")
    adaptive = simkit.run(cfg, tr, "pickspin-adaptive", routing="quality-only")
    assert (adaptive.status == OK).all() and (plain.status == OK).all()
    assert adaptive.per_model["big"]["cold_starts"] > plain.per_model["big"]["cold_starts"]
    assert adaptive.per_model["big"]["gpu_seconds"] < 0.9 * plain.per_model["big"]["gpu_seconds"], (
        adaptive.per_model["big"]["gpu_seconds"], plain.per_model["big"]["gpu_seconds"])


def test_clairvoyant_bound_is_below_every_policy_that_meets_the_slo() -> None:
    """The bound (one replica per model with perfect foresight) is never above a policy with SLO 1.0, and for
    a trace of two bursts an hour apart it is the two bursts' busy time plus two loads, not the hour."""
    from stack.sim.metrics import clairvoyant_gpu_s_per_query

    cfg = simkit.one_model(concurrency=8, max_replicas=4, cold_start_s=60.0)
    burst = np.arange(0.0, 60.0, 2.0)
    t = np.concatenate([burst, burst + 3600.0])
    tr = simkit.trace_at(list(t), 4000.0)
    res = simkit.run(cfg, tr, "static")
    assert (res.status == OK).all()
    b = clairvoyant_gpu_s_per_query(res, cfg)
    assert b is not None
    busy = sum(float(np.nanmax(burst + res.latency[i * 30:(i + 1) * 30]) - burst[0]) for i in range(2))
    assert b == pytest.approx((busy + 2 * 60.0) / t.size, rel=0.05)
    for pol in ("static", "pickspin", "knative-kpa"):
        r = simkit.run(cfg, tr, pol)
        gpu = sum(m["gpu_seconds"] for m in r.per_model.values()) / t.size
        rb = clairvoyant_gpu_s_per_query(r, cfg)
        assert rb is not None and gpu >= rb * 0.999
        assert rb == pytest.approx(b, rel=0.05)  # same requests, same model: a cold start does not move it
