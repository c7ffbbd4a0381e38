"""Little's law: under constant Poisson load with no cold starts the simulated replicas match ceil(lambda W / c)."""

from __future__ import annotations

import math

import pytest

from tests.sim import simkit


@pytest.mark.parametrize("k", [1, 2, 3])
def test_pickspin_replicas_match_ceil_lambda_w_over_c(k: int) -> None:
    c = 64
    cfg = simkit.one_model(concurrency=c, max_replicas=8, cold_start_s=0.0, tpot_s=0.01, max_batch=256)
    w = simkit.service_time(cfg, "m", 100, 2000)  # 20.03 s, flat in the batch (slope 0)
    lam = (k - 0.5) * c / w  # lambda W / c = k - 0.5: half a replica from either boundary
    tr = simkit.poisson_trace(lam, 2400.0, out_tok=2000, warmup_s=600.0, seed=k)
    res = simkit.run(cfg, tr, "pickspin")
    expected = math.ceil(lam * w / c)
    assert expected == k
    # The served latency is the service time (no queueing at these replica counts), so W is W.
    ok = res.status == 1
    assert ok.all()
    assert abs(float(res.latency[ok].mean()) - w) < 0.05
    assert simkit.steady_mode(res) == expected
    assert res.per_model["m"]["cold_starts"] <= k + 1  # scaled up from zero once, no flapping
    mean = res.per_model["m"]["mean_replicas"]
    assert expected - 0.05 <= mean <= expected + 0.5


def test_knative_kpa_replicas_match_its_utilisation_target() -> None:
    """KPA aims at target x 70 %: ceil(lambda W / (0.7 c))."""
    c = 64
    cfg = simkit.one_model(concurrency=c, max_replicas=8, cold_start_s=0.0, tpot_s=0.01, max_batch=256)
    w = simkit.service_time(cfg, "m", 100, 2000)
    lam = 2.5 * c / w
    tr = simkit.poisson_trace(lam, 2400.0, out_tok=2000, warmup_s=600.0, seed=7)
    res = simkit.run(cfg, tr, "knative-kpa")
    assert simkit.steady_mode(res) == math.ceil(lam * w / (0.7 * c)) == 4


def test_small_c_adds_at_most_one_replica_for_poisson_bursts() -> None:
    """With c = 8 the scaler's demand-now term (max(r lat, floor c, demand)) sees Poisson peaks above
    lambda W, and the HPA holds them for its stabilisation window: at most one replica over Little's law."""
    cfg = simkit.one_model(concurrency=8, max_replicas=16, cold_start_s=0.0, tpot_s=0.01, max_batch=256)
    w = simkit.service_time(cfg, "m", 100, 200)
    modes = []
    for r in (0.5, 2.5, 6.5):
        res = simkit.run(cfg, simkit.poisson_trace(r * 8 / w, 1500.0, warmup_s=300.0, seed=3), "pickspin")
        modes.append(simkit.steady_mode(res))
    expected = [1, 3, 7]
    assert all(e <= m <= e + 1 for m, e in zip(modes, expected, strict=True)), modes
    assert modes == sorted(set(modes))  # strictly more replicas for more load
