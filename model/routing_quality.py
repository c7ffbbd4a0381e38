"""Routing quality on real outcomes: route held-out MMLU-Pro questions among a real model trio.

    python -m model.routing_quality          # writes bench/results/routing_quality.{md,json,png}

Each held-out (test-split) question is classified (keyword, semantic = the shipped ONNX model,
hybrid, or the true label as an upper bound), ranked by the router's own Eq. 2 scorer
(``functions.router.scoring.rank``) under a profile, and scored with the chosen model's real
0/1 outcome from the MMLU-Pro matrix. Needs ../shared.

Stated models (all in the output):
* capability[x][k] = model x's accuracy on TRAIN-split questions of class k (data, not guesses);
* cost = price per 1K tokens proportional to active parameters (decode FLOPs/token ~ 2 N_active):
  $0.002 per billion active parameters per 1K tokens; tokens = prompt tokens + 256 answer tokens;
* latency prior (the T term, no load): 0.5 s / 1.0 s / 2.5 s for small / medium / large.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.data import LABELS, REPO, Question, SharedDataMissing, load_questions, split

TRIOS: dict[str, tuple[str, str, str]] = {
    "Mistral-7B / Mixtral-8x7B / Llama-3.1-70B": (
        "Mistral-7B-Instruct-v0.2", "Mixtral-8x7B-Instruct-v0.1", "Meta-Llama-3_1-70B-Instruct"),
    "Llama-3.1-8B / Mixtral-8x7B / Llama-3.1-70B": (
        "Meta-Llama-3_1-8B-Instruct", "Mixtral-8x7B-Instruct-v0.1", "Meta-Llama-3_1-70B-Instruct"),
}
ACTIVE_B = {"Mistral-7B-Instruct-v0.2": 7.2, "Meta-Llama-3_1-8B-Instruct": 8.0,
            "Mixtral-8x7B-Instruct-v0.1": 12.9, "Meta-Llama-3_1-70B-Instruct": 70.6}
PRICE_PER_B_PER_1K = 0.002
ANSWER_TOKENS = 256
LATENCY_S = {"small": 0.5, "medium": 1.0, "large": 2.5}
TIERS = ("small", "medium", "large")
OUT_DIR = REPO / "bench" / "results"


@dataclass
class Policy:
    name: str
    choice: np.ndarray  # index into the trio per question


def capabilities(train: Sequence[Question], trio: Sequence[str]) -> dict[str, dict[str, float]]:
    caps: dict[str, dict[str, float]] = {}
    for m in trio:
        caps[m] = {}
        for lab in LABELS:
            vals = [float(v) for q in train if q.label == lab and (v := q.outcomes[m]) is not None]
            caps[m][lab] = round(float(np.mean(vals)), 4) if vals else 0.0
    return caps


def build_matrix(trio: Sequence[str], caps: Mapping[str, Mapping[str, float]]) -> Any:
    from pickspin.config import parse_config

    models = []
    for tier, m in zip(TIERS, trio, strict=True):
        slug = m.lower().replace("_", "-").replace(".", "-")
        models.append({"name": slug, "tier": tier, "capability": dict(caps[m]),
                       "cost": {"per_1k_tokens": PRICE_PER_B_PER_1K * ACTIVE_B[m]},
                       "backends": [{"name": f"{slug}-b", "url": "http://127.0.0.1:9", "served_model_name": m,
                                     "expected_latency_s": LATENCY_S[tier]}]})
    return parse_config({"models": models})


def route(matrix: Any, probs: np.ndarray, profile: Any) -> np.ndarray:
    """The router's own Eq. 2 ranking, per question, with an idle healthy snapshot."""
    from functions.router.classifiers.base import Estimate
    from functions.router.scoring import Candidate, rank
    from functions.router.telemetry import BackendStats

    cands = [Candidate(m, b) for m in matrix.models for b in m.backends]
    snap = {c.backend.name: BackendStats(True, 0, c.backend.expected_latency_s, None, 0.0, 0, 0.0) for c in cands}
    names = [m.name for m in matrix.models]
    out = np.zeros(len(probs), dtype=np.int64)
    cache: dict[tuple[float, ...], int] = {}
    for i, p in enumerate(probs):
        key = tuple(np.round(p, 4))
        if key not in cache:
            est = Estimate(LABELS[int(np.argmax(p))], dict(zip(LABELS, map(float, p), strict=True)),
                           float(np.max(p)), "eval")
            cache[key] = names.index(rank(cands, snap, est, profile)[0].model)
        out[i] = cache[key]
    return out


