"""A tiny training run end to end: fine-tune, export, quantise, load with the serving engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.data import LABELS


@pytest.mark.slow
def test_training_smoke_writes_artifact_and_loss_falls(shared_matrix: Path, tmp_path: Path) -> None:
    for mod in ("torch", "transformers", "onnx", "sklearn"):
        pytest.importorskip(mod, reason=f"training extra {mod} not installed (pip install '.[train]')")
    from functions.scorer.engine import ComplexityModel
    from model.train import parse_args, run

    args = parse_args(["--train-limit", "32", "--eval-limit", "16", "--epochs", "4", "--batch-size", "16",
                       "--lr", "5e-4", "--max-len", "32", "--candidates", "finetune", "--min-agreement", "0",
                       "--out", str(tmp_path / "art"), "--work", str(tmp_path / "work"), "--threads", "2"])
    rep = run(args)
    losses = rep["losses"]
    assert len(losses) == 8
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2  # it learns (memorises 32 questions)
    art = tmp_path / "art"
    for f in ("model.onnx", "tokenizer.json", "labels.json", "training.json"):
        assert (art / f).is_file(), f
    meta = json.loads((art / "labels.json").read_text())
    assert meta["labels"] == list(LABELS) and meta["max_length"] == 32
    assert rep["agreement"]["fp32_max_abs_prob_diff"] < 1e-3
    m = ComplexityModel(art)
    p = m.predict(["What is the derivative of x^2?"])[0]
    assert p.label in LABELS and abs(sum(p.probs.values()) - 1) < 1e-5
