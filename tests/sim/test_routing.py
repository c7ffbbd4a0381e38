"""Pick in the simulator is the router's rank over a snapshot of simulated state; what-if variants."""

from __future__ import annotations

import math

import pytest

import stack.sim.routing as routing
from functions.router.classifiers.base import Estimate, peaked
from stack.sim.cluster import ModelState, Replica
from stack.sim.routing import SimRouter, variant
from tests.sim import simkit


def states(cfg: simkit.SimConfig) -> list[ModelState]:
    out = []
    for k, m in enumerate(cfg.matrix.models):
        ms = ModelState(k, m.name, m, cfg.cluster.models[m.name])
        ms.ewma_latency = m.backends[0].expected_latency_s
        out.append(ms)
    return out


def test_every_arrival_is_ranked_by_the_routers_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = routing.rank

    def spy(*a: object, **k: object) -> object:
        calls.append(1)
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(routing, "rank", spy)
    cfg = simkit.one_model()
    tr = simkit.poisson_trace(0.5, 600.0)
    simkit.run(cfg, tr, "static")
    assert len(calls) == len(tr) > 100


def test_quality_only_picks_the_most_capable_and_keyword_the_cheap_one() -> None:
    big = simkit.model("big", "large", (0.95, 0.9, 0.8), 0.02)
    small = simkit.model("small", "small", (0.9, 0.5, 0.2), 0.001)
    cfg = simkit.config([big, small], {"big": simkit.cluster(), "small": simkit.cluster()})
    ms = states(cfg)
    est = Estimate("low", peaked("low", 0.85), 0.85, "keyword")
    assert SimRouter(cfg.matrix, variant("quality-only", cfg.matrix), ms).choose(est) == 0
    assert SimRouter(cfg.matrix, variant("keyword", cfg.matrix), ms).choose(est) == 1
    # A backend whose recent answers failed is taken out, as the router does.
    ms[1].error_rate = 0.9
    assert SimRouter(cfg.matrix, variant("keyword", cfg.matrix), ms).choose(est) == 0


def test_decay_and_cold_awareness_what_ifs() -> None:
    cfg = simkit.one_model(cold_start_s=80.0)
    (ms,) = states(cfg)
    prior = ms.model.backends[0].expected_latency_s
    ms.ewma_latency, ms.last_observed = prior + 100.0, 0.0
    stale = SimRouter(cfg.matrix, variant("keyword", cfg.matrix), [ms])
    decay = SimRouter(cfg.matrix, variant("keyword+decay", cfg.matrix), [ms])
    aware = SimRouter(cfg.matrix, variant("keyword+aware", cfg.matrix), [ms])
    hl = routing.DECAY_HALF_LIFE_S
    assert stale.latency(ms, hl) == prior + 100.0
    assert decay.latency(ms, hl) == pytest.approx(prior + 50.0)
    # No replica at all: the whole cold start is ahead; one starting: what is left of it; one ready: nothing.
    assert aware.latency(ms, hl) == pytest.approx(prior + 50.0 + 80.0)
    ms.replicas.append(Replica(0, hl - 30.0, hl + 50.0, False))
    assert aware.latency(ms, hl) == pytest.approx(prior + 50.0 + 50.0)
    ms.replicas[0].ready = True
    assert aware.latency(ms, hl) == pytest.approx(prior + 50.0)
    assert math.isclose(stale.latency(ms, 1e9), prior + 100.0)
    with pytest.raises(ValueError):
        variant("keyword+magic", cfg.matrix)
    with pytest.raises(ValueError, match="profile"):
        variant("keyword@nope", cfg.matrix)
    v = variant("hybrid@quality+aware", cfg.matrix)
    assert (v.classifier, v.profile, v.cold_aware) == ("hybrid", cfg.matrix.profiles["quality"], True)
