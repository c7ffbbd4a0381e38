"""Scorer latency by prompt length on this CPU, for the shipped model and the cheaper options.

    python bench/bench_latency.py      # writes bench/results/latency.{md,json}

One prompt per call, one intra-op thread (the router's in-process path), tokenise + ONNX, measured
with ``ComplexityModel.predict``. Variants are timed interleaved (round-robin), so load from other
work on the shared cores hits them alike; the 1-min load average is reported with the numbers.

Variants: the shipped artifact; the previous artifact if ``model/work/old-artifact`` exists; the same
MiniLM cut to other depths and input windows with a placeholder head (latency only: the head's weights
do not change the cost), int8 and fp32; the shipped model with 2 intra-op threads, and with
onnxruntime's basic instead of full graph optimisation. Bounded: ``--reps`` timed calls per variant
and length.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]
OUT = REPO / "bench" / "results"
LENGTHS = (16, 32, 64, 128)
TEXT = ("The committee reviewed the proposal in detail and asked the authors to clarify how the "
        "measurements were taken, which instruments were used, and whether the results would hold "
        "under different conditions such as higher temperature, lower pressure or a longer period of "
        "observation; they also wanted to know what the costs would be and who would pay for them. ") * 8


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in have]
    except OSError:
        pass
    return []


def text_of_tokens(model: Any, n: int) -> str:
    """A prompt that tokenises to exactly ``n`` tokens (with [CLS]/[SEP])."""
    ids = model._tok.encode(TEXT, add_special_tokens=False).ids[: n - 2]
    t = model._tok.decode(ids)
    assert model.count_tokens(t) == n, (n, model.count_tokens(t))
    return t


def layer_variant(layers: int, work: Path, max_length: int = 128, precision: str = "int8") -> Path:
    """The MiniLM encoder cut to ``layers`` layers + a placeholder 3-way head, as an artifact dir that
    cuts prompts to ``max_length`` tokens (head + tail, as the shipped one does)."""
    d = work / f"latency-l{layers}-{precision}"
    if not (d / "model.onnx").is_file():
        from model.heads import Router, base_model, export, fit_head, pooled_net, quantize

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        d.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        placeholder = Router(fit_head(rng.normal(size=(30, 384)), np.arange(30) % 3), 1.0, 0.0, 0.0)
        net = pooled_net(base_model(), (layers,), placeholder)
        fp32 = d / "model.fp32.onnx"
        export(net, fp32, ["logits"])
        if precision == "int8":
            quantize(fp32, d / "model.onnx", exclude=("/head/",))
            fp32.unlink()
        else:
            fp32.rename(d / "model.onnx")
    shipped = REPO / "model" / "artifacts" / "complexity-minilm"
    out = work / f"latency-l{layers}-{precision}-w{max_length}"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("model.onnx",):
        if not (out / name).exists():
            (out / name).symlink_to(d / name)
    shutil.copyfile(shipped / "tokenizer.json", out / "tokenizer.json")
    meta = json.loads((shipped / "labels.json").read_text())
    meta.update(version=out.name, encoder_layers=layers, max_length=max_length, head_tokens=max_length // 4)
    (out / "labels.json").write_text(json.dumps(meta))
    return out


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort

    from functions.scorer.engine import ComplexityModel

    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=150)
    p.add_argument("--variants", default="4x128,2x128,2x96,4x64,3x64,2x64",
                   help="int8 encoder depth x window tokens to time beside the shipped model (empty: none)")
    p.add_argument("--fp32", default="2", help="encoder depths to time in fp32 (128-token window)")
    a = p.parse_args(argv)
    work = REPO / "model" / "work"
    variants: dict[str, ComplexityModel] = {}
    shipped = ComplexityModel(threads=1)
    variants[f"shipped ({shipped.meta.get('encoder_layers', 6)} layers, {shipped.max_length}-token window)"] = shipped
    if (work / "old-artifact" / "model.onnx").is_file():
        variants["previous artifact (6 layers, 128)"] = ComplexityModel(work / "old-artifact", threads=1)
    for v in [x for x in a.variants.split(",") if x.strip()]:
        n, w = (int(t) for t in v.split("x"))
        variants[f"{n} layers, {w}-token window"] = ComplexityModel(layer_variant(n, work, w), threads=1)
    for n in [int(x) for x in a.fp32.split(",") if x.strip()]:
        variants[f"{n} layers, 128, fp32"] = ComplexityModel(layer_variant(n, work, 128, "fp32"), threads=1)
    variants["shipped, 2 intra-op threads"] = ComplexityModel(threads=2)
    basic = ComplexityModel(threads=1)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    basic._sess = ort.InferenceSession(str(basic.model_dir / "model.onnx"), so, providers=["CPUExecutionProvider"])
    variants["shipped, basic graph opt"] = basic

    texts = {n: text_of_tokens(shipped, n) for n in LENGTHS}
    times: dict[str, dict[int, list[float]]] = {k: {n: [] for n in LENGTHS} for k in variants}
    load0 = os.getloadavg()[0]
    for m in variants.values():
        for t in texts.values():
            m.predict([t])
    for _ in range(a.reps):
        for n, t in texts.items():
            for k, m in variants.items():
                t0 = time.perf_counter()
                m.predict([t])
                times[k][n].append((time.perf_counter() - t0) * 1000)
    load1 = os.getloadavg()[0]
    res = {k: {n: {"p50_ms": round(float(np.percentile(v, 50)), 2), "p95_ms": round(float(np.percentile(v, 95)), 2)}
               for n, v in d.items()} for k, d in times.items()}
    meta = {"cpu": cpu_name(), "flags": cpu_flags(), "cores": os.cpu_count(), "reps": a.reps,
            "load_avg_before_after": [round(load0, 2), round(load1, 2)], "threads": 1,
            "shipped": shipped.version}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "latency.json").write_text(json.dumps({"meta": meta, "results": res}, indent=1) + "\n")
    lines = [f"CPU: {meta['cpu']} ({', '.join(meta['flags'])}), {meta['cores']} cores; 1 intra-op thread unless "
             f"named; {a.reps} calls per cell, variants interleaved; 1-min load average {load0:.2f} → {load1:.2f}. "
             "Prompt length = tokens of the prompt; a window shorter than that encodes head + tail of it.", "",
             "| variant | " + " | ".join(f"{n} tok p50 / p95 (ms)" for n in LENGTHS) + " |",
             "|---|" + "---:|" * len(LENGTHS)]
    for k, d in res.items():
        lines.append(f"| {k} | " + " | ".join(f"{d[n]['p50_ms']:.1f} / {d[n]['p95_ms']:.1f}" for n in LENGTHS) + " |")
    md = "\n".join(lines) + "\n"
    (OUT / "latency.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
