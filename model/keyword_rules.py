"""Keyword rules built from data: phrases whose prompts are easier / harder on EVERY family they occur in.

    python -m model.keyword_rules      # prints the rules + evidence; writes bench/results/keyword_rules.json

A candidate phrase (``CANDIDATES``, matched on word boundaries, case-insensitive, as the router matches it)
becomes a ``high`` rule when, on every training family where it occurs in at least ``MIN_SUPPORT``
prompts, the share of those prompts that the small tier fails is at least ``MIN_LIFT`` above that
family's base rate, it occurs with that support in families of at least ``MIN_FAMILIES`` different
datasets (the three MMLU-Pro families count as one: a cue of MMLU-Pro's question style is not a cue of
difficulty - measured, "explain", "why", "most likely" passed within MMLU-Pro and then hurt on
TruthfulQA, GSM8K and MMLU), and on no family
where it fires at least ``MIN_CONTRA`` times does it point the other way (this is what drops "define":
easier on MMLU-Pro, harder on MATH, where "Define $f(x)$ ..." opens competition problems); ``low``
likewise with the share below the base rate. Candidates are ranked by their weakest family's lift, so
a kept rule is explained by a small table: per family, how often it fires and how much harder (or
easier) its prompts are. ``model.lofo`` evaluates rules mined without the evaluated family.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from model.data import REPO

MIN_SUPPORT = 15
MIN_CONTRA = 5  # on a family where it fires this often, a rule must not point the other way at all
MIN_FAMILIES = 2
MIN_LIFT = 0.10
MAX_RULES = 12
# Candidate phrases: the old defaults plus task-type cues, written down before looking at outcomes;
# the data decides which of them stay, and as low or high. (Mining free n-grams instead found only
# topic words - "home", "boy", "tract" - that no one could defend as a rule.)
CANDIDATES: tuple[str, ...] = (
    # old defaults
    "sum", "summari[sz]e", "summary", "list", "define", "definition", "translate", "what is", "who is", "name",
    "spell", "convert", "classify", "extract", "rewrite", "tl;dr", "prove", "proof", "derive", "derivation",
    "explain why", "theorem", "lemma", "optimi[sz]e", "step by step", "design", "architect", "analy[sz]e",
    "complexity of", "implement", "refactor", "debug", "formal", "rigorous",
    # task-type cues
    "show that", "explain", "why", "describe", "discuss", "difference between", "known as", "meaning",
    "called", "term", "example", "according to", "which of the following", "best describes", "most likely",
    "true", "false", "statement", "calculate", "compute", "find", "determine", "evaluate", "simplify",
    "estimate", "approximately", "how many", "how much", "solve", "equation", "integral", "probability",
    "polynomial", "positive integers", "real numbers", "integer", "prime", "remainder", "digits", "matrix",
    "triangle", "circle", "suppose", "let", "percent", "total", "cost", "python", "function", "code",
    "algorithm", "string", "return", "for i in", "while",
)


def matcher(phrase: str) -> re.Pattern[str]:
    """The router's own matching (word boundaries, case-insensitive, [..] classes)."""
    from functions.router.classifiers.keyword import _compile

    return _compile([phrase])


def evidence(texts: Sequence[str], fams: Sequence[str] | np.ndarray, hard: Sequence[int] | np.ndarray,
             candidates: Sequence[str] = CANDIDATES) -> dict[str, dict[str, dict[str, float]]]:
    """Per candidate and family: prompts it fires on, their small-tier failure share, lift over base."""
    fam_arr = np.asarray(fams)
    hard_arr = np.asarray(hard, dtype=float)
    base = {f: float(hard_arr[fam_arr == f].mean()) for f in np.unique(fam_arr)}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for ph in candidates:
        rx = matcher(ph)
        hit = np.array([bool(rx.search(t)) for t in texts])
        ev = {}
        for f in base:
            sel = hit & (fam_arr == f)
            n = int(sel.sum())
            if n:
                h = float(hard_arr[sel].mean())
                ev[f] = {"n": n, "hard": round(h, 3), "base": round(base[f], 3), "lift": round(h - base[f], 3)}
        out[ph] = ev
    return out


