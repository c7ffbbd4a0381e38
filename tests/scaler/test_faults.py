"""Regression tests for the scaler defects found by fault injection (issue 12, items 10-12).

Each test fails on the code before the fix: a hung Prometheus address stopped every other
subscription being polled; a trigger could send the bearer token to any URL; the metadata cache
and the per-model error series grew without bound; URL validation let ``http://`` through.
The gRPC tests talk to the real grpc.aio server on an ephemeral port on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pickspin_scaler.metadata import MetadataError, parse_metadata
from pickspin_scaler.prom import Poller, PollerConfig, PromClient, PromError, ScalerMetrics

from .conftest import FakePrometheus, ThreadServer, free_port
from .scaler_harness import ServerThread

Stubs = tuple[types.ModuleType, types.ModuleType]


class Recorder:
    """An HTTP endpoint that records every request (path and Authorization header) and answers a Prometheus 0."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self.srv = ThreadServer(self._app)
        self.url = self.srv.url

    def _app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.requests.append((environ.get("PATH_INFO", ""), environ.get("HTTP_AUTHORIZATION")))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"status":"success","data":{"resultType":"vector","result":[]}}']

    def close(self) -> None:
        self.srv.close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.close()


# -- item 10: one failing or hanging subscription must not stop the others ---------------------------------

class HangingAddress(PromClient):
    """Queries to ``hung`` block until ``release`` is set (bounded); ``bad`` fails at once; others answer 1."""

    def __init__(self, hung: str, bad_model: str) -> None:
        super().__init__(1.0)
        self.hung, self.bad_model = hung, bad_model
        self.release = threading.Event()
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def query(self, address: str, promql: str) -> float | None:
        with self._lock:
            self.calls[address] = self.calls.get(address, 0) + 1
        if address == self.hung:
            self.release.wait(20)  # bounded: the test sets it at the end
            raise PromError("hung address released")
        if f'"{self.bad_model}"' in promql:
            raise PromError("boom")
        return 1.0


def test_a_hung_address_does_not_stop_the_other_subscriptions() -> None:
    hung, good = "http://127.0.0.1:1", "http://127.0.0.1:2"  # never dialled: the client is scripted
    client = HangingAddress(hung, "bad")
    p = Poller(PollerConfig(default_address=good, allowed_addresses=(hung,), workers=4, poll_timeout_s=0.5),
               client=client)
    bad = p.subscribe(parse_metadata({"model": "bad"}))  # first: a failure must not end the cycle early
    hung_keys = [p.subscribe(parse_metadata({"model": f"h{i}", "prometheusAddress": hung})) for i in range(5)]
    good_keys = [p.subscribe(parse_metadata({"model": f"g{i}"})) for i in range(7)]
    try:
        for cycle in (1, 2):
            t = threading.Thread(target=p.poll_once, daemon=True)
            t.start()
            t.join(15)  # a liveness bound, not a latency assertion: the cycle itself is bounded at 0.5 s
            assert not t.is_alive(), f"poll cycle {cycle} never returned while one Prometheus address hung"
            for k in good_keys:  # all 7 healthy subscriptions polled in every cycle
                assert p.view(k).fresh, (cycle, k[1][0], p.view(k).error)
            for k in hung_keys:
                v = p.view(k)
                assert v.attempted and not v.fresh and v.error is not None
            assert p.view(bad).error is not None and "boom" in p.view(bad).error
        # the hung polls are not piled up again: at most one query per hung subscription is running
        assert client.calls[hung] <= 5
        assert p.metrics.registry.get_sample_value("pickspin_scaler_polls_total", {"result": "error"}) == 2.0
    finally:
        client.release.set()
        p.stop()


def test_each_query_is_bounded_by_a_total_timeout() -> None:
    c = PromClient(0.7)
    assert c.timeout.total == 0.7  # connect + every read together, not per socket operation


# -- item 11: a trigger cannot choose where the scaler sends its bearer token ---------------------------------

def test_prometheus_address_outside_the_allow_list_is_refused(recorder: Recorder, tmp_path: Path) -> None:
    tok = tmp_path / "token"
    tok.write_text("secret-token")
    p = Poller(PollerConfig(default_address="http://127.0.0.1:9", bearer_token_file=str(tok)))
    with pytest.raises(MetadataError) as ei:  # AddressNotAllowed: INVALID_ARGUMENT naming the key
        p.subscribe(parse_metadata({"model": "m", "prometheusAddress": recorder.url}))
    assert ei.value.key == "prometheusAddress" and "not an allowed Prometheus address" in str(ei.value)
    p.poll_once()
    assert recorder.requests == []  # never contacted, so the token never left
    p.stop()


