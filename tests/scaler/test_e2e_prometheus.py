"""End to end with a REAL Prometheus (Debian package) scraping a real router and a simulated vLLM backend.

router (Flask, real app) -> sim backend (pickspin sim-backend app); Prometheus scrapes both every 1 s;
the scaler polls Prometheus and is called through KEDA's own stubs. Checks: GetMetrics tracks the
client-measured r * lat within 20% (router and vLLM query flavours), IsActive turns false only after tau
of idleness, and a Prometheus outage gives last values, then UNAVAILABLE, then recovery.
"""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import urllib3

from pickspin.config import parse_config
from pickspin_scaler.prom import PollerConfig

from .conftest import RealPrometheus, ThreadServer, prometheus_binary, wait_until
from .scaler_harness import ServerThread

pytestmark = pytest.mark.slow

MODEL = "e2e-model"
SERVED = "e2e/served-model"
WINDOW = 10  # windowSeconds
TAU = 4  # idleSeconds
WORKERS = 4
LOAD_SECONDS = 16.0
MAX_STALENESS = 4.0


@dataclass
class Stack:
    prom: RealPrometheus
    scaler: ServerThread
    router_url: str
    pb2: Any
    stub: Any


@pytest.fixture(scope="module")
def stack(keda_stubs: tuple[types.ModuleType, types.ModuleType]) -> Iterator[Stack]:
    binary = prometheus_binary()
    from functions.router.app import create_app
    from stack.simbackend import SimSpec, create_sim_app

    sim = ThreadServer(create_sim_app(SimSpec(model=SERVED, ttft_s=0.05, tpot_s=0.01, max_num_seqs=64)))
    matrix = parse_config({"models": [{
        "name": MODEL, "tier": "large", "capability": {"low": 0.9, "medium": 0.9, "high": 0.9},
        "cost": {"per_1k_tokens": 0.1},
        "backends": [{"name": "e2e-sim", "kind": "vllm", "url": sim.url, "served_model_name": SERVED,
                      "max_concurrency": 64, "simulated": True}]}],
        "router": {"first_byte_timeout_s": 10}})
    router = ThreadServer(create_app(matrix, start_prober=False))
    prom = RealPrometheus(binary, [f"127.0.0.1:{router.port}", f"127.0.0.1:{sim.port}"])
    scaler: ServerThread | None = None
    ch: grpc.Channel | None = None
    try:
        prom.start()
        scaler = ServerThread(PollerConfig(default_address=prom.url, interval_s=0.5, max_staleness_s=MAX_STALENESS,
                                           query_timeout_s=1.0))
        ch = grpc.insecure_channel(scaler.address)
        pb2, pb2_grpc = keda_stubs
        yield Stack(prom, scaler, router.url, pb2, pb2_grpc.ExternalScalerStub(ch))
    finally:
        if ch is not None:
            ch.close()
        if scaler is not None:
            scaler.stop()
        prom.cleanup()
        router.close()
        sim.close()


def _ref(s: Stack, **md: str) -> Any:
    meta = {"scalerAddress": "pickspin-scaler:6000", "model": MODEL, "tier": "large", "concurrency": "2",
            "windowSeconds": str(WINDOW), "idleSeconds": str(TAU), **md}
    return s.pb2.ScaledObjectRef(name=MODEL, namespace="pickspin", scalerMetadata=meta)


def _metric(s: Stack, ref: Any) -> float:
    req = s.pb2.GetMetricsRequest(scaledObjectRef=ref, metricName="pickspin-e2e-model-concurrency")
    return float(s.stub.GetMetrics(req, timeout=10).metricValues[0].metricValueFloat)


class Load:
    """WORKERS closed-loop clients against the router; records (finish time, latency) per request."""

    def __init__(self, url: str, seconds: float) -> None:
        self.url, self.seconds = url, seconds
        self.done: list[tuple[float, float]] = []
        self.errors = 0
        self.lock = threading.Lock()
        self.http = urllib3.PoolManager(maxsize=WORKERS, retries=False)
        self.threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(WORKERS)]
        self.t_end = 0.0

    def start(self) -> None:
        self.deadline = time.monotonic() + self.seconds
        for t in self.threads:
            t.start()

    def _worker(self) -> None:
        while time.monotonic() < self.deadline:
            self._one()

    def _one(self) -> None:
        body = b'{"model": "%s", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 20}' % MODEL.encode()
        t0 = time.monotonic()
        r = self.http.request("POST", f"{self.url}/v1/chat/completions", body=body,
                              headers={"Content-Type": "application/json"}, timeout=10.0)
        t1 = time.monotonic()
        with self.lock:
            if r.status == 200:
                self.done.append((t1, t1 - t0))
            else:
                self.errors += 1

    def join(self) -> None:
        for t in self.threads:
            t.join(30)
        self.t_end = time.monotonic()

    def truth(self, now: float, window: float) -> float:
        """Client-side r * lat over the last ``window`` seconds (Little's law on what the clients saw)."""
        with self.lock:
            recent = [lat for t, lat in self.done if now - window <= t <= now]
        if not recent:
            return 0.0
        return (len(recent) / window) * (sum(recent) / len(recent))


