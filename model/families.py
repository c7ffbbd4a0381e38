"""Task families with real per-prompt outcomes, for training and leave-one-family-out evaluation.

Every prompt carries its family, its text, its 3-class complexity label (low / medium / high, one rule
for all families, below) and the 0/1 outcomes of a fixed weak and strong model (for APGR).

Sources (all under ``../shared/data``; see ``../shared/README.md``):

* ``routing/mmlu_pro_matrix.csv`` - MMLU-Pro questions x 29 models (TIGER-AI-Lab/MMLU-Pro eval_results,
  Apache-2.0). Split into three families by MMLU-Pro category (STEM, life sciences, humanities and
  social sciences) so that held-out MMLU-Pro folds exist too. Weak / strong: Llama-3.1-8B / 70B Instruct.
* ``routing/multitask/zeroeval_gsm8k_math_crux.csv.gz`` - GSM8K test, MATH level 5, CRUXEval-O x 53
  models, zero-shot (WildEval/ZeroEval result_dirs, Apache-2.0; B. Y. Lin, ZeroEval, 2024). One family
  each. Weak / strong: Llama-3.1-8B / 70B Instruct.
* ``routing/truthfulqa_gpt3/*_output_labeled.csv`` - TruthfulQA, graded answers of GPT-3 ada / babbage /
  curie / davinci to a few-shot prompt (benedictflorance/truthfulqa_experiments). Evaluation only (its
  model sizes are a different generation, and TruthfulQA is known for inverse scaling). Weak / strong:
  curie / davinci.
* ``bench/mmlu_routellm/*.csv`` - MMLU, Mixtral-8x7B vs GPT-4 outcomes (lm-sys/RouteLLM, Apache-2.0).
  Evaluation only; questions whose text also appears in MMLU-Pro are dropped (MMLU-Pro reuses MMLU), and
  a seeded sample keeps it bounded. Weak / strong: Mixtral-8x7B / GPT-4.

Label rule, the same for every trainable family (MMLU-Pro's, in ``model.data``): a tier "handles" a
prompt when a majority of its models (with a known parameter count) answer it; ``low`` = the small tier
(<= 10B parameters) handles it, ``medium`` = not small but the medium-or-larger group (>= 12B) does,
``high`` = neither. The routing target used everywhere is ``not low`` = "the small tier fails".
For the two evaluation-only families the small tier is the weak model (and ada/babbage/curie for
TruthfulQA), which is also what "not low" means there.
"""

from __future__ import annotations

import csv
import gzip
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from model.data import LABELS, MAJORITY, load_questions, shared_dir

MMLU_PRO_FAMILIES: dict[str, tuple[str, ...]] = {
    "mmlu_pro:stem": ("math", "physics", "chemistry", "engineering", "computer science"),
    "mmlu_pro:life": ("biology", "health", "psychology"),
    "mmlu_pro:humanities": ("business", "economics", "law", "history", "philosophy", "other"),
}
MULTITASK_FAMILIES = {"math_grade_school:gsm8k": "gsm8k", "math_competition:math_level5": "math_l5",
                      "code_reasoning:cruxeval_output": "cruxeval"}
TRAIN_FAMILIES: tuple[str, ...] = (*MMLU_PRO_FAMILIES, "gsm8k", "math_l5", "cruxeval")
EVAL_ONLY_FAMILIES: tuple[str, ...] = ("truthfulqa", "mmlu")
MMLU_SAMPLE = 3000

PRO_WEAK, PRO_STRONG = "Meta-Llama-3_1-8B-Instruct", "Meta-Llama-3_1-70B-Instruct"
MT_WEAK, MT_STRONG = "meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-70B-Instruct"
SMALL_MAX_B, MEDIUM_MIN_B = 10.0, 12.0


@dataclass(frozen=True)
class Prompt:
    family: str
    text: str
    label: str  # low / medium / high
    weak: int  # 0/1 outcome of the family's weak model
    strong: int  # 0/1 outcome of the family's strong model
    key: str  # stable id

    @property
    def hard(self) -> int:
        """1 when the small tier fails (label is not low): the routing target."""
        return int(self.label != "low")

    @property
    def label_id(self) -> int:
        return LABELS.index(self.label)