def test_token_goes_only_to_allowed_addresses(recorder: Recorder, tmp_path: Path) -> None:
    tok = tmp_path / "token"
    tok.write_text("secret-token")
    PromClient(1.0, bearer_token_file=str(tok), token_addresses={"http://127.0.0.1:9"}).query(recorder.url, "x")
    assert recorder.requests == [("/api/v1/query", None)]
    p = Poller(PollerConfig(default_address="http://127.0.0.1:9", allowed_addresses=(recorder.url + "/",),
                            bearer_token_file=str(tok)))
    key = p.subscribe(parse_metadata({"model": "m", "prometheusAddress": recorder.url}))
    p.poll_once()
    assert p.view(key).fresh
    assert {auth for _, auth in recorder.requests[1:]} == {"Bearer secret-token"}
    p.stop()


@pytest.fixture
def scaler(fake_prom: FakePrometheus) -> Iterator[ServerThread]:
    st = ServerThread(PollerConfig(default_address=fake_prom.url, interval_s=0.1, query_timeout_s=1.0))
    yield st
    st.stop()


def test_grpc_refuses_a_foreign_prometheus_address(keda_stubs: Stubs, scaler: ServerThread,
                                                   recorder: Recorder) -> None:
    pb2, pb2_grpc = keda_stubs
    with grpc.insecure_channel(scaler.address) as ch:
        stub = pb2_grpc.ExternalScalerStub(ch)
        r = pb2.ScaledObjectRef(name="m", namespace="ai", scalerMetadata={
            "scalerAddress": "x:6000", "model": "m", "prometheusAddress": recorder.url})
        for call in (lambda: stub.IsActive(r, timeout=10),
                     lambda: stub.GetMetrics(pb2.GetMetricsRequest(scaledObjectRef=r, metricName="m"), timeout=10),
                     lambda: stub.GetMetricSpec(r, timeout=10)):
            with pytest.raises(grpc.RpcError) as ei:
                call()
            assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "prometheusAddress" in ei.value.details() and "allow" in ei.value.details()
    assert recorder.requests == []


def _listen_address(port: int) -> str | None:
    """The local address a TCP socket on ``port`` listens on, from /proc/net/tcp{,6} (Linux).

    IPv4-mapped IPv6 addresses (gRPC binds those) are given as plain IPv4; any other IPv6 as ``::``-form.
    """
    import ipaddress

    if not Path("/proc/net/tcp").exists():
        pytest.skip("/proc/net/tcp not available: cannot read the bound address")
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            hexip, hexport = fields[1].split(":")
            if fields[3] != "0A" or int(hexport, 16) != port:  # 0A = LISTEN
                continue
            raw = b"".join(bytes.fromhex(hexip[i:i + 8])[::-1] for i in range(0, len(hexip), 8))
            ip = ipaddress.ip_address(raw)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                return str(ip.ipv4_mapped)
            return str(ip)
    return None


def test_default_bind_is_loopback_and_metrics_follow_host() -> None:
    import argparse

    from pickspin_scaler import cli

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    pconf, sconf = cli.configs(parser.parse_args(["scaler"]))
    assert sconf.host == "127.0.0.1" and sconf.metrics_bind_host() == "127.0.0.1"
    _, sconf = cli.configs(parser.parse_args(["scaler", "--host", "10.1.2.3"]))
    assert sconf.metrics_bind_host() == "10.1.2.3"
    _, sconf = cli.configs(parser.parse_args(["scaler", "--host", "fd00::1", "--metrics-host", "0.0.0.0"]))
    assert sconf.bind() == "[fd00::1]:6000" and sconf.metrics_bind_host() == "0.0.0.0"
    pconf, _ = cli.configs(parser.parse_args(["scaler", "--prometheus", "http://prom:9090/",
                                              "--allow-prometheus", "https://other.example:9090"]))
    assert pconf.allowed() == {"http://prom:9090", "https://other.example:9090"}
    with pytest.raises(SystemExit, match="bad Prometheus URL"):
        cli.configs(parser.parse_args(["scaler", "--allow-prometheus", "http://"]))


@contextlib.contextmanager
def running(config: Any, pconf: PollerConfig, **server_kw: Any) -> Iterator[Any]:
    """A ScalerServer from ``config`` (and ``server_kw``) on its own event loop thread; yields it started."""
    import asyncio

    from pickspin_scaler.server import ScalerServer

    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()

    def call(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    async def make() -> ScalerServer:
        return ScalerServer(config, pconf, **server_kw)

    srv = call(make())
    try:
        call(srv.start())
        yield srv
    finally:
        call(srv.stop())
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)
        loop.close()


