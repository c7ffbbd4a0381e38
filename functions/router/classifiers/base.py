"""The one small interface every complexity classifier implements (RouteLLM-style)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from pickspin.config import COMPLEXITY_CLASSES


@dataclass(frozen=True)
class Estimate:
    """A prompt's complexity: the class, a probability per class, and where it came from."""

    label: str
    probs: Mapping[str, float]
    confidence: float
    source: str  # "keyword" | "semantic" | "keyword-fallback"
    rule: str | None = None  # the keyword rule that fired, if any
    detail: Mapping[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "class": self.label,
            "confidence": round(self.confidence, 4),
            "probabilities": {k: round(float(v), 4) for k, v in self.probs.items()},
            "source": self.source,
            "rule": self.rule,
            **({"detail": dict(self.detail)} if self.detail else {}),
        }


def peaked(label: str, confidence: float) -> dict[str, float]:
    """Class probabilities with ``confidence`` on ``label`` and the rest spread evenly."""
    rest = (1.0 - confidence) / (len(COMPLEXITY_CLASSES) - 1)
    return {c: (confidence if c == label else rest) for c in COMPLEXITY_CLASSES}


class Classifier(Protocol):
    name: str

    def classify(self, text: str) -> Estimate: ...
