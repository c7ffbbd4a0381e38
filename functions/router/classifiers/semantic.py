"""Semantic classification: the trained complexity model, with a keyword fallback that never fails.

In the local stack the model runs in-process (``routing.scorer.url`` unset); on Kubernetes the router
calls the scorer Knative Service (``routing.scorer.url``). If the scorer is down, slow (timeout),
still loading or broken, the keyword classifier decides instead; the estimate's source is then
``keyword-fallback`` and ``detail["fallback_reason"]`` says why (the router counts it in
``pickspin_classifier_fallbacks_total{reason}`` and reports it in ``X-PickSpin-Classifier``).
"""

from __future__ import annotations

from dataclasses import replace

from pickspin.config import COMPLEXITY_CLASSES, ServiceMatrix

from .base import Estimate
from .keyword import KeywordClassifier
from .remote import LocalScorer, RemoteScorer, Scorer, ScorerUnavailable


def build_scorer(matrix: ServiceMatrix) -> Scorer:
    sc = matrix.routing.scorer
    if sc.url:
        return RemoteScorer(sc.url, timeout_s=sc.timeout_s)
    return LocalScorer(sc.model_dir)


def fallback(keyword: KeywordClassifier, text: str, reason: str) -> Estimate:
    est = keyword.classify(text)
    return replace(est, source="keyword-fallback", detail={**est.detail, "fallback_reason": reason})


class SemanticClassifier:
    name = "semantic"

    def __init__(self, scorer: Scorer, keyword: KeywordClassifier) -> None:
        self.scorer = scorer
        self.keyword = keyword

    @classmethod
    def from_config(cls, matrix: ServiceMatrix) -> SemanticClassifier:
        return cls(build_scorer(matrix), KeywordClassifier.from_config(matrix))

    def ready(self) -> bool:
        check = getattr(self.scorer, "ready", None)
        return bool(check()) if callable(check) else True

    def classify(self, text: str) -> Estimate:
        try:
            r = self.scorer.score(text)
        except ScorerUnavailable as e:
            return fallback(self.keyword, text, e.reason)
        probs = {c: float(r.probs.get(c, 0.0)) for c in COMPLEXITY_CLASSES}
        if r.label not in probs:
            return fallback(self.keyword, text, "error")
        return Estimate(r.label, probs, probs[r.label], "semantic", None,
                        {"model_version": r.version, "scorer": self.scorer.where})
