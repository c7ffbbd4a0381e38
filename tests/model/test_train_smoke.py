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


@pytest.mark.slow
def test_base_model_flag_takes_another_bert_family_checkpoint(shared_matrix: Path, tmp_path: Path) -> None:
    """--base-model PATH: a (tiny, randomly initialised) DistilBERT goes through the same code."""
    for mod in ("torch", "transformers", "onnx", "sklearn"):
        pytest.importorskip(mod, reason=f"training extra {mod} not installed (pip install '.[train]')")
    import shutil

    from transformers import DistilBertConfig, DistilBertModel

    from functions.scorer.engine import ComplexityModel
    from model.train import default_base_model, parse_args, run

    base = tmp_path / "tiny-distilbert"
    DistilBertModel(DistilBertConfig(vocab_size=30522, dim=32, hidden_dim=64, n_layers=2, n_heads=2,
                                     max_position_embeddings=128)).save_pretrained(base)
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(Path(default_base_model()) / f, base / f)  # same uncased WordPiece vocabulary
    args = parse_args(["--base-model", str(base), "--train-limit", "32", "--eval-limit", "16", "--epochs", "1",
                       "--batch-size", "16", "--max-len", "32", "--min-agreement", "0",
                       "--out", str(tmp_path / "art"), "--work", str(tmp_path / "work")])
    rep = run(args)
    assert set(rep["candidates"]) == {"frozen", "finetune"}  # both candidates ran, the better one was kept
    assert rep["chosen"] in ("frozen", "finetune")
    m = ComplexityModel(tmp_path / "art")
    assert m.predict(["Name the largest planet."])[0].label in LABELS
