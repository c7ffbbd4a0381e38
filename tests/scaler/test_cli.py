"""`pickspin scaler` as a process: serves health and metrics, preloads the matrix, exits cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import urllib3
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .conftest import FakePrometheus, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_cli_module_import_is_cheap() -> None:
    code = "import sys, pickspin_scaler.cli; print('grpc' in sys.modules, 'pickspin_scaler.server' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT / 'keda-scaler'}")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_scaler_process_serves_then_stops_on_sigterm(fake_prom: FakePrometheus) -> None:
    port, mport = free_port(), free_port()
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT / 'keda-scaler'}")
    cmd = [sys.executable, "-m", "stack.cli", "scaler", "--host", "127.0.0.1", "--port", str(port),
           "--metrics-port", str(mport), "--prometheus", fake_prom.url, "--poll-interval", "0.2",
           "--config", str(ROOT / "config" / "local.yaml"), "--grace", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        health = health_pb2_grpc.HealthStub(ch)

        def serving() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                r = health.Check(health_pb2.HealthCheckRequest(service="externalscaler.ExternalScaler"), timeout=2)
            except grpc.RpcError:
                return False
            return r.status == health_pb2.HealthCheckResponse.SERVING

        wait_until(serving, 30, 0.2, "scaler SERVING")
        http = urllib3.PoolManager(retries=False)
        # The three models of config/local.yaml are polled from the start (no trigger has asked yet).
        wait_until(lambda: "pickspin_scaler_subscriptions 3.0" in http.request(
            "GET", f"http://127.0.0.1:{mport}/metrics", timeout=2).data.decode(), 10, 0.2, "3 subscriptions")
        wait_until(lambda: any("smollm2-135m" in q for q in fake_prom.queries), 10, 0.1, "poll of the matrix")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        ch.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
