"""Prompts of the paper's eight benchmarks (../shared/data/bench), for the per-benchmark breakdown.

These have no per-question model outcomes here, so they are not training data; the report shows how
the classifier spreads them over the three classes (out-of-domain behaviour).
"""

from __future__ import annotations

import csv
import gzip
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path

from model.data import shared_dir


def bench_dir() -> Path:
    return shared_dir() / "data" / "bench"


def _jsonl(p: Path) -> Iterator[dict[str, object]]:
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _gsm8k(d: Path) -> list[str]:
    return [str(r["question"]) for r in _jsonl(d / "gsm8k_test.jsonl")]


def _humaneval(d: Path) -> list[str]:
    return [str(r["prompt"]) for r in _jsonl(d / "HumanEval.jsonl.gz")]


def _mbpp(d: Path) -> list[str]:
    return [str(r["text"]) for r in _jsonl(d / "mbpp.jsonl")]


def _truthfulqa(d: Path) -> list[str]:
    with (d / "TruthfulQA.csv").open(newline="", encoding="utf-8") as f:
        return [r["Question"] for r in csv.DictReader(f)]


def _arc(name: str) -> Callable[[Path], list[str]]:
    def load(d: Path) -> list[str]:
        return [str(r["query"]).removeprefix("Question: ") for r in _jsonl(d / name)]
    return load


def _math(d: Path) -> list[str]:
    return [str(r["context"]) for r in _jsonl(d / "math_test.jsonl")]


def _hellaswag(d: Path) -> list[str]:
    return [str(r["ctx"]) for r in _jsonl(d / "hellaswag_val_1000.jsonl")]


def _mmlu(d: Path) -> list[str]:
    out: list[str] = []
    for p in sorted((d / "mmlu_test").glob("*.csv")):
        with p.open(newline="", encoding="utf-8") as f:
            out += [r["question"] for r in csv.DictReader(f)]
    return out


LOADERS: dict[str, Callable[[Path], list[str]]] = {
    "GSM8K": _gsm8k, "HumanEval": _humaneval, "MBPP": _mbpp, "TruthfulQA": _truthfulqa,
    "ARC-Challenge": _arc("arc_challenge.jsonl"), "ARC-Easy": _arc("arc_easy.jsonl"), "MATH": _math,
    "HellaSwag": _hellaswag, "MMLU": _mmlu,
}


def load_benchmarks(per_benchmark: int = 200, seed: int = 7) -> dict[str, list[str]]:
    """Up to ``per_benchmark`` prompts of each benchmark (seeded sample); missing files are skipped."""
    d = bench_dir()
    out: dict[str, list[str]] = {}
    for name, fn in LOADERS.items():
        try:
            texts = [t for t in fn(d) if t.strip()]
        except FileNotFoundError:
            continue
        rng = random.Random(seed)
        out[name] = rng.sample(texts, min(per_benchmark, len(texts)))
    return out
