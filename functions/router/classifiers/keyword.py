"""Keyword rules: compiled once, matched on word boundaries, case-insensitive."""

from __future__ import annotations

import re

from pickspin.config import KeywordRules, ServiceMatrix

from .base import Estimate, peaked


def _compile(phrases: list[str]) -> re.Pattern[str]:
    # Phrases are literal words separated by spaces; a phrase may use a character class such as
    # "optimi[sz]e". Longest first so "explain why" wins over "explain".
    parts = sorted((p.strip() for p in phrases), key=len, reverse=True)
    body = "|".join(r"\s+".join(_word(w) for w in p.split()) for p in parts)
    return re.compile(rf"(?<![\w])(?:{body})(?![\w])", re.IGNORECASE)


def _word(w: str) -> str:
    # Keep [..] character classes, escape everything else.
    out, i = [], 0
    while i < len(w):
        if w[i] == "[" and "]" in w[i:]:
            j = w.index("]", i)
            out.append(w[i : j + 1])
            i = j + 1
        else:
            out.append(re.escape(w[i]))
            i += 1
    return "".join(out)


class KeywordClassifier:
    name = "keyword"

    def __init__(self, rules: KeywordRules) -> None:
        self.rules = rules
        self._low = _compile(rules.low) if rules.low else None
        self._high = _compile(rules.high) if rules.high else None

    @classmethod
    def from_config(cls, matrix: ServiceMatrix) -> KeywordClassifier:
        return cls(matrix.routing.keyword)

    def classify(self, text: str) -> Estimate:
        hi = self._high.search(text) if self._high else None
        lo = self._low.search(text) if self._low else None
        r = self.rules
        if hi and lo:
            # Conflicting hits: the harder class wins, with low confidence (hybrid sends these to the scorer).
            conf = 0.5
            rule = f"conflict: high:{hi.group(0).lower()} vs low:{lo.group(0).lower()}"
            return Estimate("high", peaked("high", conf), conf, "keyword", rule, {"conflict": True})
        if hi:
            return Estimate("high", peaked("high", r.hit_confidence), r.hit_confidence, "keyword",
                            f"high:{hi.group(0).lower()}")
        if lo:
            return Estimate("low", peaked("low", r.hit_confidence), r.hit_confidence, "keyword",
                            f"low:{lo.group(0).lower()}")
        return Estimate(r.default_class, peaked(r.default_class, r.default_confidence), r.default_confidence,
                        "keyword", None)
