"""Load the shipped artifact (model.onnx, tokenizer.json, labels.json) and classify text batches.

Pure inference, no web framework: used by the scorer app and in-process by the router.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ENV_MODEL_DIR = "PICKSPIN_SCORER_MODEL_DIR"
SHIPPED_MODEL_DIR = Path(__file__).resolve().parents[2] / "model" / "artifacts" / "complexity-minilm"


class ModelLoadError(RuntimeError):
    """The artifact directory is missing a file, or a file is unreadable or inconsistent."""


def default_model_dir() -> Path:
    env = os.environ.get(ENV_MODEL_DIR)
    return Path(env) if env else SHIPPED_MODEL_DIR


@dataclass(frozen=True)
class Prediction:
    label: str
    probs: dict[str, float]
    confidence: float
    tokens: int  # tokens fed to the model (after truncation, incl. [CLS]/[SEP])
    truncated: bool

    def as_dict(self) -> dict[str, object]:
        return {"class": self.label, "confidence": round(self.confidence, 6),
                "probabilities": {k: round(v, 6) for k, v in self.probs.items()},
                "tokens": self.tokens, "truncated": self.truncated}


# Merging one more prompt into a chunk saves one model call, worth about the compute of this many
# tokens on a small CPU (measured: ~0.7 ms per call vs ~0.07 ms per token for MiniLM-L6 int8); it
# merges only while the padding it adds stays under that, so a chunk never costs more than its rows
# would one by one.
MERGE_PAD_TOKENS = 8
MAX_CHUNK = 32


def _chunks(lengths: Sequence[int]) -> list[list[int]]:
    """Split positions of ascending ``lengths`` into chunks that are cheaper run together than apart."""
    out: list[list[int]] = []
    cur: list[int] = []
    width = 0
    for j, n in enumerate(lengths):
        if cur and (len(cur) >= MAX_CHUNK or len(cur) * (n - width) > MERGE_PAD_TOKENS):
            out.append(cur)
            cur = []
        cur.append(j)
        width = n
    if cur:
        out.append(cur)
    return out


# Which tokens of a long prompt the model sees. The first ``max_length`` tokens alone are the wrong part
# of a few-shot or instruction-wrapped prompt: every prompt of a task shares that prefix (the examples or
# the instructions) and the question is at the end, so all of them got identical probabilities. A long
# prompt is therefore encoded as its first ``head`` tokens (instructions, the start of a question) plus
# its last tokens (the question actually asked), within the same window. labels.json sets ``head_tokens``;
# an artifact without it keeps the old front truncation (head = whole window).
DEFAULT_HEAD_TOKENS = 32


def window_ids(ids: Sequence[int], max_length: int, head: int | None, cls_id: int, sep_id: int) -> tuple[list[int], bool]:
    """``[CLS] + ids + [SEP]`` cut to ``max_length``: head + tail of ``ids`` when too long (``head=None``:
    front truncation). Returns the ids and whether anything was dropped. Training, evaluation and serving
    all call this, so the model always sees the same part of a prompt."""
    room = max_length - 2
    body = list(ids)
    if len(body) <= room:
        return [cls_id, *body, sep_id], False
    if head is None or head >= room:
        return [cls_id, *body[:room], sep_id], True
    h = max(0, head)
    return [cls_id, *body[:h], *body[len(body) - (room - h):], sep_id], True


def encode_texts(tok: Any, texts: Sequence[str], max_length: int, head: int | None) -> list[tuple[list[int], bool]]:
    """Tokenise ``texts`` with a ``tokenizers.Tokenizer`` (no truncation set) and cut each to its window."""
    return [(ids, cut) for ids, cut, _ in encode_texts_full(tok, texts, max_length, head)]


def encode_texts_full(tok: Any, texts: Sequence[str], max_length: int, head: int | None,
                      ) -> list[tuple[list[int], bool, int]]:
    """``encode_texts`` plus each prompt's whole token count (incl. [CLS]/[SEP]): an artifact with a
    ``prompt_tokens`` input uses it as its length feature, so a short window keeps the length signal."""
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    encs = tok.encode_batch(list(texts), add_special_tokens=False)
    return [(*window_ids(e.ids, max_length, head, cls_id, sep_id), len(e.ids) + 2) for e in encs]


def default_threads() -> int:
    """Intra-op threads: 1 on a 1-2 core box leaves a core for the web server, else 2."""
    n = os.cpu_count() or 1
    return 1 if n <= 2 else 2


class ComplexityModel:
    """An int8 ONNX encoder + head; ``predict`` is thread-safe (onnxruntime sessions are)."""

    def __init__(self, model_dir: str | os.PathLike[str] | None = None, *, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        for name in ("model.onnx", "tokenizer.json", "labels.json"):
            if not (self.model_dir / name).is_file():
                raise ModelLoadError(f"{self.model_dir / name} not found (model dir {self.model_dir})")
        try:
            meta = json.loads((self.model_dir / "labels.json").read_text())
            self.labels: tuple[str, ...] = tuple(meta["labels"])
            self.max_length = int(meta.get("max_length", 128))
            self.version = str(meta.get("version", "unknown"))
            head = meta.get("head_tokens")
            self.head_tokens: int | None = None if head is None else int(head)
        except (ValueError, KeyError, TypeError) as e:
            raise ModelLoadError(f"{self.model_dir / 'labels.json'} is invalid: {e}") from None
        if not self.labels:
            raise ModelLoadError("labels.json lists no labels")
        self.meta = meta
        self.threads = threads or default_threads()
        tok = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        tok.no_truncation()  # the window is cut by window_ids()
        tok.no_padding()  # padded per chunk in predict()
        pad_id = tok.token_to_id("[PAD]")
        self._pad_id = 0 if pad_id is None else pad_id
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        if cls_id is None or sep_id is None:
            raise ModelLoadError(f"{self.model_dir / 'tokenizer.json'} has no [CLS]/[SEP] tokens")
        self._cls_id, self._sep_id = cls_id, sep_id
        self._tok = tok
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._sess = ort.InferenceSession(str(self.model_dir / "model.onnx"), so,
                                              providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"cannot load {self.model_dir / 'model.onnx'}: {e}") from None
        outs = self._sess.get_outputs()
        n_out = outs[0].shape[-1] if outs and outs[0].shape else None
        if isinstance(n_out, int) and n_out != len(self.labels):
            raise ModelLoadError(f"model has {n_out} outputs but labels.json lists {len(self.labels)} labels")
        self._input_names = {i.name for i in self._sess.get_inputs()}

    def count_tokens(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=True).ids)

    def encode(self, texts: Sequence[str]) -> list[tuple[list[int], bool]]:
        """The token ids the model sees for each text (see ``window_ids``) and whether it was cut."""
        return encode_texts(self._tok, texts, self.max_length, self.head_tokens)

    def encode_full(self, texts: Sequence[str]) -> list[tuple[list[int], bool, int]]:
        """``encode`` plus the whole prompt's token count (incl. [CLS]/[SEP])."""
        return encode_texts_full(self._tok, texts, self.max_length, self.head_tokens)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Classify ``texts``; results in input order.

        Texts are tokenised, sorted by length and run in chunks of (nearly) equal length: on a CPU the
        cost of a padded batch grows with its padded size, so a batch of mixed lengths would cost more
        than the same prompts one by one (see ``MERGE_PAD_TOKENS``).
        """
        if not texts:
            return []
        encs = self.encode_full(texts)
        order = sorted(range(len(encs)), key=lambda i: len(encs[i][0]))
        out: list[Prediction | None] = [None] * len(encs)
        for chunk in _chunks([len(encs[i][0]) for i in order]):
            idx = [order[j] for j in chunk]
            width = max(len(encs[i][0]) for i in idx)
            ids = np.full((len(idx), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for r, i in enumerate(idx):
                n = len(encs[i][0])
                ids[r, :n] = encs[i][0]
                mask[r, :n] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._input_names:
                feed["token_type_ids"] = np.zeros_like(ids)
            if "prompt_tokens" in self._input_names:  # the length feature counts the whole prompt
                feed["prompt_tokens"] = np.array([float(encs[i][2]) for i in idx], dtype=np.float32)
            logits = self._sess.run(None, feed)[0].astype(np.float64)
            z = logits - logits.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            for r, i in enumerate(idx):
                k = int(p[r].argmax())
                out[i] = Prediction(self.labels[k], {lab: float(v) for lab, v in zip(self.labels, p[r], strict=True)},
                                    float(p[r, k]), len(encs[i][0]), encs[i][1])
        return [o for o in out if o is not None]

    def warmup(self) -> None:
        self.predict(["warm up the session", "a second, slightly longer warm-up prompt for shapes"])
