"""waiting.choose: the wait budget on top of Eq. 2 (pure: a hand-made snapshot, no clock, no I/O)."""

from __future__ import annotations

from dataclasses import replace

from functions.router.classifiers.base import Estimate, peaked
from functions.router.scoring import candidates_of, rank
from functions.router.telemetry import BackendStats
from functions.router.waiting import STRICT, choose, wait_s
from tests.helpers import trio_matrix

M = trio_matrix({"small": ["http://127.0.0.1:1"], "large": ["http://127.0.0.1:2"]})
CANDS = candidates_of(M)
HIGH = Estimate("high", peaked("high", 0.9), 0.9, "keyword")
QUALITY = M.profiles["quality"]
WARM = {c.backend.name: BackendStats(True, 0, c.backend.expected_latency_s, None, 0.0, 0, 0.0) for c in CANDS}


def snap(**eta: float) -> dict[str, BackendStats]:
    return {n: replace(s, cold=n in eta, eta_s=eta.get(n)) for n, s in WARM.items()}


def test_all_warm_is_the_plain_ranking() -> None:
    ch = choose(CANDS, WARM, HIGH, QUALITY, 2.0)
    assert ch.table == rank(CANDS, WARM, HIGH, QUALITY) and ch.downgraded_from is None and ch.wake is None


def test_best_model_cold_beyond_the_budget_downgrades_and_wakes_it() -> None:
    ch = choose(CANDS, snap(**{"large-b0": 20.0}), HIGH, QUALITY, 2.0)
    assert ch.table[0].model == "small-model" and ch.table[0].eligible
    assert (ch.downgraded_from, ch.wake) == ("large-model", "large-b0")
    assert {s.backend for s in ch.table} == {"small-b0", "large-b0"}  # the rest stays as failover


def test_best_model_within_the_budget_or_strict_is_waited_for() -> None:
    for budget in (30.0, STRICT):
        ch = choose(CANDS, snap(**{"large-b0": 20.0}), HIGH, QUALITY, budget)
        assert ch.table[0].model == "large-model" and ch.downgraded_from is None and ch.wake is None


def test_nothing_ready_in_time_keeps_the_ranking_and_wakes_nothing() -> None:
    ch = choose(CANDS, snap(**{"large-b0": 20.0, "small-b0": 10.0}), HIGH, QUALITY, 2.0)
    assert ch.table == rank(CANDS, snap(**{"large-b0": 20.0, "small-b0": 10.0}), HIGH, QUALITY)
    assert ch.wake is None


def test_wait_is_the_eta_when_known_else_the_cold_start_while_cold() -> None:
    b = CANDS[0].backend.model_copy(update={"cold_start_s": 30.0})
    s = WARM[b.name]
    assert wait_s(b, s) == 0.0
    assert wait_s(b, replace(s, cold=True)) == 30.0
    assert wait_s(b, replace(s, cold=True, eta_s=4.0)) == 4.0
    assert wait_s(b, replace(s, eta_s=0.0)) == 0.0


def test_a_waking_backend_holds_requests_beyond_its_concurrency_up_to_the_cap() -> None:
    from functions.router.scoring import ineligible_reason

    b = CANDS[1].backend  # max_concurrency 8
    warm = replace(WARM[b.name], inflight=8)
    assert ineligible_reason(b, warm, None, max_held=256) == "at capacity"
    waking = replace(warm, eta_s=12.0, inflight=200)
    assert ineligible_reason(b, waking, None, max_held=256) is None
    assert ineligible_reason(b, replace(waking, inflight=8 + 256), None, max_held=256) == "264 held, at the cap"
    assert ineligible_reason(b, replace(warm, cold=True, inflight=9), None, max_held=0) == "9 held, at the cap"
