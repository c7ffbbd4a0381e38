"""The real grpc.aio scaler on an ephemeral port, called through stubs generated from KEDA's v2.20.2 proto.

Prometheus is a scriptable fake here (tests/scaler/test_e2e_prometheus.py uses the real one).
"""

from __future__ import annotations

import math
import queue
import threading
import time
import types
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import urllib3
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pickspin_scaler.metadata import parse_metadata
from pickspin_scaler.prom import PollerConfig

from .conftest import FakePrometheus, free_port, wait_until
from .scaler_harness import ServerThread

Stubs = tuple[types.ModuleType, types.ModuleType]


@pytest.fixture
def scaler(fake_prom: FakePrometheus) -> Iterator[ServerThread]:
    st = ServerThread(PollerConfig(default_address=fake_prom.url, interval_s=0.1, max_staleness_s=1.5,
                                   query_timeout_s=1.0))
    yield st
    st.stop()


@pytest.fixture
def channel(scaler: ServerThread) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(scaler.address)
    yield ch
    ch.close()


@pytest.fixture
def stub(keda_stubs: Stubs, channel: grpc.Channel) -> Any:
    return keda_stubs[1].ExternalScalerStub(channel)


def ref(pb2: Any, **md: str) -> Any:
    # KEDA passes the whole trigger metadata, its own keys included.
    return pb2.ScaledObjectRef(name="llama", namespace="ai", scalerMetadata={"scalerAddress": "scaler:6000", **md})


def metrics(stub: Any, pb2: Any, r: Any) -> Any:
    resp = stub.GetMetrics(pb2.GetMetricsRequest(scaledObjectRef=r, metricName="pickspin-m-concurrency"), timeout=10)
    assert len(resp.metricValues) == 1
    return resp.metricValues[0]


def test_get_metric_spec_target_is_concurrency(keda_stubs: Stubs, stub: Any) -> None:
    pb2, _ = keda_stubs
    resp = stub.GetMetricSpec(ref(pb2, model="Llama-3.1-70B", concurrency="8"), timeout=10)
    assert len(resp.metricSpecs) == 1
    spec = resp.metricSpecs[0]
    assert spec.metricName == "pickspin-llama-3-1-70b-concurrency"
    assert spec.targetSize == 8 and spec.targetSizeFloat == 8.0


# (metadata, rate, latency, demand, expected metric value, expected HPA replicas = ceil(value / c))
METRIC_CASES = [
    ({"concurrency": "2"}, 10.0, 0.5, 0.0, 5.0, 3),  # Little's law: L = 5, c = 2 -> 3 replicas
    ({"concurrency": "4", "tier": "small"}, 0.0, math.nan, 0.0, 4.0, 1),  # zero load, tier floor 1
    ({"concurrency": "4", "warmPool": "3"}, 1.0, 1.0, 0.0, 12.0, 3),  # explicit warm pool above the load
    ({"concurrency": "4"}, None, None, 7.0, 7.0, 2),  # no history, 7 requests waiting now (cold start)
    ({"concurrency": "8"}, 40.0, 2.0, 20.0, 80.0, 10),  # burst
    ({"concurrency": "4"}, math.nan, math.nan, math.nan, 0.0, 0),  # NaN everywhere counts as 0
    ({"concurrency": "1"}, 1e300, 1.0, 0.0, 1e300, None),  # absurd data must not break the int64 field
]


@pytest.mark.parametrize(("md", "rate", "lat", "demand", "value", "replicas"), METRIC_CASES)
def test_get_metrics_reports_max_of_load_floor_and_demand(
        keda_stubs: Stubs, stub: Any, fake_prom: FakePrometheus, md: dict[str, str], rate: float | None,
        lat: float | None, demand: float | None, value: float, replicas: int | None) -> None:
    pb2, _ = keda_stubs
    full = {"model": "m", **md}
    fake_prom.set(parse_metadata(full).queries(), rate=rate, latency=lat, demand=demand, recent=1.0, total=5.0)
    mv = metrics(stub, pb2, ref(pb2, **full))
    assert mv.metricName == "pickspin-m-concurrency"
    assert mv.metricValueFloat == pytest.approx(value)
    assert mv.metricValue == min(2**62, math.ceil(value - 1e-9))  # the deprecated int field is filled too
    c = int(md["concurrency"])
    if replicas is not None:
        assert math.ceil(mv.metricValueFloat / c - 1e-9) == replicas


