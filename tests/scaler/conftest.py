"""Fixtures for the scaler tests: KEDA's own stubs, a scriptable fake Prometheus, a real Prometheus."""

from __future__ import annotations

import importlib
import json
import math
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import urllib3
from werkzeug.serving import BaseWSGIServer, make_server

ROOT = Path(__file__).resolve().parents[2]
SHARED_PROTO = ROOT.parent / "shared" / "k8s" / "proto" / "externalscaler.v2.20.2.proto"


# -- KEDA's stubs, generated from the shared upstream proto at test time ----------------------------

@pytest.fixture(scope="session")
def keda_stubs(tmp_path_factory: pytest.TempPathFactory) -> tuple[types.ModuleType, types.ModuleType]:
    """(pb2, pb2_grpc) generated from ../shared/k8s/proto/externalscaler.v2.20.2.proto (KEDA v2.20.2)."""
    if not SHARED_PROTO.is_file():
        pytest.skip(f"KEDA's proto not found at {SHARED_PROTO} (../shared absent in this checkout): "
                    "cannot prove wire compatibility against upstream stubs")
    from pickspin_scaler._gen import generate

    out = tmp_path_factory.mktemp("keda_stubs") / "keda_upstream"
    proto_copy = out.parent / "externalscaler.proto"  # protoc names modules after the file
    proto_copy.write_text(SHARED_PROTO.read_text())
    generate(proto_copy, out, private_pool=True)
    (out / "__init__.py").write_text("")
    sys.path.insert(0, str(out.parent))
    try:
        pb2 = importlib.import_module("keda_upstream.externalscaler_pb2")
        pb2_grpc = importlib.import_module("keda_upstream.externalscaler_pb2_grpc")
    finally:
        sys.path.remove(str(out.parent))
    return pb2, pb2_grpc


# -- helpers -----------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(pred: Any, timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll ``pred()`` until truthy (returns it) or fail after ``timeout`` seconds (bounded loop)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class ThreadServer:
    """A WSGI app on 127.0.0.1:<ephemeral> in a daemon thread."""

    def __init__(self, app: Any, port: int = 0) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", port, app, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakePrometheus:
    """Answers /api/v1/query from a table {promql: value}; values may be None (empty), NaN or numbers.

    ``down = True`` makes it answer 503, like an unreachable/broken Prometheus.
    """

    def __init__(self) -> None:
        self.values: dict[str, float | None] = {}
        self.down = False
        self.queries: list[str] = []
        self._srv = ThreadServer(self._app)
        self.url = self._srv.url

    def set(self, queries: dict[str, str], **values: float | None) -> None:
        for name, v in values.items():
            self.values[queries[name]] = v

    def _app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if self.down:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"down"]
        q = parse_qs(environ.get("QUERY_STRING", "")).get("query", [""])[0]
        self.queries.append(q)
        v = self.values.get(q)
        result: list[dict[str, Any]] = []
        if v is not None:
            result = [{"metric": {}, "value": [time.time(), "NaN" if math.isnan(v) else repr(float(v))]}]
        body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def close(self) -> None:
        self._srv.close()


@pytest.fixture
def fake_prom() -> Iterator[FakePrometheus]:
    fp = FakePrometheus()
    yield fp
    fp.close()


# -- a real Prometheus (Debian package `prometheus`) ----------------------------------------------------

class RealPrometheus:
    """``prometheus`` on 127.0.0.1:<free port> with a temp config and data dir; restartable on the same port."""

    def __init__(self, binary: str, targets: list[str], scrape_interval: str = "1s") -> None:
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="pickspin-prom-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = {"global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
               "scrape_configs": [{"job_name": "pickspin-router", "static_configs": [{"targets": targets}]}]}
        (self.dir / "prometheus.yml").write_text(json.dumps(cfg))  # JSON is valid YAML
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = urllib3.PoolManager(retries=False)

    def start(self, timeout: float = 30.0) -> None:
        log = (self.dir / "prometheus.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h",
             "--web.enable-lifecycle"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        wait_until(self._ready, timeout, 0.2, "prometheus /-/ready")

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited: {(self.dir / 'prometheus.log').read_text()[-2000:]}")
        try:
            return self.http.request("GET", f"{self.url}/-/ready", timeout=1.0).status == 200
        except urllib3.exceptions.HTTPError:
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        r = self.http.request("GET", f"{self.url}/api/v1/query", fields={"query": promql}, timeout=5.0)
        return json.loads(r.data)["data"]["result"]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if not path:
        pytest.skip("the `prometheus` binary is not installed (Debian package `prometheus`; `make` installs it): "
                    "real-Prometheus end-to-end tests skipped")
    return path
