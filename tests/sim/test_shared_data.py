"""Checks against ../shared (the Azure trace, the MMLU-Pro outcome matrix); skipped with the reason when absent."""

from __future__ import annotations

import numpy as np
import pytest

from stack.sim import trace as T
from stack.sim.config import Scenario, load_sim_config
from stack.sim.prompts import build_pool
from stack.sim.runner import estimates_for, run_scenario


@pytest.fixture(scope="module")
def shared() -> None:
    for p in (T.shared_dir() / "data" / "traces" / "azure_llm_2023_conv.csv",
              T.shared_dir() / "data" / "routing" / "mmlu_pro_matrix.csv"):
        if not p.is_file():
            pytest.skip(f"{p} not found: these tests need the shared reference data at ../shared "
                        "(beside the checkout, or PICKSPIN_SHARED); a fresh clone does not have it")


def test_azure_trace_as_is(shared: None) -> None:
    conv = T.load_azure("azure-conv")
    code = T.load_azure("azure-code")
    assert len(conv) == 19366 and len(code) == 8819
    assert 3400 < conv.duration_s < 3700
    assert np.all(np.diff(conv.t) >= 0)
    assert conv.in_tok.mean() == pytest.approx(1154.7, abs=0.5)
    both = T.load_azure("azure")
    assert len(both) == len(conv) + len(code) and both.streams == ["conv", "code"]


def test_capabilities_are_the_stand_ins_accuracy_per_label(shared: None) -> None:
    """config/sim.yaml's capabilities = each stand-in model's MMLU-Pro accuracy on each complexity label."""
    from model.data import load_questions

    cfg = load_sim_config()
    qs = load_questions()
    for m in cfg.matrix.models:
        col = cfg.cluster.models[m.name].matrix_column
        assert col is not None
        for label in ("low", "medium", "high"):
            v = [int(o) for q in qs if q.label == label and (o := q.outcomes[col]) is not None]
            assert m.capability.of(label) == pytest.approx(sum(v) / len(v), abs=0.0011), (m.name, label)


def test_quality_only_is_more_correct_and_costs_more(shared: None) -> None:
    cfg = load_sim_config()
    pool = build_pool(cfg, 400, np.random.default_rng(0))
    assert pool.correct is not None and pool.correct.shape == (400, 3)
    est = estimates_for(cfg, pool, ["keyword", "quality-only"], progress=False)
    sc = Scenario(name="t", trace="azure-conv", hours=6, rate_per_day=5000, scale="stretch", warmup_s=1800)
    res = run_scenario(cfg, sc, pool, est, policies=["static", "pickspin"], routings=["keyword", "quality-only"],
                       progress=False)
    kw, q = res.rows["pickspin"], res.rows["pickspin/quality-only"]
    assert q["correct_rate"] > kw["correct_rate"] + 0.1
    assert q["cost_per_query_usd"] > kw["cost_per_query_usd"]
    assert res.rows["static"]["cost_per_query_usd"] > kw["cost_per_query_usd"]
    assert 0 < kw["correct_rate"] <= kw["success_rate"]


def test_servegen_stream_keeps_the_recorded_counts(shared: None) -> None:
    import csv

    p = T.shared_dir() / "data" / "traces" / T.SERVEGEN_RATES
    if not p.is_file():
        pytest.skip(f"{p} not found (shared reference data)")
    tr = T.load_servegen("servegen:m-large:59", 24.0, np.random.default_rng(0))
    want = {}
    with p.open(newline="") as f:
        for r in csv.DictReader(f):
            if r["model"] == "m-large" and r["client_id"] == "59" and int(r["window"]) < 144:
                want[int(r["window"])] = int(r["requests_in_10min"])
    got = np.bincount((tr.t // 600).astype(int), minlength=144)
    assert {w: int(got[w]) for w in want if want[w] > 0} == {w: n for w, n in want.items() if n > 0}
    assert int(got.sum()) == sum(want.values())
    assert tr.duration_s == 86400.0 and tr.in_tok.min() >= 1
    with pytest.raises(ValueError, match="no client"):
        T.load_servegen("servegen:m-large:nope", 1.0, np.random.default_rng(0))
