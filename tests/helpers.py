"""Shared test helpers: real HTTP servers on 127.0.0.1 in background threads."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from pickspin.config import ServiceMatrix, parse_config
from stack.simbackend import SimSpec, create_sim_app

SHARED = __import__("pathlib").Path(__file__).resolve().parents[1].parent / "shared"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """A real threaded WSGI server for ``app`` on 127.0.0.1:<ephemeral>; stop() closes the socket."""

    def __init__(self, app: Flask, port: int = 0) -> None:
        self.app = app
        self.server: BaseWSGIServer = make_server("127.0.0.1", port, app, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._t = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._t.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._t.join(timeout=5)


@contextmanager
def sim_server(model: str = "sim-model", **kw: Any) -> Iterator[ServerThread]:
    s = ServerThread(create_sim_app(SimSpec(model=model, **kw)))
    try:
        yield s
    finally:
        s.stop()


def backend_entry(name: str, url: str, served: str, *, simulated: bool = True, max_concurrency: int = 8,
                  expected_latency_s: float = 1.0, health_path: str | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"name": name, "kind": "vllm", "url": url, "served_model_name": served,
                         "max_concurrency": max_concurrency, "simulated": simulated,
                         "expected_latency_s": expected_latency_s}
    if health_path:
        e["health_path"] = health_path
    return e


TRIO_CAPS = {
    "small": {"low": 0.9, "medium": 0.5, "high": 0.05},
    "medium": {"low": 0.95, "medium": 0.8, "high": 0.6},
    "large": {"low": 0.97, "medium": 0.92, "high": 0.85},
}
TRIO_COST = {"small": 0.02, "medium": 0.06, "large": 0.18}
TRIO_LAT = {"small": 0.5, "medium": 1.0, "large": 2.5}


def trio_matrix(urls: dict[str, list[str]], **extra: Any) -> ServiceMatrix:
    """small/medium/large models, one or more backends each, at the given URLs."""
    models = []
    for tier, tier_urls in urls.items():
        models.append({
            "name": f"{tier}-model", "tier": tier, "capability": TRIO_CAPS[tier],
            "cost": {"per_1k_tokens": TRIO_COST[tier]},
            "backends": [backend_entry(f"{tier}-b{i}", u, f"{tier}-served", expected_latency_s=TRIO_LAT[tier])
                         for i, u in enumerate(tier_urls)],
        })
    cfg: dict[str, Any] = {"models": models, **extra}
    cfg.setdefault("router", {})
    cfg["router"] = {"probe_interval_s": 0.2, "probe_timeout_s": 0.5, "first_byte_timeout_s": 5.0, **cfg["router"]}
    return parse_config(cfg)


def wait_until(pred: Any, timeout: float = 5.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return bool(pred())


REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def pickspin_cmd(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "stack.cli", *args]


def subprocess_env(**extra: str) -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "keda-scaler"), env.get("PYTHONPATH", "")])
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra)
    return env
