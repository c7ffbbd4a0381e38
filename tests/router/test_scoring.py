from __future__ import annotations

import pytest

from functions.router.classifiers.base import Estimate, peaked
from functions.router.scoring import Candidate, rank
from functions.router.telemetry import BackendStats
from tests.helpers import trio_matrix

M = trio_matrix({"small": ["http://127.0.0.1:1"], "medium": ["http://127.0.0.1:2"], "large": ["http://127.0.0.1:3"]})
CANDS = [Candidate(m, b) for m in M.models for b in m.backends]


def snap(**over: BackendStats) -> dict[str, BackendStats]:
    base = {c.backend.name: BackendStats(True, 0, c.backend.expected_latency_s, None, 0.0, 0, 0.0) for c in CANDS}
    base.update(over)
    return base


def est(label: str, conf: float = 0.85) -> Estimate:
    return Estimate(label, peaked(label, conf), conf, "keyword")


def best(label: str, profile: str, s: dict[str, BackendStats] | None = None) -> str:
    return rank(CANDS, s or snap(), est(label), M.profiles[profile])[0].model


def test_eq2_by_hand() -> None:
    rows = {r.model: r for r in rank(CANDS, snap(), est("low"), M.profiles["balanced"])}
    w_r, w_t, w_c = 0.5 / 1.1, 0.3 / 1.1, 0.3 / 1.1
    # small: cheapest and fastest -> T_hat = C_hat = 1
    r_small = 0.85 * 0.9 + 0.075 * 0.5 + 0.075 * 0.05
    assert rows["small-model"].relevance == pytest.approx(r_small)
    assert rows["small-model"].score == pytest.approx(w_r * r_small + w_t + w_c)
    # medium: T in [0.5, 2.5] -> norm 0.25; C in [0.02, 0.18] -> norm 0.25
    r_med = 0.85 * 0.95 + 0.075 * 0.8 + 0.075 * 0.6
    assert rows["medium-model"].score == pytest.approx(w_r * r_med + w_t * 0.75 + w_c * 0.75)
    # large: slowest and dearest -> T_hat = C_hat = 0
    assert rows["large-model"].latency_hat == 0.0 and rows["large-model"].cost_hat == 0.0


@pytest.mark.parametrize(
    ("label", "profile", "model"),
    [
        ("low", "balanced", "small-model"),
        ("high", "balanced", "medium-model"),
        ("high", "quality", "large-model"),
        ("medium", "quality", "medium-model"),
        ("high", "cost", "small-model"),
        ("low", "speed", "small-model"),
    ],
)
def test_profiles_move_the_choice(label: str, profile: str, model: str) -> None:
    assert best(label, profile) == model


def test_single_candidate_gets_full_latency_and_cost_credit() -> None:
    r = rank(CANDS[:1], snap(), est("high"), M.profiles["balanced"])
    assert len(r) == 1 and r[0].latency_hat == 1.0 and r[0].cost_hat == 1.0


def test_equal_values_normalise_to_zero_spread() -> None:
    s = {c.backend.name: BackendStats(True, 0, 1.0, None, 0.0, 5, 0.0) for c in CANDS}
    rows = rank(CANDS, s, est("high"), M.profiles["speed"])
    assert {r.latency_hat for r in rows} == {1.0}


def test_ineligible_backends_are_listed_but_never_picked() -> None:
    s = snap(**{
        "small-b0": BackendStats(False, 0, 0.5, None, 0.0, 0, 0.0),
        "medium-b0": BackendStats(True, 8, 1.0, None, 0.0, 0, 0.0),  # max_concurrency 8 -> full
        "large-b0": BackendStats(True, 0, 2.5, None, 0.9, 10, 0.0),  # error rate over 0.5
    })
    rows = rank(CANDS, s, est("low"), M.profiles["balanced"])
    assert [r.eligible for r in rows] == [False, False, False]
    assert {r.backend: r.reason for r in rows} == {"small-b0": "unhealthy", "medium-b0": "at capacity",
                                                  "large-b0": "error rate 0.90"}
    assert all(r.score is None for r in rows)


def test_live_latency_changes_the_pick() -> None:
    # The small model gets slow under load: for a low prompt under the speed profile, medium now wins.
    s = snap(**{"small-b0": BackendStats(True, 7, 3.0, None, 0.0, 10, 0.0)})
    assert best("low", "speed", s) == "medium-model"


def test_deterministic_tie_break() -> None:
    m = trio_matrix({"small": ["http://127.0.0.1:1", "http://127.0.0.1:2"]})
    cands = [Candidate(x, b) for x in m.models for b in x.backends]
    s = {c.backend.name: BackendStats(True, 0, 0.5, None, 0.0, 0, 0.0) for c in cands}
    for _ in range(5):
        assert [r.backend for r in rank(list(reversed(cands)), s, est("low"), m.profiles["balanced"])] == \
            ["small-b0", "small-b1"]


def test_a_backend_at_zero_pays_its_cold_start_in_t() -> None:
    cands = [Candidate(c.model, c.backend.model_copy(update={"cold_start_s": 60.0})) for c in CANDS]
    # a high prompt under balanced goes to the warm medium model ...
    assert rank(cands, snap(), est("high"), M.profiles["balanced"])[0].model == "medium-model"
    # ... but not while medium is at zero and a request would wait a minute for it to load
    cold = snap(**{"medium-b0": BackendStats(True, 0, 1.0, None, 0.0, 0, 0.0, cold=True)})
    rows = rank(cands, cold, est("high"), M.profiles["balanced"])
    assert {r.model: r.latency_s for r in rows}["medium-model"] == pytest.approx(61.0)
    assert rows[0].model == "large-model"
    # without a cold_start_s the belief changes nothing
    assert rank(CANDS, cold, est("high"), M.profiles["balanced"])[0].model == "medium-model"


def test_an_open_circuit_is_ineligible_until_its_cooldown_is_over() -> None:
    s = snap(**{"small-b0": BackendStats(True, 0, 0.5, None, 1.0, 0, 0.0, circuit="open", retry_at=100.0)})
    rows = {r.backend: r for r in rank(CANDS, s, est("low"), M.profiles["balanced"], max_error_rate=None, now=99.0)}
    assert not rows["small-b0"].eligible and rows["small-b0"].reason == "circuit open"
    rows = {r.backend: r for r in rank(CANDS, s, est("low"), M.profiles["balanced"], max_error_rate=None, now=100.0)}
    assert rows["small-b0"].eligible  # the next request is its trial
    busy = snap(**{"small-b0": BackendStats(True, 1, 0.5, None, 1.0, 0, 0.0, circuit="half_open", trials=1)})
    rows = {r.backend: r for r in rank(CANDS, busy, est("low"), M.profiles["balanced"], max_error_rate=None, now=0)}
    assert rows["small-b0"].reason == "circuit half-open (trial in flight)"
