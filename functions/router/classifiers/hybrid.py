"""Hybrid: a confident keyword hit decides; no hit or conflicting hits go to the semantic scorer.

The keyword pass costs microseconds, so prompts with one clear cue never pay for the model; the
ambiguous rest (no rule fired, or a low and a high rule both fired) get the scorer's probabilities.
If the scorer is unavailable the keyword estimate is used, marked ``keyword-fallback``.
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
        return replace(est, detail={**est.detail, "hybrid": f"scorer:{why}"})
