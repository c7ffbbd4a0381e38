"""Real data for the complexity classifier: MMLU-Pro outcomes of 27 open models, labelled by size tier.

Source: ``../shared/data/routing/mmlu_pro_matrix.csv`` (12,032 MMLU-Pro questions x 29 models, 0/1
"answered correctly"), built from TIGER-AI-Lab/MMLU-Pro ``eval_results`` (Apache-2.0).

Label rule (see MODEL_CARD.md for the why). A *tier group* "handles" a question when a majority
(>= 50 %) of its models answer it correctly; missing outcomes are ignored in the vote.

* ``low``    - the small tier (<= 8B parameters, 14 models) handles it;
* ``medium`` - the small tier does not, but the medium-or-larger group (>= 13B, 13 models) does;
* ``high``   - neither: only a minority of the big models, or none, answers it.

The two Gemini models are excluded from the vote: their sizes are undisclosed.

Splits are by question (one row per question_id), stratified by label x source benchmark, seeded.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LABELS: tuple[str, ...] = ("low", "medium", "high")

SMALL: tuple[str, ...] = (
    "Llama-2-7b-hf", "Meta-Llama-3-8B", "Meta-Llama-3_1-8B", "Meta-Llama-3_1-8B-Instruct",
    "Mistral-7B-Instruct-v0.1", "Mistral-7B-Instruct-v0.2", "Mistral-7B-v0.1", "Mistral-7B-v0.2-hf",
    "Phi-3-mini-4k-instruct", "Qwen1.5-7B-Chat", "Yi-6B", "Yi-6b-Chat", "gemma-7b", "mathstral-7B",
)
MEDIUM: tuple[str, ...] = (
    "Llama-2-13b-hf", "Mixtral-8x7B-Instruct-v0.1", "Mixtral-8x7B-v0.1", "Yi-34B", "c4ai-command-r-v01",
)
LARGE: tuple[str, ...] = (
    "DeepSeek-Coder-V2", "Llama-2-70b-hf", "Meta-Llama-3-70B", "Meta-Llama-3_1-70B",
    "Meta-Llama-3_1-70B-Instruct", "Qwen1.5-110B", "Qwen1.5-72B-Chat", "jamba-1.5-large",
)
UNTIERED: tuple[str, ...] = ("gemini-1.5-flash-002", "gemini-1.5-pro-002")
MAJORITY = 0.5


class SharedDataMissing(RuntimeError):
    """../shared (the reference data beside the checkout) is not present."""


def shared_dir() -> Path:
    return Path(os.environ.get("PICKSPIN_SHARED", REPO.parent / "shared"))


def matrix_path() -> Path:
    return shared_dir() / "data" / "routing" / "mmlu_pro_matrix.csv"


def require_shared() -> Path:
    p = matrix_path()
    if not p.is_file():
        raise SharedDataMissing(
            f"{p} not found: this step needs the shared reference data at ../shared (beside the "
            "checkout, or set PICKSPIN_SHARED). A fresh clone does not have it; the shipped artifact "
            "in model/artifacts is used as is.")
    return p


@dataclass(frozen=True)
class Question:
    qid: str
    category: str
    src: str  # e.g. ori_mmlu-business_ethics, stemez-Physics, theoremQA-Math, scibench-chem
    text: str
    outcomes: dict[str, int | None]  # model -> 1/0, None = missing
    label: str

    @property
    def benchmark(self) -> str:
        """The benchmark the question came from: ori_mmlu, stemez, theoremQA or scibench."""
        return self.src.split("-", 1)[0]

    @property
    def label_id(self) -> int:
        return LABELS.index(self.label)


def tier_share(outcomes: dict[str, int | None], models: Sequence[str]) -> float:
    vals = [v for m in models if (v := outcomes.get(m)) is not None]
    return sum(vals) / len(vals) if vals else 0.0


def label_of(outcomes: dict[str, int | None]) -> str:
    if tier_share(outcomes, SMALL) >= MAJORITY:
        return "low"
    if tier_share(outcomes, MEDIUM + LARGE) >= MAJORITY:
        return "medium"
    return "high"


def load_questions(path: Path | None = None) -> list[Question]:
    p = path or require_shared()
    out: list[Question] = []
    with p.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        models = [c for c in fields if c not in ("question_id", "category", "src", "answer", "question")]
        for r in reader:
            oc: dict[str, int | None] = {m: (int(r[m]) if r[m] not in ("", None) else None) for m in models}
            out.append(Question(r["question_id"], r["category"], r["src"], r["question"], oc, label_of(oc)))
    return out


def split(questions: Sequence[Question], seed: int = 13, val: float = 0.15,
          test: float = 0.15) -> dict[str, list[Question]]:
    """Stratified (label x benchmark) split by question id; every question lands in exactly one split."""
    strata: dict[tuple[str, str], list[Question]] = defaultdict(list)
    for q in sorted(questions, key=lambda q: q.qid):
        strata[(q.label, q.benchmark)].append(q)
    rng = random.Random(seed)
    parts: dict[str, list[Question]] = {"train": [], "val": [], "test": []}
    for key in sorted(strata):
        qs = strata[key]
        rng.shuffle(qs)
        n_test = math.floor(len(qs) * test + 0.5)
        n_val = math.floor(len(qs) * val + 0.5)
        parts["test"] += qs[:n_test]
        parts["val"] += qs[n_test:n_test + n_val]
        parts["train"] += qs[n_test + n_val:]
    for k in parts:
        parts[k].sort(key=lambda q: q.qid)
    return parts


def split_manifest(parts: dict[str, list[Question]]) -> dict[str, object]:
    """Question ids per split and a digest, so a rebuild can prove it used the same split."""
    ids = {k: [q.qid for q in v] for k, v in parts.items()}
    digest = hashlib.sha256(json.dumps(ids, sort_keys=True).encode()).hexdigest()[:16]
    counts = {k: {lab: sum(1 for q in v if q.label == lab) for lab in LABELS} for k, v in parts.items()}
    return {"digest": digest, "counts": counts, "ids": ids}


if __name__ == "__main__":
    qs = load_questions()
    sp = split(qs)
    m = split_manifest(sp)
    print(json.dumps({"digest": m["digest"], "counts": m["counts"]}, indent=1))
