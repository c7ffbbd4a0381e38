"""Router overhead benchmark: router vs direct-to-backend, side by side in one run.

A fast stub backend (the sim backend with zero delays) on 127.0.0.1; the router in front of it
under gunicorn (gthread and gevent workers compared); load from `wrk` (a second process, keep-alive
connections) at concurrency 1, 8, 32, 128, non-streaming and streaming. Every run is bounded in
time. Writes bench/results/router.{md,json,png}.

    python bench/bench_router.py [--duration 4] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from pickspin.procs import terminate_group, wait_http_ok

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
PY = [sys.executable, "-m", "stack.cli"]
BODY = {"messages": [{"role": "user", "content": "list three colours"}], "max_tokens": 4}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], health: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=f"{REPO}:{REPO / 'keda-scaler'}")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    if not wait_http_ok(health, timeout=60, proc=p, interval=0.2):
        terminate_group(p)
        raise RuntimeError(f"{cmd} did not start")
    return p


_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _secs(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    assert m, text
    return float(m.group(1)) * _UNIT[m.group(2)]


def wrk(url: str, body: dict[str, Any], conns: int, duration: float) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                  f"wrk.body = {json.dumps(json.dumps(body))}\n")
    threads = min(2, conns)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{max(1, round(duration))}s", "--latency", "--timeout", "10s",
                          "-s", lua.name, url], capture_output=True, text=True, timeout=duration + 30).stdout
    os.unlink(lua.name)
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)
    return {"p50_ms": _secs(pct["50"]) * 1e3, "p99_ms": _secs(pct["99"]) * 1e3, "rps": rps,
            "non_2xx": float(bad.group(1)) if bad else 0.0, "socket_errors": 1.0 if errs else 0.0}


def worker_rss_mb(p: subprocess.Popen[bytes]) -> float:
    kids = psutil.Process(p.pid).children(recursive=True)
    return max((k.memory_info().rss for k in kids), default=0) / 2**20


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=4.0, help="seconds per load point")
    ap.add_argument("--quick", action="store_true", help="c=1,32 only")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("bench_router: needs wrk (apt-get install wrk; `make bench-router` installs it)", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    concs = [1, 32] if args.quick else [1, 8, 32, 128]
    bport = free_port()
    backend = start([*PY, "sim-backend", "--model", "stub", "--time-scale", "0", "--port", str(bport),
                     "--threads", "256", "--max-num-seqs", "100000", "--default-max-tokens", "4"],
                    f"http://127.0.0.1:{bport}/health")
    cfg_path = Path(tempfile.mkdtemp()) / "bench.yaml"
    cfg_path.write_text(yaml.safe_dump({"models": [{
        "name": "stub-model", "tier": "small", "capability": {"low": 1, "medium": 0.5, "high": 0.1},
        "cost": {"per_1k_tokens": 0.01},
        "backends": [{"name": "stub", "kind": "vllm", "url": f"http://127.0.0.1:{bport}",
                      "served_model_name": "stub", "max_concurrency": 100000, "simulated": True}]}]}))
    rows: list[dict[str, Any]] = []
    rss: dict[str, float] = {}
    try:
        direct = f"http://127.0.0.1:{bport}/v1/chat/completions"
        for worker_class in ("gthread", "gevent"):
            rport = free_port()
            router = start([*PY, "router", "--config", str(cfg_path), "--port", str(rport), "--workers", "2",
                            "--worker-class", worker_class, "--threads", "64"], f"http://127.0.0.1:{rport}/readyz")
            via = f"http://127.0.0.1:{rport}/v1/chat/completions"
            try:
                for stream in (False, True):
                    for c in concs:
                        body = {**BODY, "stream": stream}
                        d = wrk(direct, {**body, "model": "stub"}, c, args.duration)
                        r = wrk(via, {**body, "model": "auto"}, c, args.duration)
                        row = {"worker_class": worker_class, "stream": stream, "concurrency": c,
                               "direct_p50_ms": d["p50_ms"], "direct_p99_ms": d["p99_ms"], "direct_rps": d["rps"],
                               "router_p50_ms": r["p50_ms"], "router_p99_ms": r["p99_ms"], "router_rps": r["rps"],
                               "added_p50_ms": r["p50_ms"] - d["p50_ms"], "added_p99_ms": r["p99_ms"] - d["p99_ms"],
                               "router_non_2xx": r["non_2xx"]}
                        rows.append(row)
                        print(f"{worker_class:8} stream={stream!s:5} c={c:<4} direct p50 {d['p50_ms']:.2f} ms "
                              f"{d['rps']:.0f} rps | router p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms "
                              f"{r['rps']:.0f} rps", flush=True)
                rss[worker_class] = worker_rss_mb(router)
            finally:
                terminate_group(router)
    finally:
        terminate_group(backend)
    write(rows, rss, args.duration)
    return 0


def write(rows: list[dict[str, Any]], rss: dict[str, float], duration: float) -> None:
    meta = {"cpus": os.cpu_count(), "duration_s_per_point": duration, "load_generator": "wrk (keep-alive)",
            "router_workers": 2, "backend": "pickspin sim-backend --time-scale 0 (fast stub)",
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average_at_end": os.getloadavg()}
    (RESULTS / "router.json").write_text(json.dumps({"meta": meta, "rss_mb_per_worker": rss, "rows": rows}, indent=2))
    lines = ["# Router overhead: router vs direct-to-backend (same run)", "",
             f"Machine: {meta['cpus']} cores; wrk keep-alive; {duration:.0f} s per point; router 2 workers; "
             "backend, router and wrk share the same cores.", "",
             "| worker | stream | c | direct p50 ms | router p50 ms | added p50 ms | added p99 ms | direct req/s "
             "| router req/s | non-2xx |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['worker_class']} | {r['stream']} | {r['concurrency']} | {r['direct_p50_ms']:.2f} | "
                     f"{r['router_p50_ms']:.2f} | {r['added_p50_ms']:.2f} | {r['added_p99_ms']:.2f} | "
                     f"{r['direct_rps']:.0f} | {r['router_rps']:.0f} | {r['router_non_2xx']:.0f} |")
    lines += ["", "Added = router minus direct at the same concurrency; a negative added p99 means the direct run "
              "had the worse tail (both share 2 cores with wrk, so tails are noisy).",
              "", "RSS per router worker after the load: "
              + ", ".join(f"{k} {v:.0f} MB" for k, v in rss.items()), ""]
    (RESULTS / "router.md").write_text("\n".join(lines))
    plot(rows)


def plot(rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for wc, style in (("gthread", "-"), ("gevent", "--")):
        for stream, color in ((False, "tab:blue"), (True, "tab:orange")):
            sel = [r for r in rows if r["worker_class"] == wc and r["stream"] == stream]
            if not sel:
                continue
            cs = [r["concurrency"] for r in sel]
            lbl = f"{wc}, {'stream' if stream else 'non-stream'}"
            axes[0].plot(cs, [r["added_p50_ms"] for r in sel], style, color=color, marker="o", label=lbl)
            axes[1].plot(cs, [r["router_rps"] for r in sel], style, color=color, marker="o", label=lbl)
            if wc == "gthread":
                axes[1].plot(cs, [r["direct_rps"] for r in sel], ":", color=color, marker="x",
                             label=f"direct, {'stream' if stream else 'non-stream'}")
    for ax, title, ylabel in ((axes[0], "Added p50 latency (router - direct)", "ms"),
                              (axes[1], "Throughput", "requests/s")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent connections")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "router.png", dpi=120)


if __name__ == "__main__":
    sys.exit(main())