def test_get_metrics_tracks_r_times_lat_then_inactive_after_tau(stack: Stack) -> None:
    s = stack
    router_ref = _ref(s)
    vllm_ref = _ref(s, queryFlavor="vllm", servedModelName=SERVED)
    # The same with demand-now taken out (PromQL override), so the reported value is r * lat alone.
    router_load = _ref(s, demandQuery="vector(0)")
    vllm_load = _ref(s, queryFlavor="vllm", servedModelName=SERVED, demandQuery="vector(0)")
    assert s.stub.IsActive(router_ref, timeout=10).result is False  # no traffic yet, large tier: floor 0
    assert _metric(s, router_ref) == 0.0
    # Warm up: one request creates the series; wait until Prometheus has them, so the windows measured
    # below start after the series exist (a series born inside a rate() window is under-counted).
    warm = Load(s.router_url, 0.0)
    warm._one()
    wait_until(lambda: s.prom.query(f'pickspin_requests_total{{model="{MODEL}"}}') and
               s.prom.query(f'vllm:e2e_request_latency_seconds_count{{model_name="{SERVED}"}}'), 20, 0.2,
               "series scraped")
    time.sleep(1.5)
    load = Load(s.router_url, LOAD_SECONDS)
    load.start()
    time.sleep(WINDOW + 4.0)  # one full window of load plus scrape (1 s) and poll (0.5 s) lag, with margin
    assert s.stub.IsActive(router_ref, timeout=10).result is True
    now = time.monotonic()
    got_router, got_vllm = _metric(s, router_ref), _metric(s, vllm_ref)
    load_router, load_vllm = _metric(s, router_load), _metric(s, vllm_load)
    # The scaler sees data ~1-2 s old (scrape 1 s + poll 0.5 s): compare with the truth over a window ending then.
    truth = load.truth(now - 1.5, WINDOW)
    load.join()
    assert load.errors == 0, f"{load.errors} failed requests"
    assert len(load.done) > 50, f"only {len(load.done)} requests completed"
    assert truth > 1.0, truth  # 4 closed-loop clients keep ~4 requests in service
    # r * lat from Prometheus (router histogram / vLLM histogram) tracks the clients' r * lat within 20%.
    assert load_router == pytest.approx(truth, rel=0.20), (load_router, truth)
    assert load_vllm == pytest.approx(truth, rel=0.20), (load_vllm, truth)
    # With demand now included (default queries) the value is max(r * lat, demand): still within 20%.
    assert got_router == pytest.approx(truth, rel=0.20), (got_router, truth)
    assert got_vllm == pytest.approx(truth, rel=0.20), (got_vllm, truth)
    assert got_router >= load_router - 1e-9 and got_vllm >= load_vllm - 1e-9

    # Idle: still active within tau, inactive after tau (never earlier), so KEDA scales to zero.
    last_request = max(t for t, _ in load.done)
    assert s.stub.IsActive(router_ref, timeout=10).result is True
    went_false = wait_until(lambda: (not s.stub.IsActive(router_ref, timeout=10).result) and time.monotonic(),
                            TAU + WINDOW + 15, 0.2, "IsActive false after tau")
    # (0.1 s: the router counts a request a moment before its client has read the response)
    assert went_false - last_request >= TAU - 0.1, f"inactive {went_false - last_request:.2f}s after, tau {TAU}s"
    wait_until(lambda: not s.stub.IsActive(vllm_ref, timeout=10).result, TAU + 10, 0.2, "vLLM flavour inactive")
    print(f"r*lat truth {truth:.3f}; r*lat via router metrics {load_router:.3f}, via vLLM metrics {load_vllm:.3f}; "
          f"with demand: router flavour {got_router:.3f}, vLLM flavour {got_vllm:.3f}; "
          f"inactive {went_false - last_request:.1f}s after the last request (tau {TAU}s)")


def test_prometheus_outage_last_values_then_unavailable_then_recovery(stack: Stack) -> None:
    s = stack
    ref = _ref(s, warmPool="1")  # floor 1 * c 2 = 2.0 whatever the traffic
    wait_until(lambda: _metric(s, ref) == 2.0, 10, 0.2, "floor value")
    s.prom.stop()
    t_stop = time.monotonic()
    assert _metric(s, ref) == 2.0  # last good value, from the cache

    def unavailable() -> bool:
        try:
            _metric(s, ref)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAVAILABLE, e
            return True
        return False

    wait_until(unavailable, MAX_STALENESS + 10, 0.2, "UNAVAILABLE after max staleness")
    assert time.monotonic() - t_stop >= MAX_STALENESS - 1.0  # the last values were served for the bound first
    assert s.stub.IsActive(ref, timeout=10).result is True  # a warm floor never reports inactive
    s.prom.start()
    wait_until(lambda: _ok(lambda: _metric(s, ref) == 2.0), 30, 0.2, "recovery after Prometheus restart")


def _ok(fn: Any) -> bool:
    try:
        return bool(fn())
    except grpc.RpcError:
        return False