def test_metrics_server_binds_the_grpc_host_by_default(fake_prom: FakePrometheus) -> None:
    from pickspin_scaler.server import ServerConfig

    cfg = ServerConfig(host="127.0.0.1", port=0, metrics_port=free_port(), grace_s=0.5)
    with running(cfg, PollerConfig(default_address=fake_prom.url)) as srv:
        assert srv.metrics_port is not None
        assert _listen_address(srv.metrics_port) == "127.0.0.1"  # not 0.0.0.0
        assert _listen_address(srv.port) == "127.0.0.1"


def _openssl_cert(tmp: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("openssl not installed: cannot make a test certificate for the TLS option")
    key, cert = tmp / "tls.key", tmp / "tls.crt"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_tls_option_serves_grpc_over_tls(fake_prom: FakePrometheus, tmp_path: Path) -> None:
    from pickspin_scaler.server import ServerConfig

    cert, key = _openssl_cert(tmp_path)
    cfg = ServerConfig(port=0, metrics_port=None, tls_cert_file=str(cert), tls_key_file=str(key), grace_s=0.5)
    with running(cfg, PollerConfig(default_address=fake_prom.url)) as srv:
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{srv.port}", creds) as ch:
            r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert r.status == health_pb2.HealthCheckResponse.SERVING
        with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch, pytest.raises(grpc.RpcError):
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)


# -- item 12: bounded metadata cache, error series removed, URL validation -------------------------------------

def test_metadata_cache_is_bounded_in_characters() -> None:
    from pickspin_scaler.server import ExternalScalerServicer

    metrics = ScalerMetrics()
    p = Poller(PollerConfig(), metrics=metrics)
    s = ExternalScalerServicer(p, metrics, md_cache_chars=20_000)
    filler = "x" * 1000
    for i in range(200):  # 200 distinct ~1 kB maps: 10x the bound
        s._resolve({"model": f"m{i}", "rateQuery": f"sum(rate(r{{a=\"{filler}\"}}[1m]))", "scalerAddress": "a:1"})
        assert s.md_cache_size <= 20_000
    held = sum(len(a) + len(b) for k in s._md_cache for a, b in k)
    assert held == s.md_cache_size and 10 <= len(s._md_cache) < 200
    p.stop()


def test_oversized_metadata_is_invalid_argument(keda_stubs: Stubs, scaler: ServerThread) -> None:
    pb2, pb2_grpc = keda_stubs
    with grpc.insecure_channel(scaler.address) as ch:
        r = pb2.ScaledObjectRef(name="m", namespace="ai", scalerMetadata={"model": "m", "junk": "y" * 20_000})
        with pytest.raises(grpc.RpcError) as ei:
            pb2_grpc.ExternalScalerStub(ch).IsActive(r, timeout=10)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "characters" in ei.value.details()


def test_poll_error_series_go_away_with_the_subscription() -> None:
    class Down(PromClient):
        def query(self, address: str, promql: str) -> float | None:
            raise PromError("down")

    now = [0.0]
    p = Poller(PollerConfig(expire_after_s=60), client=Down(), clock=lambda: now[0])
    p.subscribe(parse_metadata({"model": "gone"}))
    p.poll_once()
    reg = p.metrics.registry
    assert reg.get_sample_value("pickspin_scaler_poll_errors_total", {"model": "gone"}) == 1.0
    now[0] += 61
    p.poll_once()
    assert reg.get_sample_value("pickspin_scaler_poll_errors_total", {"model": "gone"}) is None
    p.stop()


@pytest.mark.parametrize("url", ["http://", "https://", "http://a b", "http://a\tb:9090", "ftp://prom:9090",
                                 "http://user:pw@prom:9090", "http://prom:99999", "http://prom:9090/?x=1",
                                 "http://prom:9090/#f", "prom:9090", "http:///path"])
def test_bad_prometheus_urls_are_rejected(url: str) -> None:
    with pytest.raises(MetadataError) as ei:
        parse_metadata({"model": "m", "prometheusAddress": url})
    assert ei.value.key == "prometheusAddress"


@pytest.mark.parametrize(("url", "want"), [
    ("http://prom:9090/", "http://prom:9090"),
    ("HTTPS://Prom.Example:443/prometheus/", "https://prom.example:443/prometheus"),
    ("http://[fd00::1]:9090", "http://[fd00::1]:9090"),
])
def test_good_prometheus_urls_are_normalised(url: str, want: str) -> None:
    assert parse_metadata({"model": "m", "prometheusAddress": url}).prometheus_address == want
