"""Hybrid: a confident keyword hit decides; no hit, a weak hit or conflicting hits go to the scorer.

A keyword estimate at least ``MIN_KEYWORD_CONFIDENCE`` confident decides on its own (the keyword pass
costs microseconds, so such prompts never pay for the model); everything else gets the scorer's
probabilities (a weak hit is noted in ``rule``, for the explanation, and changes nothing). The default
rules (``KeywordRules``) report hits with confidence 0.6, below the threshold: measured
leave-one-family-out (model/REPORT.md), letting hits decide made hybrid worse than the scorer alone on
most families, and multiplying them into the scorer's probabilities did not help either, at any weight
tried. So by default hybrid = semantic, with the keyword rules as the fallback when the scorer is
unavailable (marked ``keyword-fallback``); operators who configure rules they trust at
``hit_confidence >= 0.8`` get the fast path for those.
"""

from __future__ import annotations

from dataclasses import replace

from pickspin.config import ServiceMatrix

from .base import Estimate
from .keyword import KeywordClassifier
from .semantic import SemanticClassifier, build_scorer

# A keyword estimate at least this confident decides on its own (a single-class hit reports
# KeywordRules.hit_confidence, 0.85 by default; a conflict 0.5; no hit default_confidence, 0.4).
MIN_KEYWORD_CONFIDENCE = 0.8


class HybridClassifier:
    name = "hybrid"

    def __init__(self, keyword: KeywordClassifier, semantic: SemanticClassifier, *,
                 min_keyword_confidence: float = MIN_KEYWORD_CONFIDENCE) -> None:
        self.keyword = keyword
        self.semantic = semantic
        self.min_keyword_confidence = min_keyword_confidence

    @classmethod
    def from_config(cls, matrix: ServiceMatrix) -> HybridClassifier:
        kw = KeywordClassifier.from_config(matrix)
        return cls(kw, SemanticClassifier(build_scorer(matrix), kw))

    def ready(self) -> bool:
        return self.semantic.ready()

    def keyword_decides(self, est: Estimate) -> bool:
        return est.rule is not None and not est.detail.get("conflict") and est.confidence >= self.min_keyword_confidence

    def classify(self, text: str) -> Estimate:
        kw = self.keyword.classify(text)
        if self.keyword_decides(kw):
            return replace(kw, detail={**kw.detail, "hybrid": "keyword"})
        est = self.semantic.classify(text)
        why = "conflict" if kw.detail.get("conflict") else "no-hit" if kw.rule is None else "weak-hit"
        if why == "weak-hit" and est.source == "semantic":
            est = replace(est, rule=kw.rule)
        return replace(est, detail={**est.detail, "hybrid": f"scorer:{why}"})
