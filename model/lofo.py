"""Leave-one-family-out evaluation: how each router does on a task family it never saw.

    python -m model.lofo            # writes bench/results/lofo.{json,md,png}; needs ../shared

For each family (see ``model.families``) and each router, on that family's prompts:

* AUROC of P(not low) = p_medium + p_high against "the small tier failed" (label != low);
* APGR: prompts are sent to the family's strong model in order of P(not low), the rest to its weak
  model; PGR(c) = (accuracy - weak) / (strong - weak) with a share c of prompts on the strong model,
  averaged over c in [0, 1] (RouteLLM's APGR). Ties are split evenly (the expectation under random
  tie-breaking), so a router that says the same for every prompt scores exactly the random line 0.5.
  The oracle sends exactly the prompts the weak model fails and the strong one solves first.
* 95% bootstrap CIs (prompts resampled, 200 draws, seeded).

Routers: the shipped artifact before this change (front-truncated, MMLU-Pro only), the keyword rules
(old defaults and the data-built ones), hybrid (keyword hit decides, else the semantic model), and the
new multi-family head. The new head is trained without the evaluated family (leave-one-family-out);
the two evaluation-only families are never trained on.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.data import LABELS, REPO

OUT = REPO / "bench" / "results"
WORK = REPO / "model" / "work"
BOOT = 200
# The keyword defaults before issue 13 (pickspin/config.py), kept to report the old hybrid.
OLD_RULES: dict[str, list[str]] = {
    "low": ["sum", "summarise", "summarize", "summary", "list", "define", "definition", "translate",
            "what is", "who is", "name", "spell", "convert", "classify", "extract", "rewrite", "tl;dr"],
    "high": ["prove", "proof", "derive", "derivation", "explain why", "theorem", "lemma", "optimi[sz]e",
             "step by step", "design", "architect", "analy[sz]e", "complexity of", "implement",
             "refactor", "debug", "formal", "rigorous"],
}


# -- metrics -----------------------------------------------------------------------------------

def auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count one half)."""
    y = np.asarray(y).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ss = np.asarray(s)[order]
    ranks = np.empty(len(ss))
    i = 0
    while i < len(ss):  # average ranks over ties
        j = i
        while j + 1 < len(ss) and ss[j + 1] == ss[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(ss))
    r[order] = ranks
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def pgr_curve(s: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """Accuracy with the top-k prompts (by ``s``) on the strong model, k = 0..n; ties split evenly."""
    s = np.asarray(s, dtype=float)
    gain = np.asarray(strong, dtype=float) - np.asarray(weak, dtype=float)
    order = np.argsort(-s, kind="mergesort")
    ss, g = s[order], gain[order]
    # replace each tie group's gains by their mean: the expected cumulative gain under random order
    _, start, cnt = np.unique(-ss, return_index=True, return_counts=True)
    sums = np.add.reduceat(g, start)
    g = np.repeat(sums / cnt, cnt)
    return (float(np.sum(weak)) + np.concatenate([[0.0], np.cumsum(g)])) / len(s)


def apgr(s: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> float:
    acc = pgr_curve(s, weak, strong)
    lo, hi = float(np.mean(weak)), float(np.mean(strong))
    if hi - lo <= 1e-9:
        return float("nan")
    pgr = (acc - lo) / (hi - lo)
    return float(np.trapezoid(pgr, dx=1.0 / (len(pgr) - 1)))


def with_ci(fn: Callable[..., float], *arrays: np.ndarray, seed: int = 13, boot: int = BOOT) -> dict[str, float]:
    n = len(arrays[0])
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(boot):
        idx = rng.integers(0, n, n)
        v = fn(*(a[idx] for a in arrays))
        if not np.isnan(v):
            vals.append(v)
    est = fn(*arrays)
    lo, hi = (np.percentile(vals, [2.5, 97.5]) if vals else (float("nan"), float("nan")))
    return {"value": round(est, 4), "lo": round(float(lo), 4), "hi": round(float(hi), 4)}


def not_low(probs: np.ndarray) -> np.ndarray:
    return 1.0 - probs[:, LABELS.index("low")]


# -- routers -----------------------------------------------------------------------------------

def artifact_probs(model_dir: Path, texts: Sequence[str], tag: str) -> np.ndarray:
    """Class probabilities from an artifact through the serving code (one prompt per call, 1 thread)."""
    import hashlib

    from functions.scorer.engine import ComplexityModel

    m = ComplexityModel(model_dir, threads=1)
    h = hashlib.sha256(("\n".join(texts) + m.version).encode()).hexdigest()[:12]
    cache = WORK / f"probs-{tag}-{h}.npy"
    if cache.is_file():
        return np.load(cache)
    out = np.zeros((len(texts), len(LABELS)))
    # one prompt per call, as the router scores them (no batch-mates moving int8 activation scales)
    from tqdm import tqdm
    for i, t in enumerate(tqdm(texts, desc=tag, mininterval=10)):
        p = m.predict([t])[0]
        out[i] = [p.probs[c] for c in LABELS]
    WORK.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def keyword_estimates(texts: Sequence[str], rules: Any) -> tuple[np.ndarray, np.ndarray]:
    """Keyword probabilities and whether a hybrid router would let the keyword decide."""
    from functions.router.classifiers.keyword import KeywordClassifier

    kw = KeywordClassifier(rules)
    probs = np.zeros((len(texts), len(LABELS)))
    dec = np.zeros(len(texts), dtype=bool)
    for i, t in enumerate(texts):
        e = kw.classify(t)
        probs[i] = [e.probs[c] for c in LABELS]
        dec[i] = _decides(e)
    return probs, dec


def _decides(est: Any) -> bool:
    from functions.router.classifiers.hybrid import MIN_KEYWORD_CONFIDENCE

    return est.rule is not None and not est.detail.get("conflict") and est.confidence >= MIN_KEYWORD_CONFIDENCE


def hybrid_probs(texts: Sequence[str], rules: Any, sem: np.ndarray) -> np.ndarray:
    """The router's own HybridClassifier over precomputed semantic probabilities (one per text)."""
    from functions.router.classifiers.hybrid import HybridClassifier
    from functions.router.classifiers.keyword import KeywordClassifier
    from functions.router.classifiers.remote import ScorerResult
    from functions.router.classifiers.semantic import SemanticClassifier

    class Fixed:
        where = "precomputed"
        row = np.zeros(len(LABELS))

        def score(self, text: str) -> ScorerResult:
            probs = {c: float(v) for c, v in zip(LABELS, self.row, strict=True)}
            return ScorerResult(max(probs, key=lambda c: probs[c]), probs, "eval")

    kw = KeywordClassifier(rules)
    scorer = Fixed()
    h = HybridClassifier(kw, SemanticClassifier(scorer, kw))
    out = np.zeros((len(texts), len(LABELS)))
    for i, t in enumerate(texts):
        scorer.row = sem[i]
        e = h.classify(t)
        out[i] = [e.probs[c] for c in LABELS]
    return out


# -- evaluation --------------------------------------------------------------------------------

def evaluate(families: Sequence[str], fam: np.ndarray, y: np.ndarray, weak: np.ndarray, strong: np.ndarray,
             scores: Mapping[str, np.ndarray]) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for f in families:
        sel = fam == f
        yy, ww, st = y[sel], weak[sel], strong[sel]
        r: dict[str, Any] = {"n": int(sel.sum()), "share_not_low": round(float(yy.mean()), 4),
                             "weak_acc": round(float(ww.mean()), 4), "strong_acc": round(float(st.mean()), 4),
                             "oracle_apgr": round(apgr(st - ww, ww, st), 4), "routers": {}}
        for name, s in scores.items():
            ss = s[sel]
            r["routers"][name] = {"auroc": with_ci(auroc, yy, ss), "apgr": with_ci(apgr, ss, ww, st)}
        res[f] = r
    return res


def lofo_rules(texts: Sequence[str], fam: np.ndarray, y: np.ndarray, train_fams: Sequence[str],
               ) -> tuple[list[Any], dict[str, Any]]:
    """Per prompt, the KeywordRules mined without its family (``model.keyword_rules``), same settings as
    the shipped defaults otherwise."""
    from model.keyword_rules import all_phrases, hit_matrix, mine
    from pickspin.config import KeywordRules

    hits = hit_matrix(texts, all_phrases())

    rules: list[Any] = [None] * len(fam)
    is_train = np.isin(fam, list(train_fams))
    used: dict[str, Any] = {}
    for f in [*train_fams, None]:
        tr = is_train & (fam != f) if f is not None else is_train
        te = np.where(fam == f if f is not None else ~is_train)[0]
        idx = np.where(tr)[0]
        r = mine([texts[i] for i in idx], fam[idx], y[idx], hits={k: v[idx] for k, v in hits.items()})
        used[f or "eval-only"] = {"low": r["low"], "high": r["high"]}
        kr = KeywordRules(low=r["low"], high=r["high"])
        for i in te:
            rules[i] = kr
    return rules, used


def per_rules(texts: Sequence[str], rules: Sequence[Any], fn: Callable[..., np.ndarray], *arrays: np.ndarray) -> np.ndarray:
    """Apply ``fn(texts, rules, *arrays)`` group-wise for prompts sharing one rule set."""
    out = np.zeros((len(texts), len(LABELS)))
    for kr in {id(r): r for r in rules}.values():
        idx = [i for i, r in enumerate(rules) if r is kr]
        out[idx] = fn([texts[i] for i in idx], kr, *(a[idx] for a in arrays))
    return out


def lofo_new(emb: np.ndarray, loglen: np.ndarray, fam: np.ndarray, ylab: np.ndarray,
             train_fams: Sequence[str]) -> np.ndarray:
    """Probabilities of the multi-family router (``model.heads``), each family predicted by a router
    trained without it; the evaluation-only families by the router trained on all training families."""
    from model.heads import family_weights, fit_head, fit_router

    memo: dict[tuple[str, ...], Any] = {}

    def fit(keep: tuple[str, ...]) -> Any:  # the same rows in the same order as fit_router's own fit
        if keep not in memo:
            tr = np.isin(fam, keep)
            memo[keep] = fit_head(emb[tr], ylab[tr], weights=family_weights(fam[tr]), fam=fam[tr])
        return memo[keep]

    probs = np.zeros((len(fam), len(LABELS)))
    is_train = np.isin(fam, list(train_fams))
    for f in [*train_fams, None]:
        tr = is_train & (fam != f) if f is not None else is_train
        te = fam == f if f is not None else ~is_train
        r = fit_router(emb[tr], loglen[tr], fam[tr], ylab[tr], fit)
        probs[te] = r.predict_proba(emb[te], loglen[te])
    return probs


def lofo_new_cached(emb: np.ndarray, texts: Sequence[str], window: str, layer: int, fam: np.ndarray,
                    ylab: np.ndarray, train_fams: Sequence[str], length: str = "window") -> np.ndarray:
    """``lofo_new`` for one (window, layer), cached in model/work/ (a fit takes minutes on 2 busy cores)."""
    import hashlib

    from model.heads import window_loglen

    key = hashlib.sha256(emb.tobytes()[:4_000_000] + ylab.tobytes() + "\n".join(train_fams).encode()).hexdigest()[:10]
    cache = WORK / f"probs-new-lofo-{window}-l{layer}{'-plen' if length == 'prompt' else ''}-{key}.npy"
    if cache.is_file():
        return np.load(cache)
    probs = lofo_new(emb, window_loglen(texts, window, length), fam, ylab, train_fams)
    WORK.mkdir(parents=True, exist_ok=True)
    np.save(cache, probs)
    return probs


def markdown(res: Mapping[str, Any], routers: Sequence[str]) -> str:
    def cell(d: Mapping[str, float]) -> str:
        return f"{d['value']:.3f} [{d['lo']:.2f}, {d['hi']:.2f}]"

    lines = ["| family | n | not-low share | " + " | ".join(routers) + " |",
             "|---|---:|---:|" + "---:|" * len(routers)]
    for f, r in res.items():
        lines.append(f"| {f} | {r['n']} | {r['share_not_low']:.2f} | "
                     + " | ".join(cell(r["routers"][k]["auroc"]) for k in routers) + " |")
    mean = {k: np.mean([r["routers"][k]["auroc"]["value"] for r in res.values()]) for k in routers}
    lines.append("| **mean** | | | " + " | ".join(f"**{mean[k]:.3f}**" for k in routers) + " |")
    lines += ["", "APGR (random 0.500; oracle and the weak/strong accuracies per family):", "",
              "| family | weak → strong acc | oracle | " + " | ".join(routers) + " |",
              "|---|---|---:|" + "---:|" * len(routers)]
    for f, r in res.items():
        lines.append(f"| {f} | {r['weak_acc']:.2f} → {r['strong_acc']:.2f} | {r['oracle_apgr']:.3f} | "
                     + " | ".join(cell(r["routers"][k]["apgr"]) for k in routers) + " |")
    fin = {k: [r["routers"][k]["apgr"]["value"] for r in res.values()
               if not np.isnan(r["routers"][k]["apgr"]["value"])] for k in routers}
    lines.append("| **mean** | | | " + " | ".join(f"**{np.mean(fin[k]):.3f}**" for k in routers) + " |")
    return "\n".join(lines) + "\n"


def plot(res: Mapping[str, Any], routers: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fams = list(res)
    fig, ax = plt.subplots(figsize=(11, 4.2))
    w = 0.8 / len(routers)
    for j, k in enumerate(routers):
        v = np.array([res[f]["routers"][k]["auroc"]["value"] for f in fams])
        lo = np.array([res[f]["routers"][k]["auroc"]["lo"] for f in fams])
        hi = np.array([res[f]["routers"][k]["auroc"]["hi"] for f in fams])
        x = np.arange(len(fams)) + (j - (len(routers) - 1) / 2) * w
        ax.bar(x, v - 0.5, w, bottom=0.5, label=k, yerr=[v - lo, hi - v], capsize=2)
    ax.axhline(0.5, color="k", lw=0.8, ls="--", label="random")
    ax.set_xticks(np.arange(len(fams)), fams, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("AUROC of P(not low) vs small tier fails")
    ax.set_title("Leave-one-family-out (each family unseen by the new head); 95% bootstrap CI")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def test_split_mask(prompts: Sequence[Any]) -> np.ndarray:
    """MMLU-Pro families are scored on the previous artifact's held-out test split only (it was trained
    on the rest), so that every router is compared on prompts none of them trained on."""
    from model.data import load_questions, split

    test_ids = {f"mmlu_pro/{q.qid}" for q in split(load_questions())["test"]}
    return np.array([not q.family.startswith("mmlu_pro") or q.key in test_ids for q in prompts])


def sweep(configs: Sequence[tuple[str, int, str]]) -> int:
    """Leave-one-family-out AUROC / APGR of the new head for every (window, layer): the quality side of
    the latency trade-off (bench/bench_latency.py is the other side). Writes bench/results/lofo_sweep.*"""
    from model.families import EVAL_ONLY_FAMILIES, TRAIN_FAMILIES, all_prompts
    from model.heads import embed_windows, window_loglen

    prompts = all_prompts()
    texts = [q.text for q in prompts]
    fam = np.array([q.family for q in prompts])
    y = np.array([q.hard for q in prompts])
    ylab = np.array([q.label_id for q in prompts])
    weak = np.array([q.weak for q in prompts], dtype=float)
    strong = np.array([q.strong for q in prompts], dtype=float)
    families = [*TRAIN_FAMILIES, *EVAL_ONLY_FAMILIES]
    windows = list(dict.fromkeys(w for w, _, _ in configs))
    emb = embed_windows(prompts, windows)
    scores = {}
    for w in windows:
        scores[f"{w} / window length only"] = window_loglen(texts, w)
    scores["prompt length only"] = window_loglen(texts, windows[0], "prompt")
    for w, k, length in configs:
        t0 = time.time()
        name = f"{w} / l{k}" + (" / prompt length" if length == "prompt" else "")
        scores[name] = not_low(lofo_new_cached(emb[w][f"l{k}"], texts, w, k, fam, ylab, TRAIN_FAMILIES, length))
        print(f"{name}: {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    keep = test_split_mask(prompts)
    res = evaluate(families, fam[keep], y[keep], weak[keep], strong[keep], {k: v[keep] for k, v in scores.items()})
    rows = list(scores)
    lines = ["| window / encoder layers | " + " | ".join(families) + " | mean AUROC | mean APGR |",
             "|---|" + "---:|" * (len(families) + 2)]
    summary = {}
    for r in rows:
        au = [res[f]["routers"][r]["auroc"] for f in families]
        ap = [res[f]["routers"][r]["apgr"]["value"] for f in families]
        m_au, m_ap = float(np.mean([a["value"] for a in au])), float(np.nanmean(ap))
        summary[r] = {"mean_auroc": round(m_au, 4), "mean_apgr": round(m_ap, 4)}
        lines.append(f"| {r} | " + " | ".join(f"{a['value']:.3f} [{a['lo']:.2f}, {a['hi']:.2f}]" for a in au)
                     + f" | **{m_au:.3f}** | {m_ap:.3f} |")
    md = "\n".join(lines) + "\n"
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "lofo_sweep.md").write_text(md)
    (OUT / "lofo_sweep.json").write_text(json.dumps({"summary": summary, "families": res}, indent=1) + "\n")
    print(md)
    return 0


def _shipped_config() -> dict[str, Any]:
    """window / layer / length the shipped artifact was built with (model.heads build's training.json)."""
    p = REPO / "model" / "artifacts" / "complexity-minilm" / "training.json"
    try:
        return dict(json.loads(p.read_text()))
    except (OSError, ValueError):
        return {}


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m model.lofo")
    shipped = _shipped_config()
    p.add_argument("--window", default=shipped.get("window", "head32"), help="default: the shipped artifact's")
    p.add_argument("--layer", type=int, default=int(shipped.get("layer", 4)))
    p.add_argument("--length", default=shipped.get("length", "window"), choices=("window", "prompt"))
    p.add_argument("--new-artifact", type=Path, default=None,
                   help="also score this artifact dir through the serving code (in-sample for trained families)")
    p.add_argument("--sweep", default=None, metavar="CONFIGS",
                   help="comma-separated window/layer pairs (head32/4,w64/2): only the new head's LOFO for each")
    a = p.parse_args(argv)
    from model.data import SharedDataMissing
    from model.families import EVAL_ONLY_FAMILIES, TRAIN_FAMILIES, all_prompts
    from model.heads import embed_windows
    from pickspin.config import KeywordRules

    try:
        prompts = all_prompts()
    except (SharedDataMissing, FileNotFoundError) as e:
        print(f"needs ../shared: {e}", file=sys.stderr)
        return 2
    if a.sweep:
        return sweep([(c.split("/")[0], int(c.split("/")[1]), [*c.split("/"), "window"][2])
                      for c in a.sweep.split(",")])
    texts = [q.text for q in prompts]
    fam = np.array([q.family for q in prompts])
    y = np.array([q.hard for q in prompts])
    ylab = np.array([q.label_id for q in prompts])
    weak = np.array([q.weak for q in prompts], dtype=float)
    strong = np.array([q.strong for q in prompts], dtype=float)
    families = [*TRAIN_FAMILIES, *EVAL_ONLY_FAMILIES]

    old = artifact_probs(WORK / "old-artifact", texts, "old")
    emb = embed_windows(prompts, [a.window])[a.window]
    new = lofo_new_cached(emb[f"l{a.layer}"], texts, a.window, a.layer, fam, ylab, TRAIN_FAMILIES, a.length)
    old_rules = KeywordRules(low=OLD_RULES["low"], high=OLD_RULES["high"], hit_confidence=0.85)
    new_rules = KeywordRules()
    scores: dict[str, np.ndarray] = {"old artifact": not_low(old)}
    scores["old keyword"] = not_low(keyword_estimates(texts, old_rules)[0])
    scores["old hybrid"] = not_low(hybrid_probs(texts, old_rules, old))
    lofo_kr, used_rules = lofo_rules(texts, fam, y, TRAIN_FAMILIES)
    scores["new (LOFO)"] = not_low(new)
    scores["new keyword (LOFO)"] = not_low(per_rules(texts, lofo_kr, lambda t, r: keyword_estimates(t, r)[0]))
    scores["new hybrid (LOFO)"] = not_low(per_rules(texts, lofo_kr, hybrid_probs, new))
    scores["new keyword (shipped rules)"] = not_low(keyword_estimates(texts, new_rules)[0])
    if a.new_artifact:
        scores["new artifact (int8, in-sample)"] = not_low(artifact_probs(a.new_artifact, texts, "new"))
    keep = test_split_mask(prompts)
    res = evaluate(families, fam[keep], y[keep], weak[keep], strong[keep], {k: v[keep] for k, v in scores.items()})
    routers = list(scores)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "lofo.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()},
                                               "families": res,
                                               "lofo_rules": used_rules}, indent=1) + "\n")
    md = markdown(res, routers)
    (OUT / "lofo.md").write_text(md)
    plot(res, routers, OUT / "lofo.png")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
