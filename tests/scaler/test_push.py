"""Router -> scaler demand push: a model at zero wakes on the router's word, not on the next scrape."""

from __future__ import annotations

import types
from collections.abc import Iterator

import grpc
import httpx
import pytest

from functions.router.app import create_app
from pickspin.config import parse_config
from pickspin_scaler.metadata import parse_metadata
from pickspin_scaler.prom import Poller, PollerConfig
from pickspin_scaler.push import parse_push
from tests.helpers import ServerThread as HTTPServerThread
from tests.helpers import sim_server

from .conftest import FakePrometheus
from .scaler_harness import ServerThread
from .test_grpc import StreamReader, metrics, ref

Stubs = tuple[types.ModuleType, types.ModuleType]


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_push_counts_as_demand_for_its_ttl_even_without_data() -> None:
    clock = Clock()
    p = Poller(PollerConfig(push_ttl_s=15.0), clock=clock)
    key = p.subscribe(parse_metadata({"model": "m"}))
    assert p.view(key).sample is None and not p.view(key).fresh
    woke: list[int] = []
    p.add_listener(lambda: woke.append(1))
    assert p.push("m", 3) == 1 and woke == [1]  # listeners (the open streams) run at once
    v = p.view(key)
    assert v.fresh and v.sample is not None and v.sample.demand == 3 and v.sample.last_used == clock.t
    clock.t += 15
    assert p.view(key).fresh
    clock.t += 1  # past the TTL: back to what Prometheus says (nothing yet)
    assert p.view(key).sample is None
    assert p.push("other", 1) == 0 and woke == [1]


@pytest.mark.parametrize(("body", "field"), [(b"{", "body"), (b"[]", "body"), (b'{"demand": 1}', "model"),
                                             (b'{"model": "m", "demand": -1}', "demand"),
                                             (b'{"model": "m", "demand": true}', "demand"),
                                             (b'{"model": "m", "demand": "2"}', "demand"),
                                             (b'{"model": "m", "demand": 2, "held": -1}', "held"),
                                             (b'{"model": "m", "demand": 2, "held": 3}', "held")])
def test_bad_push_bodies_name_the_field(body: bytes, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        parse_push(body)
    assert parse_push(b'{"model": "m"}') == ("m", 1.0, 0.0)
    assert parse_push(b'{"model": "m", "demand": 5, "held": 5}') == ("m", 5.0, 5.0)


@pytest.fixture
def scaler(fake_prom: FakePrometheus) -> Iterator[ServerThread]:
    st = ServerThread(PollerConfig(default_address=fake_prom.url, interval_s=0.2, max_staleness_s=5.0,
                                   query_timeout_s=1.0), push_port=0)
    yield st
    st.stop()


def test_the_router_wakes_a_model_at_zero_through_the_scaler_stream(keda_stubs: Stubs, scaler: ServerThread,
                                                                    fake_prom: FakePrometheus) -> None:
    """KEDA holds StreamIsActive open for a model Prometheus has seen no request for (none scraped since
    the request); the router sends a request there, the model is believed at zero, so it pushes; the
    stream says active at once."""
    pb2, pb2_grpc = keda_stubs
    md = {"model": "big", "idleSeconds": "300"}
    fake_prom.set(parse_metadata(md).queries(), rate=None, latency=None, demand=None, recent=None, total=None)
    ch = grpc.insecure_channel(scaler.address)
    reader = StreamReader(pb2_grpc.ExternalScalerStub(ch).StreamIsActive(ref(pb2, **md), timeout=60))
    push_url = f"http://127.0.0.1:{scaler.server.push_port}"
    with sim_server("big-served", ttft_s=0.0, tpot_s=0.0) as backend:
        matrix = parse_config({
            "models": [{"name": "big", "tier": "large", "capability": {"low": 1, "medium": 1, "high": 1},
                        "cost": {"per_1k_tokens": 0.1}, "scaling": {"idle_seconds": 300},
                        "backends": [{"name": "big-b", "kind": "vllm", "url": backend.url,
                                      "served_model_name": "big-served", "cold_start_s": 5}]}],
            "router": {"scaler_push_url": push_url, "active_probes": False}})
        app = create_app(matrix, start_prober=False)
        router = HTTPServerThread(app)
        try:
            assert reader.next(timeout=5) is False  # Prometheus: no request ever seen
            r = httpx.post(router.url + "/v1/chat/completions", timeout=10,
                           json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
            assert r.status_code == 200
            assert reader.next(timeout=3) is True  # pushed, not scraped: Prometheus still has nothing
            assert app.extensions["pickspin"].pusher.sent == 1
            metrics = httpx.get(f"http://127.0.0.1:{scaler.server.metrics_port}/metrics").text
            assert 'pickspin_scaler_demand_pushes_total{model="big"} 1.0' in metrics
        finally:
            router.stop()
            reader.call.cancel()
            ch.close()


def test_a_held_backlog_sizes_the_wake_zero_to_n(keda_stubs: Stubs, scaler: ServerThread,
                                                fake_prom: FakePrometheus) -> None:
    """Twenty requests held for a model at zero, Prometheus at 2 req/s x 1.5 s: GetMetrics (real gRPC) reports
    held + load = 23 against c = 8, so the HPA goes 0 -> 3 at once, not 1 and then more scrapes later."""
    pb2, pb2_grpc = keda_stubs
    md = {"model": "big", "concurrency": "8", "idleSeconds": "300"}
    fake_prom.set(parse_metadata(md).queries(), rate=2.0, latency=1.5, demand=0.0, recent=0.0, total=0.0)
    ch = grpc.insecure_channel(scaler.address)
    try:
        stub = pb2_grpc.ExternalScalerStub(ch)
        assert metrics(stub, pb2, ref(pb2, **md)).metricValueFloat == pytest.approx(3.0)
        r = httpx.post(f"http://127.0.0.1:{scaler.server.push_port}/v1/demand",
                       json={"model": "big", "demand": 20, "held": 20})
        assert r.status_code == 204
        v = metrics(stub, pb2, ref(pb2, **md))
        assert v.metricValueFloat == pytest.approx(23.0) and v.metricValue == 23
        r = httpx.post(f"http://127.0.0.1:{scaler.server.push_port}/v1/demand", json={"model": "big", "demand": 20})
        assert metrics(stub, pb2, ref(pb2, **md)).metricValueFloat == pytest.approx(20.0)  # not held: max, not sum
    finally:
        ch.close()


def test_push_endpoint_answers(scaler: ServerThread) -> None:
    url = f"http://127.0.0.1:{scaler.server.push_port}/v1/demand"
    assert httpx.post(url, content=b'{"model": "nobody"}').status_code == 404
    r = httpx.post(url, content=b'{"model": "m", "demand": -2}')
    assert r.status_code == 400 and r.json()["error"].startswith("demand:")
    assert httpx.post(url, content=b"x" * 5000).status_code == 413
    assert httpx.post(url.replace("/v1/demand", "/other"), content=b"{}").status_code == 404
