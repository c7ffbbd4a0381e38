"""Old Knative revisions do not scale with the model (issue 12, item 1).

autoscaler-keda gives every kept revision its own ScaledObject with the same trigger metadata. The
scaler reads each revision's PodAutoscaler (``spec.reachability``) from a Kubernetes API -- here a small
fake on 127.0.0.1 that serves only the PodAutoscaler list -- and answers 0 / inactive for revisions
Knative routes no traffic to, even with a warm floor; anything it cannot read counts as routable.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from pickspin_scaler.metadata import parse_metadata
from pickspin_scaler.prom import PollerConfig
from pickspin_scaler.reachability import Reachability, ReachabilityConfig
from pickspin_scaler.server import ServerConfig

from .conftest import FakePrometheus, ThreadServer, wait_until
from .test_faults import running

Stubs = tuple[types.ModuleType, types.ModuleType]
PA_PREFIX = "/apis/autoscaling.internal.knative.dev/v1alpha1/namespaces/"


class FakePodAutoscalers:
    """GET /apis/autoscaling.internal.knative.dev/v1alpha1/namespaces/<ns>/podautoscalers, nothing else."""

    def __init__(self) -> None:
        self.reachability: dict[tuple[str, str], str] = {}
        self.down = False
        self.auth: list[str | None] = []
        self.srv = ThreadServer(self._app)
        self.url = self.srv.url

    def _app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        self.auth.append(environ.get("HTTP_AUTHORIZATION"))
        if self.down or not (path.startswith(PA_PREFIX) and path.endswith("/podautoscalers")):
            start_response("503 Service Unavailable" if self.down else "404 Not Found", [])
            return [b"{}"]
        ns = path[len(PA_PREFIX):].split("/")[0]
        items = [{"metadata": {"name": n, "namespace": s}, "spec": {"reachability": r}}
                 for (s, n), r in self.reachability.items() if s == ns]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"kind": "PodAutoscalerList", "items": items}).encode()]

    def close(self) -> None:
        self.srv.close()


@pytest.fixture
def kube() -> Iterator[FakePodAutoscalers]:
    k = FakePodAutoscalers()
    yield k
    k.close()


def test_unreachable_only_from_fresh_data_and_fails_open(kube: FakePodAutoscalers) -> None:
    now = [0.0]
    r = Reachability(ReachabilityConfig(api_url=kube.url, namespaces=("ai",), max_age_s=60), clock=lambda: now[0])
    kube.reachability = {("ai", "llama-00001"): "Unreachable", ("ai", "llama-00002"): "Reachable",
                         ("other", "llama-00001"): "Reachable"}
    assert not r.unreachable("ai", "llama-00001")  # nothing read yet: routable
    assert r.refresh()
    assert r.unreachable("ai", "llama-00001")
    assert not r.unreachable("ai", "llama-00002") and not r.unreachable("ai", "unknown-00009")
    kube.down = True
    assert not r.refresh() and r.error is not None
    assert r.unreachable("ai", "llama-00001")  # the last good state stands for a while...
    now[0] = 61.0
    assert not r.unreachable("ai", "llama-00001")  # ...then it is not trusted any more


def _ref(pb2: Any, name: str, **md: str) -> Any:
    return pb2.ScaledObjectRef(name=name, namespace="ai", scalerMetadata={"scalerAddress": "s:6000", **md})


def test_old_revision_gets_zero_and_inactive_despite_a_warm_floor(keda_stubs: Stubs, fake_prom: FakePrometheus,
                                                                  kube: FakePodAutoscalers) -> None:
    pb2, pb2_grpc = keda_stubs
    md = {"model": "llama", "tier": "small", "concurrency": "2"}  # small tier: warm floor 1
    fake_prom.set(parse_metadata(md).queries(), rate=10.0, latency=1.0, demand=4.0, recent=50.0, total=100.0)
    kube.reachability = {("ai", "llama-00001"): "Unreachable", ("ai", "llama-00002"): "Reachable"}
    reach = Reachability(ReachabilityConfig(api_url=kube.url, namespaces=("ai",), interval_s=0.2))
    cfg = ServerConfig(host="127.0.0.1", port=0, metrics_port=None, grace_s=0.5)
    with running(cfg, PollerConfig(default_address=fake_prom.url, interval_s=0.1), reachability=reach) as srv, \
            grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        stub = pb2_grpc.ExternalScalerStub(ch)
        wait_until(lambda: reach.unreachable("ai", "llama-00001"), 10, 0.05, "PodAutoscalers read")

        def metric(rev: str) -> float:
            req = pb2.GetMetricsRequest(scaledObjectRef=_ref(pb2, rev, **md), metricName="m")
            return float(stub.GetMetrics(req, timeout=10).metricValues[0].metricValueFloat)

        assert stub.IsActive(_ref(pb2, "llama-00002", **md), timeout=10).result is True
        assert metric("llama-00002") == pytest.approx(10.0)  # r * lat = 10 for the routed revision
        assert stub.IsActive(_ref(pb2, "llama-00001", **md), timeout=10).result is False
        assert metric("llama-00001") == 0.0
        stream = stub.StreamIsActive(_ref(pb2, "llama-00001", **md), timeout=30)
        assert next(stream).result is False
        stream.cancel()
        # a revision the API has never mentioned is routable (fail open)
        assert stub.IsActive(_ref(pb2, "llama-00003", **md), timeout=10).result is True


def test_cli_builds_reachability_from_flags() -> None:
    import argparse

    from pickspin_scaler import cli

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    assert cli.reachability_from_args(parser.parse_args(["scaler"])) is None
    r = cli.reachability_from_args(parser.parse_args(["scaler", "--revision-reachability", "--metrics-namespace", "ai",
                                                      "--kube-api", "http://127.0.0.1:1"]))
    assert r is not None and r.config.namespaces == ("ai",)
    with pytest.raises(SystemExit, match="reachability-namespace"):
        cli.reachability_from_args(parser.parse_args(["scaler", "--revision-reachability"]))
