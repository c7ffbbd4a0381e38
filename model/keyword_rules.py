"""Keyword rules built from data: phrases whose prompts are easier / harder on EVERY family they occur in.

    python -m model.keyword_rules      # prints the rules + evidence; writes bench/results/keyword_rules.json

Every phrase (the old defaults and ``CANDIDATES``, matched as the router matches them: word boundaries,
case-insensitive) gets, per training family, the number of prompts it fires on and the *lift*: the share
of those prompts the small tier fails minus the family's base rate. A phrase is then one of:

* **checked** (kept, as ``high`` if its lift is positive, ``low`` if negative): on every family where it
  fires at least ``MIN_CONTRA`` times the lift has the same sign; it fires at least ``MIN_SUPPORT`` times
  in families of at least ``MIN_SOURCES`` different datasets (the three MMLU-Pro families count as one:
  a cue of one benchmark's style is not a cue of difficulty); and in each of those datasets its pooled
  lift is at least ``MIN_LIFT`` in that direction. This is a held-out-dataset check inside the training
  set: the direction learnt on one dataset must hold on another before the phrase may fire on a third.
* **untested** (an old default that fires fewer than ``MIN_CONTRA`` times on every family - "summarise",
  "refactor", "tl;dr": requests these benchmarks do not contain): kept as an intent cue, direction as
  written; on benchmark-style prompts it abstains.
* **one dataset** (consistent, but with evidence from a single dataset) and **contradicted** (the sign
  flips between families, or it has no lift): dropped. Measured: "define" looked easier on all three
  MMLU-Pro families and is harder on MATH ("Define $f(x)$ ..."); "prove", "proof", "design" looked harder
  on MMLU-Pro and are not on MMLU.

A prompt no rule fires on gets the neutral default (``KeywordRules.default_class``): the rules abstain
rather than guess. ``model.lofo`` evaluates rules mined without the evaluated family.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from model.data import REPO

MIN_SUPPORT = 15  # prompts a phrase must fire on in a dataset for that dataset to count as evidence
MIN_CONTRA = 5  # on a family where it fires this often, a rule must not point the other way at all
MIN_SOURCES = 2  # datasets with evidence in the rule's direction
MIN_LIFT = 0.05  # pooled lift per supporting dataset
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


def hit_matrix(texts: Sequence[str], candidates: Sequence[str]) -> dict[str, np.ndarray]:
    """Per phrase, whether it fires on each text (the router's matching)."""
    return {ph: np.array([bool(matcher(ph).search(t)) for t in texts], dtype=bool) for ph in candidates}


def all_phrases(old: dict[str, Sequence[str]] | None = None) -> tuple[str, ...]:
    old = {"low": OLD_LOW, "high": OLD_HIGH} if old is None else old
    return tuple(dict.fromkeys([*old["low"], *old["high"], *CANDIDATES]))


def evidence(texts: Sequence[str], fams: Sequence[str] | np.ndarray, hard: Sequence[int] | np.ndarray,
             candidates: Sequence[str] = CANDIDATES, hits: dict[str, np.ndarray] | None = None,
             ) -> dict[str, dict[str, dict[str, float]]]:
    """Per candidate and family: prompts it fires on, their small-tier failure share, lift over base.
    ``hits`` (from ``hit_matrix`` over the same texts) saves matching again."""
    fam_arr = np.asarray(fams)
    hard_arr = np.asarray(hard, dtype=float)
    base = {f: float(hard_arr[fam_arr == f].mean()) for f in np.unique(fam_arr)}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for ph in candidates:
        hit = hits[ph] if hits is not None else hit_matrix(texts, [ph])[ph]
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


def status(ev: dict[str, dict[str, float]]) -> tuple[str, str | None]:
    """(status, direction) of a phrase from its per-family evidence; see the module docstring."""
    tested = {f: e for f, e in ev.items() if e["n"] >= MIN_CONTRA}
    if not tested:
        return "untested", None
    signs = {np.sign(e["lift"]) for e in tested.values()}
    if len(signs) != 1 or 0 in signs:
        return "contradicted", None
    direction = "high" if signs == {1.0} else "low"
    sign = 1 if direction == "high" else -1
    by_source: dict[str, list[dict[str, float]]] = {}
    for f, e in tested.items():
        by_source.setdefault(source(f), []).append(e)
    strong = 0
    for es in by_source.values():
        n = sum(e["n"] for e in es)
        lift = sum(e["n"] * e["lift"] for e in es) / n
        if n >= MIN_SUPPORT and sign * lift >= MIN_LIFT:
            strong += 1
    return ("checked" if strong >= MIN_SOURCES else "one dataset"), direction


def mine(texts: Sequence[str], fams: Sequence[str] | np.ndarray, hard: Sequence[int] | np.ndarray,
         old: dict[str, Sequence[str]] | None = None, hits: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Rules + per-family evidence from (text, family, small-tier-failed) triples.

    Kept: ``checked`` phrases (old or candidate) in their measured direction, and ``untested`` old
    defaults in their written direction; everything else is listed under ``dropped`` with its evidence.
    """
    old = {"low": OLD_LOW, "high": OLD_HIGH} if old is None else old
    old_cls = {ph: cls for cls in ("low", "high") for ph in old[cls]}
    ev_all = evidence(texts, fams, hard, all_phrases(old), hits)
    out: dict[str, Any] = {"low": [], "high": [], "evidence": {}, "dropped": {}}
    checked: dict[str, list[tuple[float, str]]] = {"low": [], "high": []}
    for ph, ev in ev_all.items():
        st, direction = status(ev)
        if st == "checked" and direction is not None:
            n = sum(e["n"] for e in ev.values() if e["n"] >= MIN_CONTRA)
            lift = sum(e["n"] * e["lift"] for e in ev.values() if e["n"] >= MIN_CONTRA) / n
            checked[direction].append((abs(lift), ph))
        elif st == "untested" and ph in old_cls:
            out[old_cls[ph]].append(ph)
            out["evidence"][ph] = {"class": old_cls[ph], "families": ev, "status": st}
        elif ev:
            out["dropped"][ph] = {"class": old_cls.get(ph, direction), "families": ev, "status": st}
    for cls in ("low", "high"):
        for _, ph in sorted(checked[cls], key=lambda c: (-c[0], c[1]))[:MAX_RULES]:
            out[cls].append(ph)
            out["evidence"][ph] = {"class": cls, "families": ev_all[ph], "status": "checked"}
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
            print(f"  {ph!r:28} {r['evidence'][ph]['status']:12} "
                  + "  ".join(f"{f}:{e['n']}/{e['lift']:+.2f}" for f, e in ev.items()))
    print("dropped")
    for ph, d in r["dropped"].items():
        print(f"  {d['class']}:{ph!r:24} {d['status']:12} " + "  ".join(f"{f}:{e['n']}/{e['lift']:+.2f}" for f, e in d["families"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
