"""The task families read from ../shared (skipped, with the reason, in a fresh clone)."""

from __future__ import annotations

from collections import Counter

import pytest

from model.data import shared_dir


@pytest.fixture(scope="module")
def prompts() -> list:
    p = shared_dir() / "data" / "routing" / "multitask" / "zeroeval_gsm8k_math_crux.csv.gz"
    if not p.is_file():
        reason = f"needs the shared reference data ({p}); absent in a fresh clone"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    from model.families import all_prompts

    return all_prompts()


def test_every_family_present_with_both_outcomes(prompts: list) -> None:
    from model.families import EVAL_ONLY_FAMILIES, TRAIN_FAMILIES

    n = Counter(p.family for p in prompts)
    assert set(n) == set(TRAIN_FAMILIES) | set(EVAL_ONLY_FAMILIES)
    assert n["gsm8k"] == 1319 and n["math_l5"] == 721 and n["cruxeval"] == 800
    for f in n:
        fam = [p for p in prompts if p.family == f]
        share = sum(p.hard for p in fam) / len(fam)
        assert 0.05 < share < 0.95, (f, share)  # both classes of the routing target occur
        assert {p.weak for p in fam} == {0, 1}
    assert len({p.key for p in prompts}) == len(prompts)


def test_label_rule_is_monotone_in_difficulty(prompts: list) -> None:
    # math level 5 is harder than grade-school math for small models; the labels must say so
    share = {f: sum(p.hard for p in prompts if p.family == f) / sum(1 for p in prompts if p.family == f)
             for f in ("gsm8k", "math_l5")}
    assert share["math_l5"] > share["gsm8k"] + 0.3
