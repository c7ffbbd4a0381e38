"""Run a Flask app factory under gunicorn (the production WSGI server for every PickSpin function).

Worker class: ``gthread`` by default. Measured in bench/bench_router.py on 2 cores: gevent adds
~0.3 ms less at concurrency 1 but its p99 reached 1-2 s at 128 connections, where gthread stayed
under 0.35 s at the same throughput; ``gevent`` remains selectable.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from flask import Flask


def prepare_multiprocess_metrics(workers: int) -> None:
    """Several workers need prometheus_client's multiprocess mode, set before any metric exists."""
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="pickspin-prom-")
    d = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if d:
        from prometheus_client import values

        # prometheus_client picks its value class at import; it may have been imported already.
        values.ValueClass = values.get_value_class()
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):  # stale files of a previous run would be summed in
            p = os.path.join(d, f)
            if os.path.isfile(p):
                os.unlink(p)


def serve(
    factory: Callable[[], Flask],
    *,
    host: str,
    port: int,
    workers: int = 1,
    worker_class: str = "gthread",
    threads: int = 32,
    timeout: int = 0,
    graceful_timeout: int = 30,
    name: str = "pickspin",
    client_timeout_s: float | None = None,
    max_prebuffer_bytes: int = 1 << 20,
) -> None:
    """``client_timeout_s`` (gthread only): read each request's head and Content-Length body in the event
    loop and close a client that has not sent them within that time, so slow clients never hold a
    worker thread (pickspin/slowclient.py)."""
    from gunicorn.app.base import BaseApplication

    prepare_multiprocess_metrics(workers)
    worker_cls = worker_class
    if worker_class == "gthread" and client_timeout_s is not None:
        from pickspin.slowclient import GuardedThreadWorker

        GuardedThreadWorker.request_timeout_s = client_timeout_s
        GuardedThreadWorker.max_prebuffer_bytes = max_prebuffer_bytes
        worker_cls = "pickspin.slowclient.GuardedThreadWorker"

    class _App(BaseApplication):
        def load_config(self) -> None:
            opts: dict[str, Any] = {
                "bind": f"{host}:{port}",
                "workers": workers,
                "worker_class": worker_cls,
                "threads": threads if worker_class == "gthread" else 1,
                "worker_connections": 1000,
                # 0 = no worker timeout: long generations stream for minutes.
                "timeout": timeout,
                "graceful_timeout": graceful_timeout,
                "keepalive": 75,
                "proc_name": name,
                "accesslog": None,
                "preload_app": False,  # each worker builds its own state and prober
                "child_exit": _child_exit,
            }
            for k, v in opts.items():
                self.cfg.set(k, v)

        def load(self) -> Flask:
            return factory()

    try:
        _App().run()
    finally:
        d = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
        if d.startswith(os.path.join(tempfile.gettempdir(), "pickspin-prom-")):
            shutil.rmtree(d, ignore_errors=True)


def _child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
