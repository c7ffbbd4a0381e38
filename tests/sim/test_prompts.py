"""Classifier estimates are computed once per distinct prompt and reused; an unavailable scorer is reported."""

from __future__ import annotations

import numpy as np
import pytest

import stack.sim.prompts as prompts
from functions.router.classifiers.base import Estimate, peaked
from stack.sim.runner import estimates_for, run_scenario
from tests.sim import simkit


class _Counting:
    name = "hybrid"

    def __init__(self) -> None:
        self.calls = 0

    def classify(self, text: str) -> Estimate:
        self.calls += 1
        label = "high" if "Prove" in text else "low"
        return Estimate(label, peaked(label, 0.9), 0.9, "semantic")


def test_estimates_once_per_prompt_and_shared_by_all_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    clf = _Counting()
    monkeypatch.setattr(prompts, "build_classifier", lambda name, matrix: clf)
    big = simkit.model("big", "large", (0.95, 0.9, 0.9), 0.02)
    small = simkit.model("small", "small", (0.9, 0.5, 0.1), 0.001)
    cfg = simkit.config([big, small], {"big": simkit.cluster(), "small": simkit.cluster()})
    pool = prompts.synthetic_pool(30, np.random.default_rng(0))
    est = estimates_for(cfg, pool, ["hybrid"], progress=False)
    assert clf.calls == 30
    assert est["hybrid"].sources == {"semantic": 30}
    sc = simkit.Scenario(name="p", trace="poisson", hours=0.2, rate_per_day=20000)
    res = run_scenario(cfg, sc, pool, est, policies=["static", "pickspin"], routings=["hybrid"], progress=False)
    assert clf.calls == 30  # no classification during the runs
    assert set(res.rows) == {"static/hybrid", "pickspin/hybrid"}
    # "high" prompts (Prove...) went to the big model, the rest mostly to the small one.
    assert res.rows["pickspin/hybrid"]["per_model"]["big"]["requests"] > 0
    assert res.rows["pickspin/hybrid"]["per_model"]["small"]["requests"] > 0


def test_unavailable_scorer_skips_the_variant_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    class Scorer:
        error = "ModelLoadError: model.onnx not found"

        def wait_ready(self, timeout: float) -> bool:
            return False

    class Semantic:
        scorer = Scorer()

    class Hybrid(_Counting):
        semantic = Semantic()

    monkeypatch.setattr(prompts, "build_classifier", lambda name, matrix: Hybrid())
    cfg = simkit.one_model()
    pool = prompts.synthetic_pool(5, np.random.default_rng(0))
    est = prompts.estimate_pool(cfg.matrix, pool.texts, "hybrid", ready_timeout_s=0.01, progress=False)
    assert est.per_prompt is None
    assert est.reason is not None and "model.onnx" in est.reason
    sc = simkit.Scenario(name="p", trace="poisson", hours=0.05, rate_per_day=20000)
    res = run_scenario(cfg, sc, pool, {"hybrid": est, "keyword": prompts.estimate_pool(
        cfg.matrix, pool.texts, "keyword", progress=False)}, policies=["static"], routings=["keyword", "hybrid"],
        progress=False)
    assert "hybrid" in res.skipped and "model.onnx" in res.skipped["hybrid"]
    assert set(res.rows) == {"static"}