def evaluate_choice(choice: np.ndarray, correct: np.ndarray, cost: np.ndarray) -> tuple[float, float]:
    idx = np.arange(len(choice))
    return float(correct[idx, choice].mean()), float(cost[idx, choice].mean())


def vector_route(matrix: Any, probs: np.ndarray, profile: Any) -> np.ndarray:
    """Eq. 2 in numpy for an idle snapshot (same maths and tie-break as ``rank``; checked against it)."""
    w_r, w_t, w_c = profile.weights()
    caps = np.array([[m.capability.of(k) for k in LABELS] for m in matrix.models])
    lat = np.array([m.backends[0].expected_latency_s for m in matrix.models])
    cost = np.array([m.cost.value for m in matrix.models])

    def hat(v: np.ndarray) -> np.ndarray:
        span = v.max() - v.min()
        return np.asarray(1.0 - ((v - v.min()) / span if span > 1e-12 else np.zeros_like(v)))

    score = w_r * probs @ caps.T + w_t * hat(lat)[None, :] + w_c * hat(cost)[None, :]
    score = np.round(score, 9) - 1e-12 * np.argsort(np.argsort(cost))[None, :]  # ties: cheaper first
    return np.asarray(score.argmax(1))


def envelope_apgr(points: list[tuple[float, float]], c_small: float, c_large: float, a_small: float,
                  a_large: float) -> float:
    """Area under PGR over normalised cost in [0, 1]: at each cost, the best PGR reachable by one of the
    router's operating points or by randomising between two of them (linear interpolation), starting
    from always-small at (0, 0). Random small/large mixing scores 0.5 on this scale."""
    grid = np.linspace(0, 1, 1001)
    pts = sorted(((c - c_small) / (c_large - c_small), (a - a_small) / (a_large - a_small)) for c, a in points)
    pts = [(0.0, 0.0), *pts]
    best = np.full_like(grid, -np.inf)
    for x, y in pts:
        best = np.where(grid >= x - 1e-12, np.maximum(best, y), best)
    for i, (x1, y1) in enumerate(pts):
        for x2, y2 in pts[i + 1:]:
            if x2 - x1 > 1e-12:
                sel = (grid >= x1) & (grid <= x2)
                best[sel] = np.maximum(best[sel], y1 + (y2 - y1) * (grid[sel] - x1) / (x2 - x1))
    return float(np.mean(np.clip(best, 0.0, None)))


def cost_at_95(points: list[tuple[float, float]], a_large: float, c_small: float, a_small: float) -> float | None:
    """Cheapest cost reaching 95% of always-large accuracy, allowing randomisation between two points."""
    target = 0.95 * a_large
    pts = [(c_small, a_small), *points]
    best = min((c for c, a in pts if a >= target), default=None)
    for c1, a1 in pts:
        for c2, a2 in pts:
            if a1 < target <= a2 and c2 > c1:
                c = c1 + (c2 - c1) * (target - a1) / (a2 - a1)
                best = c if best is None else min(best, c)
    return best


