"""Pick in the simulator is the router's rank over a snapshot of simulated state; what-if variants."""

from __future__ import annotations

import math

import pytest

import stack.sim.routing as routing
from functions.router.app import RouterState
from functions.router.classifiers.base import Estimate, peaked
from functions.router.telemetry import Telemetry
from stack.sim.cluster import ModelState, Replica
from stack.sim.routing import SimRouter, variant
from tests.sim import simkit


def states(cfg: simkit.SimConfig) -> list[ModelState]:
    return [ModelState(k, m.name, m, cfg.cluster.models[m.name]) for k, m in enumerate(cfg.matrix.models)]


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_every_arrival_is_decided_by_the_routers_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = routing.decide

    def spy(*a: object, **k: object) -> object:
        calls.append(1)
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(routing, "decide", spy)
    cfg = simkit.one_model()
    tr = simkit.poisson_trace(0.5, 600.0)
    simkit.run(cfg, tr, "static")
    assert len(calls) == len(tr) > 100


def test_the_simulated_router_is_the_routers_own_state() -> None:
    cfg = simkit.one_model()
    r = SimRouter(cfg.matrix, variant("keyword", cfg.matrix), states(cfg))
    assert isinstance(r.state, RouterState) and isinstance(r.telemetry, Telemetry)


def test_quality_only_picks_the_most_capable_and_keyword_the_cheap_one() -> None:
    big = simkit.model("big", "large", (0.95, 0.9, 0.8), 0.02)
    small = simkit.model("small", "small", (0.9, 0.5, 0.2), 0.001)
    cfg = simkit.config([big, small], {"big": simkit.cluster(), "small": simkit.cluster()})
    ms = states(cfg)
    est = Estimate("low", peaked("low", 0.85), 0.85, "keyword")
    assert SimRouter(cfg.matrix, variant("quality-only", cfg.matrix), ms).choose(est) == 0
    kw = SimRouter(cfg.matrix, variant("keyword", cfg.matrix), ms)
    assert kw.choose(est) == 1
    # A backend whose recent answers failed is taken out, as the router does.
    for _ in range(5):
        kw.begin(ms[1])
        kw.end(ms[1], False, 1.0)
    assert kw.choose(est) == 0


def test_decay_and_cold_awareness_what_ifs() -> None:
    cfg = simkit.one_model(cold_start_s=80.0)
    (ms,) = states(cfg)
    prior = ms.model.backends[0].expected_latency_s
    clock = Clock()
    stale = SimRouter(cfg.matrix, variant("keyword", cfg.matrix), [ms], clock)
    decay = SimRouter(cfg.matrix, variant("keyword+decay", cfg.matrix), [ms], clock)
    aware = SimRouter(cfg.matrix, variant("keyword+aware", cfg.matrix), [ms], clock)
    routers = (stale, decay, aware)
    for r in routers:  # one answer that took 100 s longer than the prior
        r.begin(ms)
        r.end(ms, True, prior + 100.0)
    est = Estimate("low", peaked("low", 0.85), 0.85, "keyword")

    def latency(r: SimRouter) -> float:
        r.choose(est)
        return float(r.telemetry.snapshot[ms.model.backends[0].name].latency_s)

    def expected(r: SimRouter) -> float:
        table = routing.decide(r.state, "", r.variant.profile_name, estimate=est).table
        return table[0].latency_s

    hl = routing.DECAY_HALF_LIFE_S
    clock.t = hl
    assert latency(stale) == prior + 100.0
    assert latency(decay) == pytest.approx(prior + 50.0)
    # No replica at all: the router is told the backend is at zero and adds the whole cold start.
    assert latency(aware) == pytest.approx(prior + 50.0)
    assert expected(aware) == pytest.approx(prior + 50.0 + 80.0)
    # A replica starting: the backend is waking (as the activator's "starting" says), no cold start added.
    ms.replicas.append(Replica(0, hl - 30.0, hl + 50.0, False))
    aware.choose(est)
    assert expected(aware) == pytest.approx(prior + 50.0)
    ms.replicas[0].ready = True
    aware.choose(est)
    assert expected(aware) == pytest.approx(prior + 50.0)
    clock.t = 1e9
    assert math.isclose(latency(stale), prior + 100.0)
    with pytest.raises(ValueError):
        variant("keyword+magic", cfg.matrix)
    with pytest.raises(ValueError, match="profile"):
        variant("keyword@nope", cfg.matrix)
    v = variant("hybrid@quality+aware", cfg.matrix)
    assert (v.classifier, v.profile, v.cold_aware) == ("hybrid", cfg.matrix.profiles["quality"], True)