def test_is_active_follows_demand_then_idles_past_tau(keda_stubs: Stubs, stub: Any,
                                                        fake_prom: FakePrometheus) -> None:
    pb2, _ = keda_stubs
    md = {"model": "m", "idleSeconds": "1", "concurrency": "4"}
    q = parse_metadata(md).queries()
    fake_prom.set(q, rate=0.0, latency=math.nan, demand=0.0, recent=0.0, total=0.0)
    r = ref(pb2, **md)
    assert stub.IsActive(r, timeout=10).result is False  # never used, floor 0
    fake_prom.set(q, demand=2.0)  # requests waiting at the router
    wait_until(lambda: stub.IsActive(r, timeout=10).result is True, 5, what="IsActive true on demand")
    fake_prom.set(q, demand=0.0)
    # Still active right after (used within tau = 1 s), then inactive.
    wait_until(lambda: stub.IsActive(r, timeout=10).result is False, 5, what="IsActive false after tau")
    # A new request on the counter (no demand captured in between) counts as use again.
    fake_prom.set(q, total=1.0)
    wait_until(lambda: stub.IsActive(r, timeout=10).result is True, 5, what="IsActive true on counter move")


def test_warm_floor_keeps_model_active(keda_stubs: Stubs, stub: Any, fake_prom: FakePrometheus) -> None:
    pb2, _ = keda_stubs
    md = {"model": "small-one", "tier": "small", "idleSeconds": "0"}
    fake_prom.set(parse_metadata(md).queries(), rate=0.0, latency=math.nan, demand=0.0, recent=0.0, total=0.0)
    assert stub.IsActive(ref(pb2, **md), timeout=10).result is True
    md0 = {"model": "small-one", "tier": "small", "warmPool": "0", "idleSeconds": "0"}
    assert stub.IsActive(ref(pb2, **md0), timeout=10).result is False


@pytest.mark.parametrize(("md", "key"), [
    ({}, "model"), ({"model": "m", "concurrency": "lots"}, "concurrency"), ({"model": "m", "tier": "xl"}, "tier"),
    ({"model": "m", "idleSeconds": "-5"}, "idleSeconds"),
])
def test_bad_metadata_is_invalid_argument_naming_the_key(keda_stubs: Stubs, stub: Any, md: dict[str, str],
                                                         key: str) -> None:
    pb2, _ = keda_stubs
    r = ref(pb2, **md)
    calls = [lambda: stub.GetMetricSpec(r, timeout=10), lambda: stub.IsActive(r, timeout=10),
             lambda: stub.GetMetrics(pb2.GetMetricsRequest(scaledObjectRef=r, metricName="x"), timeout=10),
             lambda: next(iter(stub.StreamIsActive(r, timeout=10)))]
    for call in calls:
        with pytest.raises(grpc.RpcError) as ei:
            call()
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"scalerMetadata.{key}" in ei.value.details()


