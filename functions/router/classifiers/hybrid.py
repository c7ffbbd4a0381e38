"""Hybrid: a confident keyword hit decides; otherwise the semantic scorer, with a weak hit as evidence.

A keyword estimate at least ``MIN_KEYWORD_CONFIDENCE`` confident decides on its own (the keyword pass
costs microseconds, so such prompts never pay for the model). Below that, the scorer's probabilities
are used, and a single-class keyword hit multiplies them by the keyword estimate's own probabilities
(renormalised: a product of the two opinions), so a rule shifts the model's estimate instead of
overruling it. The default rules (``KeywordRules``) are built from data in which even the best phrases
shift a family's failure rate by only 0.1-0.3 (model/keyword_rules.py), so their default
``hit_confidence`` (0.6) is below the deciding threshold: measured leave-one-family-out, letting such
hits decide made hybrid worse than semantic alone on several families (model/REPORT.md).
If the scorer is unavailable the keyword estimate is used, marked ``keyword-fallback``.
"""

from __future__ import annotations

from dataclasses import replace

from pickspin.config import COMPLEXITY_CLASSES, ServiceMatrix

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
            est = combine(est, kw)
        return replace(est, detail={**est.detail, "hybrid": f"scorer:{why}"})


def combine(sem: Estimate, kw: Estimate) -> Estimate:
    """The scorer's probabilities times the keyword estimate's, renormalised (the rule is noted)."""
    raw = {c: float(sem.probs.get(c, 0.0)) * float(kw.probs.get(c, 0.0)) for c in COMPLEXITY_CLASSES}
    total = sum(raw.values())
    if total <= 0:
        return sem
    probs = {c: v / total for c, v in raw.items()}
    label = max(COMPLEXITY_CLASSES, key=lambda c: probs[c])
    return replace(sem, label=label, probs=probs, confidence=probs[label], rule=kw.rule)
