"""``pickspin scorer``: serve the complexity classifier (``POST /v1/classify``) under gunicorn."""

from __future__ import annotations

import argparse
import os
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("scorer", help="serve the semantic complexity classifier (ONNX) under gunicorn")
    p.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8081")), help="default $PORT or 8081")
    p.add_argument("--model-dir", default=None,
                   help="artifact dir with model.onnx, tokenizer.json, labels.json (default: the shipped one)")
    p.add_argument("--max-batch", type=int, default=None, help="texts per model call (default 16)")
    p.add_argument("--max-wait-ms", type=float, default=None,
                   help="how long a request waits for others to batch with (default 2)")
    p.add_argument("--threads", type=int, default=None,
                   help="onnxruntime intra-op threads (default 1 on <= 2 cores, else 2)")
    p.add_argument("--http-threads", type=int, default=int(os.environ.get("PICKSPIN_SCORER_HTTP_THREADS", "32")),
                   help="gunicorn gthread threads: concurrent requests that can join a micro-batch")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from pickspin.serving import serve

    from .app import ScorerSettings, create_app
    from .engine import default_model_dir

    settings = ScorerSettings.from_env(model_dir=args.model_dir, max_batch=args.max_batch,
                                       max_wait_ms=args.max_wait_ms, threads=args.threads)
    md = settings.model_dir or str(default_model_dir())
    if not os.path.isfile(os.path.join(md, "model.onnx")):
        print(f"pickspin scorer: no model.onnx in {md} (build it with `make model` or pass --model-dir)")
        return 2

    def factory() -> Any:
        return create_app(settings)

    # One worker: the micro-batcher lives in the process and batches across its request threads.
    serve(factory, host=args.host, port=args.port, workers=1, worker_class="gthread", threads=args.http_threads,
          timeout=0, name="pickspin-scorer")
    return 0