class StreamReader:
    """Reads a server stream on a thread so the test can wait for messages with a bound."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.q: queue.Queue[Any] = queue.Queue()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        try:
            for msg in self.call:
                self.q.put(msg.result)
        except grpc.RpcError as e:
            self.q.put(e)
        self.q.put(StopIteration)

    def next(self, timeout: float = 10.0) -> Any:
        return self.q.get(timeout=timeout)


def test_stream_is_active_yields_on_open_and_on_change(keda_stubs: Stubs, stub: Any,
                                                       fake_prom: FakePrometheus) -> None:
    pb2, _ = keda_stubs
    md = {"model": "m", "idleSeconds": "0.5"}
    q = parse_metadata(md).queries()
    fake_prom.set(q, rate=0.0, latency=math.nan, demand=0.0, recent=0.0, total=3.0)
    reader = StreamReader(stub.StreamIsActive(ref(pb2, **md), timeout=60))
    assert reader.next() is False  # current state on open
    time.sleep(0.5)
    assert reader.q.empty()  # nothing more while nothing changes
    fake_prom.set(q, demand=1.0)
    assert reader.next() is True
    fake_prom.set(q, demand=0.0)
    assert reader.next() is False  # after tau = 0.5 s of idleness
    reader.call.cancel()


def test_prometheus_down_serves_last_values_then_unavailable_then_recovers(
        keda_stubs: Stubs, stub: Any, fake_prom: FakePrometheus, scaler: ServerThread) -> None:
    pb2, _ = keda_stubs
    md = {"model": "m", "concurrency": "2", "idleSeconds": "600"}
    fake_prom.set(parse_metadata(md).queries(), rate=4.0, latency=1.0, demand=1.0, recent=3.0, total=9.0)
    r = ref(pb2, **md)
    floor_md = {"model": "f", "warmPool": "1"}
    fake_prom.set(parse_metadata(floor_md).queries(), rate=0.0, latency=math.nan, demand=0.0, recent=0.0, total=0.0)
    rf = ref(pb2, **floor_md)
    assert metrics(stub, pb2, r).metricValueFloat == pytest.approx(4.0)
    assert stub.IsActive(rf, timeout=10).result is True
    fake_prom.down = True
    t0 = time.monotonic()
    assert metrics(stub, pb2, r).metricValueFloat == pytest.approx(4.0)  # last good values, within staleness
    assert stub.IsActive(r, timeout=10).result is True

    def unavailable() -> bool:
        try:
            metrics(stub, pb2, r)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAVAILABLE
            assert "old" in e.details() and "m" in e.details()
            return True
        return False

    wait_until(unavailable, 10, what="UNAVAILABLE after max staleness")
    assert time.monotonic() - t0 >= 1.0  # served last values for (roughly) the staleness bound first
    with pytest.raises(grpc.RpcError) as ei:
        stub.IsActive(r, timeout=10)
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    assert stub.IsActive(rf, timeout=10).result is True  # a warm floor needs no data: never below it
    fake_prom.down = False
    wait_until(lambda: _ok(lambda: metrics(stub, pb2, r).metricValueFloat == pytest.approx(4.0)), 10,
               what="recovery")
    body = urllib3.request("GET", f"http://127.0.0.1:{scaler.server.metrics_port}/metrics").data.decode()
    assert 'pickspin_scaler_poll_errors_total{model="m"}' in body
    assert 'pickspin_scaler_target_replicas{model="m"} 2.0' in body
    assert 'pickspin_scaler_staleness_seconds{model="m"}' in body
    assert 'pickspin_scaler_rpcs_total{code="UNAVAILABLE",method="GetMetrics"}' in body


def _ok(fn: Any) -> bool:
    try:
        return bool(fn())
    except grpc.RpcError:
        return False


def test_unreachable_prometheus_is_unavailable_not_a_hang(keda_stubs: Stubs, fake_prom: FakePrometheus) -> None:
    pb2, pb2_grpc = keda_stubs
    dead = f"http://127.0.0.1:{free_port()}"  # allow-listed, but nothing listens there
    st = ServerThread(PollerConfig(default_address=fake_prom.url, allowed_addresses=(dead,), interval_s=0.1,
                                   query_timeout_s=1.0))
    try:
        with grpc.insecure_channel(st.address) as ch:
            stub = pb2_grpc.ExternalScalerStub(ch)
            r = ref(pb2, model="m", prometheusAddress=dead)
            t0 = time.monotonic()
            with pytest.raises(grpc.RpcError) as ei:
                metrics(stub, pb2, r)
            assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "no Prometheus data yet" in ei.value.details()
            assert time.monotonic() - t0 < 9  # bounded by the first-poll wait, far below KEDA's timeout
    finally:
        st.stop()


def test_health_service_and_graceful_shutdown(keda_stubs: Stubs, fake_prom: FakePrometheus) -> None:
    pb2, pb2_grpc = keda_stubs
    st = ServerThread(PollerConfig(default_address=fake_prom.url, interval_s=0.1), grace_s=2.0)
    ch = grpc.insecure_channel(st.address)
    try:
        h = health_pb2_grpc.HealthStub(ch)
        for svc in ("", "externalscaler.ExternalScaler"):
            resp = h.Check(health_pb2.HealthCheckRequest(service=svc), timeout=10)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        md = {"model": "m"}
        fake_prom.set(parse_metadata(md).queries(), rate=0.0, latency=0.0, demand=0.0, recent=0.0, total=0.0)
        reader = StreamReader(pb2_grpc.ExternalScalerStub(ch).StreamIsActive(ref(pb2, **md), timeout=60))
        assert reader.next() is False
        t0 = time.monotonic()
        st.stop()
        assert time.monotonic() - t0 < 10
        end = reader.next(10)  # the open stream is closed by the shutdown, not left hanging
        assert end is StopIteration or isinstance(end, grpc.RpcError)
    finally:
        ch.close()
        st.stop()


def _shape(fd: Any) -> dict[str, Any]:
    """Everything that matters on the wire: package, messages' fields (number, type, label), RPCs."""
    def msg(d: Any) -> dict[str, Any]:
        return {"fields": {f.name: (f.number, f.type, f.is_repeated, f.message_type.full_name if f.message_type else None)
                           for f in d.fields},
                "nested": {n.name: msg(n) for n in d.nested_types}}
    svc = fd.services_by_name["ExternalScaler"]
    return {"package": fd.package,
            "messages": {name: msg(d) for name, d in fd.message_types_by_name.items()},
            "rpcs": {m.name: (m.input_type.full_name, m.output_type.full_name, m.server_streaming, m.client_streaming)
                     for m in svc.methods}}


