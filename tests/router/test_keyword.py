from __future__ import annotations

import pytest

from functions.router.classifiers import build_classifier
from functions.router.classifiers.keyword import KeywordClassifier
from pickspin.config import KeywordRules, load_config


@pytest.fixture(scope="module")
def clf() -> KeywordClassifier:
    return KeywordClassifier(KeywordRules())


@pytest.mark.parametrize(
    ("text", "label", "rule"),
    [
        ("Classify these animals by habitat.", "low", "low:classify"),
        ("Please SUMMARISE this paragraph", "low", "low:summarise"),
        ("Extract the dates from this text", "low", "low:extract"),
        ("give a rigorous argument that sqrt(2) is irrational", "high", "high:rigorous"),
        ("Let x be a positive real number.", "high", "high:let"),
        ("What is the COMPLEXITY   of quicksort?", "high", "high:complexity   of"),
        ("Optimise this SQL query", "high", "high:optimise"),
        ("optimize this loop", "high", "high:optimize"),
        ("Write a haiku about autumn", "medium", None),
    ],
)
def test_classes_and_rule(clf: KeywordClassifier, text: str, label: str, rule: str | None) -> None:
    e = clf.classify(text)
    assert e.label == label
    assert e.rule == rule
    assert sum(e.probs.values()) == pytest.approx(1.0)
    assert max(e.probs, key=lambda k: e.probs[k]) == label


@pytest.mark.parametrize("text", ["the summit was cold", "a listless afternoon", "approved by the board",
                                  "undefined behaviour"])
def test_word_boundaries(clf: KeywordClassifier, text: str) -> None:
    e = clf.classify(text)
    assert e.rule is None, f"{text!r} matched {e.rule}"
    assert e.label == "medium"


def test_conflict_is_high_with_low_confidence(clf: KeywordClassifier) -> None:
    e = clf.classify("summarise the derivation of Fermat's little theorem")
    assert e.label == "high"
    assert e.confidence == 0.5
    assert e.detail.get("conflict") is True
    assert e.rule is not None and "conflict" in e.rule


def test_confidences_follow_rules() -> None:
    c = KeywordClassifier(KeywordRules(hit_confidence=0.9, default_class="low", default_confidence=0.6))
    assert c.classify("summarise x").confidence == 0.9
    e = c.classify("hello there")
    assert (e.label, e.confidence) == ("low", 0.6)


def test_rules_come_from_config() -> None:
    c = KeywordClassifier(KeywordRules(low=["ping"], high=["frobnicate"]))
    assert c.classify("PING me").label == "low"
    assert c.classify("frobnicate the widget").label == "high"
    assert c.classify("list things").label == "medium"


def test_default_rules_drop_the_ones_data_contradicts() -> None:
    """model/keyword_rules.py: these old phrases fire on hard MATH / code / MMLU-Pro prompts, or only one
    dataset supports them."""
    r = KeywordRules()
    for dropped in ("list", "sum", "what is", "define", "name", "who is", "translate", "convert", "definition"):
        assert dropped not in r.low, dropped
    for dropped in ("explain why", "formal", "prove", "proof", "design", "theorem"):
        assert dropped not in r.high, dropped
    assert not set(r.low) & set(r.high)
    assert r.hit_confidence < 0.8  # a hit is evidence for hybrid, not a verdict (hybrid.MIN_KEYWORD_CONFIDENCE)


def test_registry_builds_keyword_and_rejects_unknown() -> None:
    m = load_config()
    assert build_classifier("keyword", m).name == "keyword"
    with pytest.raises(ValueError, match="unknown classifier"):
        build_classifier("nope", m)
