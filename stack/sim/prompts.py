"""Prompts with real outcomes: what each request asks, and whether each model would answer it right.

The pool is a seeded sample of MMLU-Pro questions from ``../shared/data/routing/mmlu_pro_matrix.csv``
(TIGER-AI-Lab/MMLU-Pro ``eval_results`` @f418b11, Apache-2.0): the question text is what the
classifier sees; the 0/1 column of each simulated model's stand-in (``cluster.models.*.matrix_column``)
says whether that model answers correctly. A request's token counts come from the trace, not from
the question. Without the shared data a synthetic pool (templated prompts, no outcomes) is used and
"correct" is not reported.

Classifier estimates are computed once per distinct prompt and reused by every policy.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from functions.router.classifiers import build_classifier
from functions.router.classifiers.base import Estimate
from pickspin.config import ServiceMatrix

from .config import SimConfig
from .trace import SharedDataMissing, shared_dir

log = logging.getLogger("pickspin.sim.prompts")


@dataclass
class PromptPool:
    texts: list[str]
    correct: np.ndarray | None  # (n_prompts, n_models) int8: 1 right, 0 wrong, -1 unknown
    source: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)


def matrix_csv() -> str:
    p = shared_dir() / "data" / "routing" / "mmlu_pro_matrix.csv"
    if not p.is_file():
        raise SharedDataMissing(f"{p} not found (the shared reference data beside the checkout)")
    return str(p)


def load_pool(cfg: SimConfig, size: int, rng: np.random.Generator) -> PromptPool:
    """A seeded sample of ``size`` MMLU-Pro questions with outcomes for every simulated model."""
    path = matrix_csv()
    names = [m.name for m in cfg.matrix.models]
    cols = [cfg.cluster.models[n].matrix_column for n in names]
    rows: list[tuple[str, list[int]]] = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = set(reader.fieldnames or [])
        for c in cols:
            if c is not None and c not in fields:
                raise ValueError(f"matrix_column {c!r} is not a column of {path}")
        for r in reader:
            oc = [(-1 if c is None or r[c] in ("", None) else int(r[c])) for c in cols]
            rows.append((r["question"], oc))
    take = rng.choice(len(rows), size=min(size, len(rows)), replace=False)
    texts = [rows[k][0] for k in take]
    correct = np.asarray([rows[k][1] for k in take], dtype=np.int8)
    return PromptPool(texts, correct, "mmlu-pro", [f"{len(texts)} MMLU-Pro questions sampled from {len(rows)}"])


_LOW = ["Summarize this paragraph: {x}", "Translate to French: {x}", "What is {x}?", "List three facts about {x}.",
        "Define {x}."]
_HIGH = ["Prove that {x} holds for every n.", "Explain why {x} happens, step by step.",
         "Design an architecture for {x}.", "Implement {x} in Python and analyze its complexity."]
_MID = ["Tell me about {x}.", "Help me with {x}.", "Compare {x} with its alternatives."]
_TOPICS = ["photosynthesis", "binary search", "the French revolution", "compound interest", "TCP congestion control",
           "prime numbers", "a rate limiter", "protein folding"]


def synthetic_pool(size: int, rng: np.random.Generator) -> PromptPool:
    """Templated prompts (a third low cues, a third high cues, a third neither); no outcomes."""
    texts = []
    for k in range(size):
        tmpl = (_LOW, _HIGH, _MID)[k % 3]
        texts.append(tmpl[int(rng.integers(len(tmpl)))].format(x=_TOPICS[int(rng.integers(len(_TOPICS)))]))
    return PromptPool(texts, None, "synthetic", ["synthetic templated prompts; no per-model outcomes"])


def build_pool(cfg: SimConfig, size: int, rng: np.random.Generator, *, synthetic: bool = False) -> PromptPool:
    if not synthetic:
        try:
            return load_pool(cfg, size, rng)
        except SharedDataMissing as e:
            log.warning("%s; using synthetic prompts (no correctness)", e)
    return synthetic_pool(size, rng)


@dataclass
class Estimates:
    classifier: str
    per_prompt: list[Estimate] | None  # None: the classifier is unavailable
    reason: str | None = None
    seconds: float = 0.0
    sources: dict[str, int] = field(default_factory=dict)


def _scorer_ready(clf: object, timeout: float) -> str | None:
    """Wait for an in-process semantic scorer; the reason it is unusable, or None when ready."""
    sem = getattr(clf, "semantic", clf)
    scorer = getattr(sem, "scorer", None)
    if scorer is None or not hasattr(scorer, "wait_ready"):
        return None
    if scorer.wait_ready(timeout):
        return None
    return str(getattr(scorer, "error", None) or "scorer did not load in time")


def estimate_pool(matrix: ServiceMatrix, pool: Sequence[str], classifier: str, *,
                  ready_timeout_s: float = 120.0, progress: bool = True) -> Estimates:
    """Classify every prompt of the pool once with the router's classifier ``classifier``."""
    t0 = time.perf_counter()
    try:
        clf = build_classifier(classifier, matrix)
    except Exception as e:  # missing onnxruntime / artifact: report, do not fail the whole run
        return Estimates(classifier, None, f"{type(e).__name__}: {e}")
    if classifier != "keyword":
        why = _scorer_ready(clf, ready_timeout_s)
        if why is not None:
            return Estimates(classifier, None, f"semantic scorer unavailable: {why}")
    out: list[Estimate] = []
    sources: dict[str, int] = {}
    for text in tqdm(pool, desc=f"classify ({classifier})", unit="prompt", disable=not progress or classifier == "keyword",
                     leave=False):
        est = clf.classify(text)
        out.append(est)
        sources[est.source] = sources.get(est.source, 0) + 1
    return Estimates(classifier, out, None, time.perf_counter() - t0, sources)
