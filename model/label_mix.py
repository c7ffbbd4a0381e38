"""How the shipped classifier spreads prompts of each benchmark over low / medium / high.

    python -m model.label_mix      # writes bench/results/label_mix.{md,json}; needs ../shared

Issue 13 found the previous artifact labelled code and non-English prompts `high` 97-100% of the time.
This reports, per benchmark (200 seeded prompts each from ``../shared/data/bench``, plus the CRUXEval
prompts of the routing data), the share of each argmax class, the mean probabilities, and the share of
the true label shares where outcomes exist. There are no non-English prompts with outcomes in
``../shared``; the few written below only show what the classifier does with them, not whether it is
right.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import numpy as np

from model.data import LABELS, REPO

OUT = REPO / "bench" / "results"
# Written for this report (no outcomes exist for them): questions of different difficulty in other scripts.
NON_ENGLISH = [
    "法国的首都是哪里？",
    "证明存在无穷多个形如4k+3的素数。",
    "请用三句话总结这篇文章的主要观点。",
    "设函数f(x)=x^3-3x+1，求f(x)在区间[-2,2]上的最大值和最小值。",
    "日本の首都はどこですか？",
    "次の微分方程式を解きなさい: y'' + y = 0",
    "Какая столица Германии?",
    "Докажите, что сумма углов треугольника равна 180 градусам.",
    "Was ist die Hauptstadt von Frankreich?",
    "Beweisen Sie, dass die Wurzel aus 2 irrational ist.",
    "¿Cuál es la capital de España?",
    "Démontrez que toute suite convergente est bornée.",
]


def mix(model: object, texts: Sequence[str]) -> dict[str, object]:
    from functions.scorer.engine import ComplexityModel

    assert isinstance(model, ComplexityModel)
    preds = [model.predict([t])[0] for t in texts]
    probs = np.array([[p.probs[c] for c in LABELS] for p in preds])
    arg = probs.argmax(1)
    return {"n": len(texts),
            "argmax_share": {c: round(float((arg == i).mean()), 3) for i, c in enumerate(LABELS)},
            "mean_probs": {c: round(float(probs[:, i].mean()), 3) for i, c in enumerate(LABELS)}}


def main(argv: Sequence[str] | None = None) -> int:
    from functions.scorer.engine import ComplexityModel
    from model.benchmarks import load_benchmarks
    from model.data import SharedDataMissing
    from model.families import multitask_prompts

    m = ComplexityModel(threads=1)
    try:
        sets = load_benchmarks(200)
        crux = [p.text for p in multitask_prompts() if p.family == "cruxeval"]
    except (SharedDataMissing, FileNotFoundError) as e:
        print(f"needs ../shared: {e}", file=sys.stderr)
        return 2
    sets["CRUXEval (routing data)"] = crux
    sets["non-English (12 written here)"] = NON_ENGLISH
    res = {name: mix(m, texts) for name, texts in sets.items()}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "label_mix.json").write_text(json.dumps({"artifact": m.version, "benchmarks": res}, indent=1) + "\n")
    lines = [f"Artifact `{m.version}`: argmax class shares and mean probabilities (low / medium / high).", "",
             "| prompts | n | argmax low / medium / high | mean p low / medium / high |",
             "|---|---:|---|---|"]
    for name, r in res.items():
        a, p = r["argmax_share"], r["mean_probs"]
        assert isinstance(a, dict) and isinstance(p, dict)
        lines.append(f"| {name} | {r['n']} | {a['low']:.0%} / {a['medium']:.0%} / {a['high']:.0%} | "
                     f"{p['low']:.2f} / {p['medium']:.2f} / {p['high']:.2f} |")
    md = "\n".join(lines) + "\n"
    (OUT / "label_mix.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
