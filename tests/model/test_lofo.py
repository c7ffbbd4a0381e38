"""Leave-one-family-out metrics and the data-built keyword rules (pure numpy on made-up data)."""

from __future__ import annotations

import numpy as np
import pytest

from model.keyword_rules import mine
from model.lofo import apgr, auroc, hybrid_probs, not_low, pgr_curve


def test_auroc_known_values() -> None:
    y = np.array([0, 0, 1, 1])
    assert auroc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auroc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert auroc(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5  # ties count one half
    assert auroc(y, np.array([0.1, 0.6, 0.4, 0.9])) == 0.75
    assert np.isnan(auroc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_apgr_random_oracle_and_reverse() -> None:
    rng = np.random.default_rng(0)
    weak = rng.integers(0, 2, 400).astype(float)
    strong = np.maximum(weak, rng.integers(0, 2, 400)).astype(float)
    assert apgr(np.zeros(400), weak, strong) == pytest.approx(0.5)  # one score for all: the random line
    oracle = apgr(strong - weak, weak, strong)
    reverse = apgr(weak - strong, weak, strong)
    assert oracle > 0.75 and reverse < 0.25
    assert oracle + reverse == pytest.approx(1.0)  # strong >= weak everywhere here: mirror images
    assert reverse < apgr(rng.random(400), weak, strong) < oracle
    acc = pgr_curve(rng.random(400), weak, strong)
    assert acc[0] == pytest.approx(weak.mean()) and acc[-1] == pytest.approx(strong.mean())
    assert np.isnan(apgr(np.zeros(10), np.ones(10), np.ones(10)))  # no gap to recover


def test_hybrid_eval_runs_the_routers_own_hybrid() -> None:
    from pickspin.config import KeywordRules

    sem = np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2], [0.3, 0.3, 0.4]])
    texts = ["prove it", "hello there", "prove it"]
    # a confident hit decides (the old behaviour) ...
    h = hybrid_probs(texts, KeywordRules(low=[], high=["prove"], hit_confidence=0.85), sem)
    assert h[0].round(3).tolist() == [0.075, 0.075, 0.85] and h[1].tolist() == sem[1].tolist()
    assert h[2].round(3).tolist() == [0.075, 0.075, 0.85]
    # ... a weak one (the default) leaves the scorer's probabilities, row by row
    h = hybrid_probs(texts, KeywordRules(low=[], high=["prove"], hit_confidence=0.6), sem)
    assert np.array_equal(h, sem)
    assert not_low(h).round(3).tolist() == [0.8, 0.4, 0.7]


def test_mined_rules_need_the_same_direction_on_every_family() -> None:
    texts, fams, hard = [], [], []
    for f in ("a", "b", "c:x"):
        for i in range(100):
            easy_cue = i < 30
            texts.append(("please explain this" if easy_cue else "compute it") + (" quickly" if i % 2 else ""))
            fams.append(f)
            # "explain" prompts are easy everywhere; "quickly" is hard on a and b but easy on c
            h = 0 if easy_cue else 1
            if i % 2 and f == "c:x":
                h = 0
            hard.append(h)
    import model.keyword_rules as kr

    saved = kr.CANDIDATES
    kr.CANDIDATES = ("explain", "quickly", "compute")
    try:
        r = mine(texts, fams, hard)
    finally:
        kr.CANDIDATES = saved
    assert "explain" in r["low"]
    assert "compute" in r["high"]
    assert "quickly" not in r["low"] + r["high"]  # anti-correlated on family c: dropped
    assert r["dropped"]["quickly"]["status"] == "contradicted"
    assert r["evidence"]["explain"]["families"]["a"]["n"] == 30


def test_rules_need_evidence_from_two_datasets_or_none_at_all() -> None:
    """A phrase that agrees on every family of ONE dataset is dropped ("define": easier on all three
    MMLU-Pro families, harder on MATH); an old default no family has evidence on stays as an intent cue
    (it abstains on these prompts); one that holds on two datasets is kept in its measured direction."""
    from model.keyword_rules import status

    def ev(**fam_n_lift: tuple[int, float]) -> dict[str, dict[str, float]]:
        return {f.replace("_", ":"): {"n": n, "lift": lift} for f, (n, lift) in fam_n_lift.items()}

    one = ev(pro_stem=(40, -0.2), pro_life=(30, -0.3), pro_hum=(25, -0.2))
    assert status(one) == ("one dataset", "low")
    assert status(ev(pro_stem=(40, 0.2), gsm8k=(30, 0.1))) == ("checked", "high")
    assert status(ev(pro_stem=(40, 0.2), gsm8k=(30, 0.01))) == ("one dataset", "high")  # too weak on gsm8k
    assert status(ev(pro_stem=(40, 0.2), gsm8k=(30, 0.1), math=(6, -0.1))) == ("contradicted", None)
    assert status(ev(pro_stem=(4, -0.5), math=(2, 0.5))) == ("untested", None)

    texts = ["define x"] * 60 + ["tl;dr please"] * 2 + ["hello"] * 60
    fams = ["pro:a"] * 30 + ["pro:b"] * 30 + ["pro:a", "pro:b"] + ["pro:a"] * 30 + ["pro:b"] * 30
    hard = [0] * 60 + [1, 1] + [1] * 60  # "define" is easier on both MMLU-Pro families
    r = mine(texts, fams, hard, old={"low": ["define", "tl;dr"], "high": []})
    assert r["low"] == ["tl;dr"]
    assert r["dropped"]["define"]["status"] == "one dataset"
    assert r["evidence"]["tl;dr"]["status"] == "untested"