# The defaults before issue 13 (hand-written). Each is kept only if no family contradicts it.
OLD_LOW: tuple[str, ...] = ("sum", "summarise", "summarize", "summary", "list", "define", "definition", "translate",
                            "what is", "who is", "name", "spell", "convert", "classify", "extract", "rewrite", "tl;dr")
OLD_HIGH: tuple[str, ...] = ("prove", "proof", "derive", "derivation", "explain why", "theorem", "lemma",
                             "optimi[sz]e", "step by step", "design", "architect", "analy[sz]e", "complexity of",
                             "implement", "refactor", "debug", "formal", "rigorous")


def source(family: str) -> str:
    """The dataset a family comes from: the three MMLU-Pro families count as one."""
    return family.split(":")[0]


def _contradicted(ev: dict[str, dict[str, float]], cls: str) -> bool:
    sign = 1 if cls == "high" else -1
    return any(e["n"] >= MIN_CONTRA and sign * e["lift"] <= 0 for e in ev.values())


def mine(texts: Sequence[str], fams: Sequence[str] | np.ndarray, hard: Sequence[int] | np.ndarray,
         old: dict[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """Rules + per-family evidence from (text, family, small-tier-failed) triples.

    Old rules (``old``, default: the previous defaults) stay unless some family contradicts them (fires
    ``MIN_CONTRA`` times there with no lift, or the opposite one); candidates become new rules when they
    pass the stricter test in the module docstring.
    """
    old = {"low": OLD_LOW, "high": OLD_HIGH} if old is None else old
    cand = tuple(dict.fromkeys([*CANDIDATES, *old["low"], *old["high"]]))
    ev_all = evidence(texts, fams, hard, cand)
    cands: dict[str, list[tuple[float, str]]] = {"low": [], "high": []}
    for ph, ev in ev_all.items():
        lifts = [e["lift"] for e in ev.values() if e["n"] >= MIN_SUPPORT]
        if len({source(f) for f, e in ev.items() if e["n"] >= MIN_SUPPORT}) < MIN_FAMILIES:
            continue
        if min(lifts) >= MIN_LIFT and not _contradicted(ev, "high"):
            cands["high"].append((min(lifts), ph))
        elif max(lifts) <= -MIN_LIFT and not _contradicted(ev, "low"):
            cands["low"].append((-max(lifts), ph))
    out: dict[str, Any] = {"low": [], "high": [], "evidence": {}, "dropped": {}}
    mined = {cls: [ph for _, ph in sorted(cands[cls], key=lambda c: (-c[0], c[1]))][:MAX_RULES] for cls in cands}
    for cls in ("low", "high"):
        other = "high" if cls == "low" else "low"
        kept = []
        for ph in old[cls]:
            if _contradicted(ev_all[ph], cls) or ph in mined[other]:
                out["dropped"][ph] = {"class": cls, "families": ev_all[ph]}
            else:
                kept.append(ph)
        out[cls] = list(dict.fromkeys([*kept, *mined[cls]]))
        for ph in out[cls]:
            out["evidence"][ph] = {"class": cls, "families": ev_all[ph],
                                   "origin": "old, not contradicted" if ph in kept else "mined"}
    return out


def main() -> int:
    from model.data import SharedDataMissing
    from model.families import TRAIN_FAMILIES, all_prompts

    try:
        ps = [p for p in all_prompts() if p.family in TRAIN_FAMILIES]
    except (SharedDataMissing, FileNotFoundError) as e:
        print(f"needs ../shared: {e}", file=sys.stderr)
        return 2
    r = mine([p.text for p in ps], [p.family for p in ps], [p.hard for p in ps])
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "keyword_rules.json").write_text(json.dumps(r, indent=1) + "\n")
    for cls in ("low", "high"):
        print(cls)
        for ph in r[cls]:
            ev = r["evidence"][ph]["families"]
            print(f"  {ph!r:28} {r['evidence'][ph]['origin']:22} "
                  + "  ".join(f"{f}:{e['n']}/{e['lift']:+.2f}" for f, e in ev.items()))
    print("dropped")
    for ph, d in r["dropped"].items():
        print(f"  {d['class']}:{ph!r:24} " + "  ".join(f"{f}:{e['n']}/{e['lift']:+.2f}" for f, e in d["families"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
