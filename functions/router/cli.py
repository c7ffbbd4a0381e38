"""``pickspin router`` (serve) and ``pickspin route`` (dry run from the shell)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("router", help="serve the router (OpenAI-compatible gateway) under gunicorn")
    p.add_argument("--config", help="service matrix YAML (default $PICKSPIN_CONFIG or config/local.yaml)")
    p.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")), help="default $PORT or 8080")
    p.add_argument("--workers", type=int, default=int(os.environ.get("PICKSPIN_WORKERS", "2")))
    p.add_argument("--worker-class", default=os.environ.get("PICKSPIN_WORKER_CLASS", "gthread"),
                   choices=["gthread", "gevent", "sync"])
    p.add_argument("--threads", type=int, default=int(os.environ.get("PICKSPIN_THREADS", "64")))
    p.set_defaults(func=_serve)

    r = sub.add_parser("route", help="dry run: show the decision and the score table for a prompt")
    r.add_argument("prompt", help="the user prompt")
    r.add_argument("--config")
    r.add_argument("--profile", help="operator profile (quality, cost, speed, balanced, ...)")
    r.add_argument("--model", default="auto")
    r.add_argument("--json", action="store_true", help="print JSON instead of a table")
    r.set_defaults(func=_route)


def _serve(args: argparse.Namespace) -> int:
    from pickspin.config import load_config
    from pickspin.serving import serve

    matrix = load_config(args.config)  # fail fast, in the master, with a message that names the field
    if args.config:
        os.environ["PICKSPIN_CONFIG"] = os.path.abspath(args.config)

    def factory() -> Any:
        from .app import create_app

        return create_app(os.environ.get("PICKSPIN_CONFIG"))

    serve(factory, host=args.host, port=args.port, workers=args.workers, worker_class=args.worker_class,
          threads=args.threads, name="pickspin-router", client_timeout_s=(
              matrix.router.client_request_timeout_s if matrix.router.slow_client_guard else None),
          max_prebuffer_bytes=matrix.router.max_body_bytes)
    return 0


def _route(args: argparse.Namespace) -> int:
    from pickspin.config import load_config
    from pickspin.errors import APIError

    from .app import RouterState, decide
    from .classifiers import classifier_ready

    matrix = load_config(args.config)
    st = RouterState.build(matrix)
    deadline = time.monotonic() + 60
    while not classifier_ready(st.classifier) and time.monotonic() < deadline:
        time.sleep(0.05)  # an in-process classifier is loading
    try:
        data = decide(st, args.prompt, args.profile or matrix.routing.default_profile, args.model).report()
    except APIError as e:
        print(json.dumps(e.body(), indent=2))
        return 1
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    c = data["complexity"]
    print(f"complexity: {c['class']} (confidence {c['confidence']}, {c['source']}, rule {c['rule']})")
    w = data["profile"]["weights"]
    print(f"profile:    {data['profile']['name']}  w_R={w['R']} w_T={w['T']} w_C={w['C']}")
    d = data["decision"]
    print(f"decision:   {d['model']} on {d['backend']}" if d else "decision:   none (no eligible backend)")
    print()
    hdr = f"{'model':<22} {'backend':<20} {'R_hat':>6} {'T_s':>7} {'T_hat':>6} {'C':>9} {'C_hat':>6} {'score':>6}"
    print(hdr)
    print("-" * len(hdr))
    for row in data["candidates"]:
        score = "-" if row["score"] is None else f"{row['score']:.3f}"
        print(f"{row['model']:<22} {row['backend']:<20} {row['R_hat']:>6.3f} {row['T_s']:>7.3f} "
              f"{row['T_hat']:>6.3f} {row['C']:>9.4f} {row['C_hat']:>6.3f} {score:>6}"
              + ("" if row["eligible"] else f"  ({row['reason']})"))
    sys.stdout.flush()
    return 0