def run(args: argparse.Namespace) -> dict[str, Any]:
    from functions.router.classifiers.keyword import KeywordClassifier
    from functions.scorer.engine import ComplexityModel
    from pickspin.config import PAPER_PROFILES, KeywordRules, Profile

    qs = load_questions()
    meta = json.loads((Path(args.model_dir) / "training.json").read_text()) \
        if (Path(args.model_dir) / "training.json").is_file() else {}
    seed = int(meta.get("split", {}).get("seed", 13))
    parts = split(qs, seed=seed)
    train, test = parts["train"], parts["test"]
    model = ComplexityModel(args.model_dir, threads=args.threads)
    texts = [q.text for q in test]
    sem = np.zeros((len(texts), len(LABELS)))
    ntok = np.zeros(len(texts))
    for i, t in enumerate(texts):  # one prompt per call, as the router classifies
        p = model.predict([t])[0]
        sem[i] = [p.probs[k] for k in LABELS]
        ntok[i] = p.tokens
    kwc = KeywordClassifier(KeywordRules())
    kw_est = [kwc.classify(t) for t in texts]
    kw = np.array([[e.probs[k] for k in LABELS] for e in kw_est])
    kw_decides = np.array([e.rule is not None and not e.detail.get("conflict") and e.confidence >= 0.8
                           for e in kw_est])
    hyb = np.where(kw_decides[:, None], kw, sem)
    true = np.eye(len(LABELS))[[q.label_id for q in test]]
    classifiers = {"keyword": kw, "semantic": sem, "hybrid": hyb, "true-label (upper bound)": true}

    profiles = dict(PAPER_PROFILES)
    sweep_mu = [0.0, *np.geomspace(0.002, 20.0, 120).tolist()]
    results: dict[str, Any] = {"n_test": len(test), "n_train": len(train), "split_seed": seed,
                               "model_version": model.version, "hybrid_keyword_share": float(kw_decides.mean()),
                               "cost_model": {"usd_per_billion_active_params_per_1k_tokens": PRICE_PER_B_PER_1K,
                                              "active_params_b": ACTIVE_B, "answer_tokens": ANSWER_TOKENS,
                                              "latency_prior_s": LATENCY_S}, "trios": {}}
    for trio_name, trio in TRIOS.items():
        caps = capabilities(train, trio)
        matrix = build_matrix(trio, caps)
        correct = np.array([[q.outcomes[m] or 0 for m in trio] for q in test], dtype=float)
        prices = np.array([PRICE_PER_B_PER_1K * ACTIVE_B[m] for m in trio])
        cost = (ntok[:, None] + ANSWER_TOKENS) / 1000.0 * prices[None, :]
        n = len(test)
        base: dict[str, tuple[float, float]] = {}
        for j, tier in enumerate(TIERS):
            base[f"always-{tier}"] = evaluate_choice(np.full(n, j), correct, cost)
        rng = np.random.default_rng(args.seed)
        base["random (uniform over the trio)"] = evaluate_choice(rng.integers(0, 3, n), correct, cost)
        # Oracle: the cheapest model that answers correctly; the small one if none does.
        oracle = np.array([next((j for j in range(3) if correct[i, j]), 0) for i in range(n)])
        base["oracle"] = evaluate_choice(oracle, correct, cost)
        a_s, c_s = base["always-small"]
        a_l, c_l = base["always-large"]
        rows: dict[str, Any] = {}
        curves: dict[str, list[tuple[float, float, float]]] = {}
        for cname, probs in classifiers.items():
            rows[cname] = {}
            for pname in ("quality", "balanced", "cost", "speed"):
                ch = route(matrix, probs, profiles[pname])
                if not np.array_equal(ch, vector_route(matrix, probs, profiles[pname])):
                    raise AssertionError(f"vectorised Eq. 2 disagrees with rank() ({cname}, {pname})")
                a, c = evaluate_choice(ch, correct, cost)
                rows[cname][pname] = {"accuracy": a, "cost": c, "pgr": (a - a_s) / (a_l - a_s),
                                      "share": [float((ch == j).mean()) for j in range(3)]}
            pts = []
            for mu in sweep_mu:
                ch = vector_route(matrix, probs, Profile(alpha=1.0, **{"lambda": 0.0}, mu=mu))
                a, c = evaluate_choice(ch, correct, cost)
                pts.append((mu, c, a))
            curves[cname] = pts
            allpts = [(c, a) for _, c, a in pts] + [(v["cost"], v["accuracy"]) for v in rows[cname].values()]
            rows[cname]["_apgr"] = envelope_apgr(allpts, c_s, c_l, a_s, a_l)
            c95 = cost_at_95(allpts, a_l, c_s, a_s)
            rows[cname]["_cost_at_95"] = None if c95 is None else c95 / c_l
        results["trios"][trio_name] = {"models": list(trio), "capability": caps, "baselines": base,
                                       "routers": rows, "curves": curves}
    write_outputs(results, Path(args.out_dir))
    return results


def fmt_money(x: float) -> str:
    return f"{x * 1000:.3f}"


