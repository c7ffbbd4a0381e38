"""The routing decision's own cost, and `model: "auto"` against a named model as candidates grow.

1. In process, no I/O: ``decide()`` split into classify and rank, p50/p99 in microseconds, for 4, 8,
   16 and 32 candidates (4 models with 1, 2, 4, 8 backends each), `auto` (every candidate) and a
   named model (its backends only). Bounded: a fixed number of decisions per point.
2. Throughput under gunicorn (2 gthread workers) with wrk: `auto` vs a named model at 4 and 32
   backends, every backend pointing at one fast stub (the sim backend with zero delays), runs
   interleaved (auto, named, auto, named) so drift on a shared machine hits both alike.

Writes bench/results/decision.{md,json}.

    python bench/bench_decision.py [--decisions 3000] [--duration 3] [--no-load]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_router import PY, free_port, start, wrk
from functions.router.app import RouterState
from functions.router.scoring import rank
from pickspin.config import parse_config
from pickspin.procs import terminate_group

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
CANDIDATES = (4, 8, 16, 32)
PROMPTS = ["list three colours", "prove that sqrt(2) is irrational", "what is the capital of France",
           "design a distributed cache and explain why it is consistent", "summarise this paragraph",
           "tell me a story about a dragon", "implement quicksort in rust step by step", "hello there"]
TIERS = (("small", {"low": 0.9, "medium": 0.5, "high": 0.05}, 0.02, 0.5),
         ("medium", {"low": 0.95, "medium": 0.8, "high": 0.6}, 0.06, 1.0),
         ("large", {"low": 0.97, "medium": 0.92, "high": 0.85}, 0.18, 2.5),
         ("large", {"low": 0.98, "medium": 0.94, "high": 0.9}, 0.30, 3.0))


def config(n: int, url: str) -> dict[str, Any]:
    per = n // len(TIERS)
    models = []
    for i, (tier, caps, cost, lat) in enumerate(TIERS):
        models.append({"name": f"m{i}", "tier": tier, "capability": caps, "cost": {"per_1k_tokens": cost},
                       "backends": [{"name": f"m{i}-b{j}", "kind": "vllm", "url": url, "served_model_name": "stub",
                                     "max_concurrency": 100000, "expected_latency_s": lat, "simulated": True}
                                    for j in range(per)]})
    return {"models": models}


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def decision_cost(decisions: int) -> list[dict[str, Any]]:
    rows = []
    for n in CANDIDATES:
        st = RouterState.build(parse_config(config(n, "http://127.0.0.1:9")))
        prof = st.matrix.profiles["balanced"]
        for mode, cands in (("auto", st.by_endpoint["chat"]), ("named", st.by_model["m0"])):
            cls_us: list[float] = []
            rank_us: list[float] = []
            for i in range(decisions + 200):
                text = PROMPTS[i % len(PROMPTS)]
                t0 = time.perf_counter_ns()
                est = st.classifier.classify(text)
                t1 = time.perf_counter_ns()
                rank(cands, st.telemetry.snapshot, est, prof, max_error_rate=None, now=st.telemetry.clock())
                t2 = time.perf_counter_ns()
                if i >= 200:  # warm-up
                    cls_us.append((t1 - t0) / 1e3)
                    rank_us.append((t2 - t1) / 1e3)
            tot = [a + b for a, b in zip(cls_us, rank_us, strict=True)]
            row = {"candidates": len(cands), "backends_configured": n, "mode": mode,
                   "classify_p50_us": pct(cls_us, 0.5), "classify_p99_us": pct(cls_us, 0.99),
                   "rank_p50_us": pct(rank_us, 0.5), "rank_p99_us": pct(rank_us, 0.99),
                   "total_p50_us": pct(tot, 0.5), "total_p99_us": pct(tot, 0.99)}
            rows.append(row)
            print(f"{n:>2} backends {mode:5} ({len(cands):>2} candidates): classify p50 {row['classify_p50_us']:.1f} "
                  f"p99 {row['classify_p99_us']:.1f} us | rank p50 {row['rank_p50_us']:.1f} p99 "
                  f"{row['rank_p99_us']:.1f} us", flush=True)
    return rows


def throughput(duration: float, conns: int, reps: int) -> list[dict[str, Any]]:
    bport = free_port()
    backend = start([*PY, "sim-backend", "--model", "stub", "--time-scale", "0", "--port", str(bport),
                     "--threads", "256", "--max-num-seqs", "100000", "--default-max-tokens", "4"],
                    f"http://127.0.0.1:{bport}/health")
    rows = []
    body = {"messages": [{"role": "user", "content": "list three colours"}], "max_tokens": 4}
    try:
        for n in (4, 32):
            cfg = Path(tempfile.mkdtemp()) / "decision.yaml"
            cfg.write_text(yaml.safe_dump(config(n, f"http://127.0.0.1:{bport}")))
            rport = free_port()
            router = start([*PY, "router", "--config", str(cfg), "--port", str(rport), "--workers", "2",
                            "--threads", "64"], f"http://127.0.0.1:{rport}/readyz")
            url = f"http://127.0.0.1:{rport}/v1/chat/completions"
            try:
                wrk(url, {**body, "model": "auto"}, conns, 1)  # warm-up
                got: dict[str, list[float]] = {"auto": [], "named": []}
                for _ in range(reps):
                    for mode in ("auto", "named"):
                        r = wrk(url, {**body, "model": "auto" if mode == "auto" else "m0"}, conns, duration)
                        got[mode].append(r["rps"])
                        print(f"{n:>2} backends {mode:5}: {r['rps']:.0f} req/s (p50 {r['p50_ms']:.2f} ms, "
                              f"non-2xx {r['non_2xx']:.0f})", flush=True)
                auto, named = statistics.median(got["auto"]), statistics.median(got["named"])
                rows.append({"backends": n, "auto_rps": auto, "named_rps": named, "ratio": auto / named,
                             "auto_runs": got["auto"], "named_runs": got["named"]})
            finally:
                terminate_group(router)
    finally:
        terminate_group(backend)
    return rows


def write(cost: list[dict[str, Any]], load: list[dict[str, Any]], args: argparse.Namespace) -> None:
    meta = {"cpus": os.cpu_count(), "decisions_per_point": args.decisions, "wrk_duration_s": args.duration,
            "wrk_connections": args.connections, "reps": args.reps, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_average_at_end": os.getloadavg()}
    (RESULTS / "decision.json").write_text(json.dumps({"meta": meta, "cost": cost, "throughput": load}, indent=2))
    lines = ["# Routing decision: its own cost, and auto vs named model", "",
             f"Machine: {meta['cpus']} cores (shared); keyword classifier; {args.decisions} decisions per point "
             "after 200 warm-up; in process, no I/O.", "",
             "| backends | mode | candidates | classify p50 us | classify p99 us | rank p50 us | rank p99 us "
             "| total p50 us | total p99 us |", "|---|---|---|---|---|---|---|---|---|"]
    for r in cost:
        lines.append(f"| {r['backends_configured']} | {r['mode']} | {r['candidates']} | {r['classify_p50_us']:.1f} | "
                     f"{r['classify_p99_us']:.1f} | {r['rank_p50_us']:.1f} | {r['rank_p99_us']:.1f} | "
                     f"{r['total_p50_us']:.1f} | {r['total_p99_us']:.1f} |")
    if load:
        lines += ["", f"Throughput (gunicorn 2 gthread workers, wrk {args.connections} keep-alive connections, "
                      f"{args.duration:.0f} s per run, {args.reps} interleaved runs each, median; one fast stub "
                      "behind every backend; router, stub and wrk share the cores):", "",
                  "| backends | auto req/s | named req/s | auto / named | runs (auto; named) |", "|---|---|---|---|---|"]
        for r in load:
            lines.append(f"| {r['backends']} | {r['auto_rps']:.0f} | {r['named_rps']:.0f} | {r['ratio']:.2f} | "
                         f"{', '.join(f'{x:.0f}' for x in r['auto_runs'])}; "
                         f"{', '.join(f'{x:.0f}' for x in r['named_runs'])} |")
    (RESULTS / "decision.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--decisions", type=int, default=3000)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--no-load", action="store_true", help="only the in-process decision cost")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    cost = decision_cost(args.decisions)
    load: list[dict[str, Any]] = []
    if not args.no_load:
        if shutil.which("wrk"):
            load = throughput(args.duration, args.connections, args.reps)
        else:
            print("bench_decision: no wrk; throughput part skipped", file=sys.stderr)
    write(cost, load, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
