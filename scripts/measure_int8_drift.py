"""How far do the shipped int8 classifier's probabilities move between runtimes and settings?

The golden test (tests/scorer/test_engine.py) compares the artifact's probabilities on fixed prompts
with recorded ones. int8 kernels differ by CPU (AVX2 vs AVX-512/VNNI saturate intermediate sums
differently) and by onnxruntime release, so the comparison needs a tolerance; this script measures
the spread that tolerance must cover, on the CPU it runs on:

* every onnxruntime release in ``--versions`` (installed side by side under ``--cache``, no deps),
* graph optimisation on/off and 1 vs 2 intra-op threads on the locked release,

each against the golden file (recorded on the build machine's CPU) and against the locked release.

    .venv/bin/python scripts/measure_int8_drift.py          # writes docs/int8-drift.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "scorer" / "golden.json"
OUT = REPO / "docs" / "int8-drift.json"
VERSIONS = ["1.19.2", "1.20.1", "1.22.1", "1.24.4", "1.26.0", "1.28.0", "1.30.0", "1.32.0"]

# Runs in a child process so each onnxruntime release is imported fresh.
CHILD = r"""
import json, sys
import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer
model_dir, opt, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
prompts = json.load(sys.stdin)
meta = json.load(open(model_dir + "/labels.json"))
tok = Tokenizer.from_file(model_dir + "/tokenizer.json")
tok.enable_truncation(max_length=int(meta.get("max_length", 128)))
whole = Tokenizer.from_file(model_dir + "/tokenizer.json")  # the prompt's full token count (length feature)
whole.no_truncation()
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if opt == "all"
                               else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
sess = ort.InferenceSession(model_dir + "/model.onnx", so, providers=["CPUExecutionProvider"])
names = {i.name for i in sess.get_inputs()}
out = []
for t in prompts:
    ids = np.array([tok.encode(t).ids], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    if "token_type_ids" in names:
        feed["token_type_ids"] = np.zeros_like(ids)
    if "prompt_tokens" in names:
        feed["prompt_tokens"] = np.array([len(whole.encode(t).ids)], dtype=np.float32)
    z = sess.run(None, feed)[0][0].astype(np.float64)
    p = np.exp(z - z.max()); p /= p.sum()
    out.append(p.tolist())
print(json.dumps({"ort": ort.__version__, "probs": out}))
"""


def prompts(n_extra: int) -> list[str]:
    golden = json.loads(GOLDEN.read_text())["prompts"]
    extra: list[str] = []
    csv = REPO.parent / "shared" / "data" / "routing" / "mmlu_pro_matrix.csv"
    if csv.is_file() and n_extra:
        import csv as csvmod
        with csv.open(newline="") as f:
            for i, row in enumerate(csvmod.DictReader(f)):
                if i % 37 == 0:
                    extra.append(row["question"])
                if len(extra) >= n_extra:
                    break
    else:
        print(f"note: {csv} not found; measuring on the golden prompts only", file=sys.stderr)
    return golden + extra


def run(pythonpath: str | None, texts: list[str], model_dir: Path, opt: str = "all", threads: int = 1) -> dict:
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    r = subprocess.run([sys.executable, "-c", CHILD, str(model_dir), opt, str(threads)], input=json.dumps(texts),
                       capture_output=True, text=True, env=env, timeout=600, check=True)
    return json.loads(r.stdout)


def max_abs(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True))


def flips(a: list[list[float]], b: list[list[float]]) -> int:
    return sum(ra.index(max(ra)) != rb.index(max(rb)) for ra, rb in zip(a, b, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--versions", nargs="*", default=VERSIONS)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/pickspin-ort"))
    ap.add_argument("--extra-prompts", type=int, default=200)
    ap.add_argument("--model-dir", type=Path, default=REPO / "model" / "artifacts" / "complexity-minilm")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    texts = prompts(args.extra_prompts)
    golden = json.loads(GOLDEN.read_text())
    labels = list(golden["predictions"][0]["probabilities"])
    g = [[p["probabilities"][k] for k in labels] for p in golden["predictions"]]
    ng = len(g)

    base = run(None, texts, args.model_dir)  # the venv's (locked) onnxruntime
    rows = []

    def row(name: str, res: dict) -> None:
        rows.append({"run": name, "onnxruntime": res["ort"],
                     "max_abs_dp_vs_golden": round(max_abs(res["probs"][:ng], g), 5),
                     "max_abs_dp_vs_locked": round(max_abs(res["probs"], base["probs"]), 5),
                     "label_flips_vs_locked": flips(res["probs"], base["probs"])})
        print(rows[-1], flush=True)

    row("locked", base)
    for opt, threads in (("none", 1), ("all", 2)):
        row(f"locked opt={opt} threads={threads}", run(None, texts, args.model_dir, opt, threads))
    for v in args.versions:
        target = args.cache / v
        if not (target / "onnxruntime").is_dir():
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                            f"onnxruntime=={v}"], check=True)
        row(f"onnxruntime {v}", run(str(target), texts, args.model_dir))

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    flags = set(next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")),
                     "").split())
    isa = sorted(f for f in flags if f.startswith(("avx", "amx")) or "vnni" in f)
    out = {"artifact": golden["version"], "cpu": cpu, "isa": isa, "prompts": len(texts),
           "golden_prompts": ng, "runs": rows,
           "max_abs_dp_vs_golden": max(r["max_abs_dp_vs_golden"] for r in rows),
           "max_abs_dp_vs_locked": max(r["max_abs_dp_vs_locked"] for r in rows)}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}: max |dp| vs golden {out['max_abs_dp_vs_golden']}, "
          f"vs locked {out['max_abs_dp_vs_locked']} on {cpu} ({' '.join(isa)})")


if __name__ == "__main__":
    main()