def _majority(vals: Sequence[float]) -> bool:
    return bool(vals) and sum(vals) / len(vals) >= MAJORITY


def mmlu_pro_prompts() -> list[Prompt]:
    fam_of = {c: f for f, cats in MMLU_PRO_FAMILIES.items() for c in cats}
    out = []
    for q in load_questions():
        w, s = q.outcomes.get(PRO_WEAK), q.outcomes.get(PRO_STRONG)
        if w is None or s is None:
            continue
        out.append(Prompt(fam_of[q.category], q.text, q.label, w, s, f"mmlu_pro/{q.qid}"))
    return out


def _model_sizes() -> dict[str, float]:
    p = shared_dir() / "data" / "routing" / "multitask" / "models.csv"
    with p.open(newline="", encoding="utf-8") as f:
        return {r["model"]: float(r["params_b"]) for r in csv.DictReader(f) if r["params_b"]}


def multitask_prompts() -> list[Prompt]:
    p = shared_dir() / "data" / "routing" / "multitask" / "zeroeval_gsm8k_math_crux.csv.gz"
    sizes = _model_sizes()
    out = []
    with gzip.open(p, "rt", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        models = [m for m in (reader.fieldnames or [])[3:] if m in sizes]
        small = [m for m in models if sizes[m] <= SMALL_MAX_B]
        bigger = [m for m in models if sizes[m] >= MEDIUM_MIN_B]
        for r in reader:
            def vals(ms: Sequence[str], r: dict[str, str] = r) -> list[float]:
                return [float(r[m]) for m in ms if r[m] not in ("", None)]
            label = "low" if _majority(vals(small)) else "medium" if _majority(vals(bigger)) else "high"
            out.append(Prompt(MULTITASK_FAMILIES[r["task"]], r["prompt"], label, int(float(r[MT_WEAK])),
                              int(float(r[MT_STRONG])), r["source"]))
    return out


def truthfulqa_prompts() -> list[Prompt]:
    d = shared_dir() / "data" / "routing" / "truthfulqa_gpt3"
    res: dict[str, dict[str, int]] = {}
    text: dict[str, str] = {}
    for m in ("ada", "babbage", "curie", "davinci"):
        with (d / f"{m}_output_labeled.csv").open(newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                res.setdefault(r["question"], {})[m] = int(r["pred"])
                text[r["question"]] = r["prompt"]
    out = []
    for i, (qn, oc) in enumerate(sorted(res.items())):
        if len(oc) < 4:
            continue
        small_ok = _majority([oc["ada"], oc["babbage"], oc["curie"]])
        out.append(Prompt("truthfulqa", text[qn], "low" if small_ok else "high", oc["curie"], oc["davinci"],
                          f"truthfulqa/{i}"))
    return out


def _norm(t: str) -> str:
    return re.sub(r"\W+", " ", t.lower()).strip()[:80]


def mmlu_prompts(exclude: Sequence[str] = (), n: int = MMLU_SAMPLE, seed: int = 13) -> list[Prompt]:
    d = shared_dir() / "data" / "bench" / "mmlu_routellm"
    seen = {_norm(t) for t in exclude}
    out = []
    for p in sorted(d.glob("*.csv")):
        with p.open(newline="", encoding="utf-8") as f:
            for i, r in enumerate(csv.DictReader(f)):
                q = r["prompt"]
                if _norm(q.split("\nA.")[0]) in seen:
                    continue
                w = int(r["mistralai/Mixtral-8x7B-Instruct-v0.1"] == "True")
                s = int(r["gpt-4-1106-preview"] == "True")
                out.append(Prompt("mmlu", q, "low" if w else "high", w, s, f"mmlu/{p.stem}/{i}"))
    random.Random(seed).shuffle(out)
    return sorted(out[:n], key=lambda x: x.key)


def all_prompts() -> list[Prompt]:
    pro = mmlu_pro_prompts()
    return [*pro, *multitask_prompts(), *truthfulqa_prompts(), *mmlu_prompts([q.text for q in pro])]