def test_own_proto_matches_keda_field_for_field(keda_stubs: Stubs) -> None:
    from pickspin_scaler._generated import externalscaler_pb2 as ours

    theirs = keda_stubs[0]
    assert _shape(ours.DESCRIPTOR) == _shape(theirs.DESCRIPTOR)
    assert set(_shape(ours.DESCRIPTOR)["rpcs"]) == {"IsActive", "StreamIsActive", "GetMetricSpec", "GetMetrics"}


def test_unused_subscriptions_expire_with_their_series(fake_prom: FakePrometheus) -> None:
    from pickspin_scaler.prom import Poller

    now = [1000.0]
    p = Poller(PollerConfig(default_address=fake_prom.url, expire_after_s=60), clock=lambda: now[0])
    md = parse_metadata({"model": "gone", "idleSeconds": "0"})
    pinned = parse_metadata({"model": "kept"})
    fake_prom.set(md.queries(), rate=1.0, latency=1.0, demand=0.0, recent=0.0, total=1.0)
    key = p.subscribe(md)
    p.subscribe(pinned, pinned=True)
    p.poll_once()
    assert p.view(key).fresh
    text = p.metrics.registry.get_sample_value("pickspin_scaler_metric_value", {"model": "gone"})
    assert text == 1.0
    now[0] += 61
    p.poll_once()
    assert not p.view(key).attempted and p.view(key).error == "not subscribed"
    assert p.metrics.registry.get_sample_value("pickspin_scaler_metric_value", {"model": "gone"}) is None
    assert p.metrics.registry.get_sample_value("pickspin_scaler_subscriptions") == 1.0
    p.stop()


def test_committed_stubs_match_the_proto(tmp_path: Any) -> None:
    """keda-scaler/gen.sh output is committed: it must still be what the .proto says (no drift)."""
    import importlib.util

    from pickspin_scaler._gen import PROTO, generate
    from pickspin_scaler._generated import externalscaler_pb2 as committed

    pb2_path, _ = generate(PROTO, tmp_path / "regen", private_pool=True)
    spec = importlib.util.spec_from_file_location("regen_externalscaler_pb2", pb2_path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.DESCRIPTOR.serialized_pb == committed.DESCRIPTOR.serialized_pb, "run: bash keda-scaler/gen.sh"