def write_outputs(res: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "routing_quality.json").write_text(json.dumps(res, indent=1) + "\n")
    lines = [f"Held-out MMLU-Pro test split: {res['n_test']} questions (capabilities from {res['n_train']} train "
             f"questions); classifier `{res['model_version']}`. Cost is USD per 1,000 questions "
             f"(price/1K tokens = ${PRICE_PER_B_PER_1K} x active B params; prompt + {ANSWER_TOKENS} answer tokens). "
             f"Hybrid let a keyword hit decide on {res['hybrid_keyword_share']:.1%} of the questions.", ""]
    fig, axes = plt.subplots(1, len(res["trios"]), figsize=(7 * len(res["trios"]), 5.2), squeeze=False)
    for ax, (tname, t) in zip(axes[0], res["trios"].items(), strict=True):
        b = t["baselines"]
        a_s, c_s = b["always-small"]
        a_l, c_l = b["always-large"]
        lines += [f"### {tname}", "",
                  "Capability (train-split accuracy per class): " + "; ".join(
                      f"{m}: " + "/".join(f"{t['capability'][m][k]:.2f}" for k in LABELS) for m in t["models"])
                  + " (low/medium/high)", "",
                  "| policy | profile | accuracy | cost /1K q | PGR | small/medium/large share |",
                  "|---|---|---:|---:|---:|---|"]
        for name, (a, c) in b.items():
            lines.append(f"| {name} | - | {a:.4f} | {fmt_money(c)} | {(a - a_s) / (a_l - a_s):.3f} | - |")
        for cname, prof in t["routers"].items():
            for pname, v in prof.items():
                if pname.startswith("_"):
                    continue
                share = "/".join(f"{s:.0%}" for s in v["share"])
                lines.append(f"| {cname} | {pname} | {v['accuracy']:.4f} | {fmt_money(v['cost'])} | {v['pgr']:.3f} | {share} |")
        rand95 = (c_s + (c_l - c_s) * (0.95 * a_l - a_s) / (a_l - a_s)) / c_l
        lines += ["", "| router | APGR (area under PGR vs normalised cost) | cost at 95% of always-large accuracy |",
                  "|---|---:|---:|", f"| random (small/large mix) | 0.500 | {rand95:.0%} of always-large |"]
        for cname, prof in t["routers"].items():
            c95 = prof["_cost_at_95"]
            lines.append(f"| {cname} | {prof['_apgr']:.3f} | {'not reached' if c95 is None else f'{c95:.0%}'} of always-large |")
        r = t["routers"]
        q = {c: r[c]["quality"] for c in ("keyword", "semantic", "hybrid")}
        small_share = min(r[c][p]["share"][0] for c in r for p in ("balanced", "cost", "speed"))
        lines += ["", "Reading: under the `quality` profile the semantic router reaches PGR "
                  f"{q['semantic']['pgr']:.2f} at {q['semantic']['cost'] / c_l:.0%} of always-large cost (keyword "
                  f"{q['keyword']['pgr']:.2f} at {q['keyword']['cost'] / c_l:.0%}, hybrid {q['hybrid']['pgr']:.2f} at "
                  f"{q['hybrid']['cost'] / c_l:.0%}). Under `balanced`, `cost` and `speed`, Eq. 2 sends at least "
                  f"{small_share:.0%} of questions to the small model whatever the classifier: with capabilities "
                  "measured on real outcomes, the relevance gap between models times w_R is smaller than the "
                  "normalised cost and latency advantage of the small model. APGR compares the routers over the "
                  "whole cost range instead (mu sweep)."]
        lines.append("")
        for cname, pts in t["curves"].items():
            ax.plot([p[1] * 1000 for p in pts], [p[2] for p in pts], marker=".", label=f"{cname} (mu sweep)")
        ax.plot([c_s * 1000, c_l * 1000], [a_s, a_l], "k:", label="random mix small/large")
        for name, (a, c) in b.items():
            ax.scatter([c * 1000], [a], marker="s" if "oracle" not in name else "*", s=60, zorder=5)
            ax.annotate(name.split(" (")[0], (c * 1000, a), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.axhline(0.95 * a_l, color="grey", lw=0.6, ls="--")
        ax.set_title(tname, fontsize=10)
        ax.set_xlabel("cost, USD per 1,000 questions")
        ax.set_ylabel("accuracy (real MMLU-Pro outcomes)")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "routing_quality.png", dpi=110)
    plt.close(fig)
    (out / "routing_quality.md").write_text("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    from functions.scorer.engine import default_model_dir

    p = argparse.ArgumentParser(prog="python -m model.routing_quality", description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--model-dir", default=str(default_model_dir()))
    p.add_argument("--out-dir", default=str(OUT_DIR))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        run(args)
    except SharedDataMissing as e:
        print(f"model.routing_quality: {e}", file=sys.stderr)
        return 3
    print(f"wrote {args.out_dir}/routing_quality.md")
    return 0



if __name__ == "__main__":
    sys.exit(main())
