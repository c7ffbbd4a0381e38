from __future__ import annotations

import pytest
import urllib3

from functions.router.telemetry import Telemetry
from pickspin.config import Backend, RouterSettings


def make(**kw: float) -> Telemetry:
    b = Backend(name="b", url="http://127.0.0.1:1", served_model_name="x", expected_latency_s=1.0,
                max_concurrency=4)
    return Telemetry([b], RouterSettings(**kw))  # type: ignore[arg-type]


def test_ewma_inflight_and_error_rate() -> None:
    t = make(ewma_alpha=0.5, error_window=4)
    t.begin("b")
    assert t.snapshot["b"].inflight == 1
    t.end("b", ok=True, latency_s=2.0, ttft_s=0.5)
    s = t.snapshot["b"]
    assert (s.inflight, s.latency_s, s.ttft_s, s.observations) == (0, 2.0, 0.5, 1)  # first sample replaces prior
    t.begin("b")
    t.end("b", ok=True, latency_s=4.0)
    assert t.snapshot["b"].latency_s == pytest.approx(3.0)
    t.begin("b")
    t.end("b", ok=False, mark_down=True)
    s = t.snapshot["b"]
    assert s.error_rate == pytest.approx(1 / 3) and not s.healthy and s.latency_s == pytest.approx(3.0)


def test_snapshots_are_immutable_copies() -> None:
    t = make()
    before = t.snapshot
    t.begin("b")
    assert before["b"].inflight == 0 and t.snapshot["b"].inflight == 1


def test_stale_latency_decays_toward_the_prior() -> None:
    t = make(latency_half_life_s=10.0)
    t.begin("b")
    t.end("b", ok=True, latency_s=9.0)
    observed = t._state["b"].observed_at
    t.decay_latency(now=observed + 10.0)  # one half-life: halfway back to the prior of 1.0
    assert t.snapshot["b"].latency_s == pytest.approx(5.0)
    t.decay_latency(now=observed + 20.0)  # another half-life
    assert t.snapshot["b"].latency_s == pytest.approx(3.0)


def test_no_decay_unless_configured() -> None:
    t = make()
    t.begin("b")
    t.end("b", ok=True, latency_s=9.0)
    t.decay_latency(now=t._state["b"].observed_at + 1e6)
    assert t.snapshot["b"].latency_s == 9.0


def test_no_decay_while_requests_are_in_flight() -> None:
    t = make(latency_half_life_s=1.0)
    t.begin("b")
    t.end("b", ok=True, latency_s=9.0)
    t.begin("b")
    t.decay_latency(now=t._state["b"].observed_at + 100)
    assert t.snapshot["b"].latency_s == 9.0


def test_revive_after_cooldown() -> None:
    t = make(down_cooldown_s=5.0)
    t.set_health("b", False)
    checked = t.snapshot["b"].checked_at
    t.revive_stale(now=checked + 1)
    assert not t.snapshot["b"].healthy
    t.revive_stale(now=checked + 5.001)  # just past the cooldown (exactly +5 is float-fragile)
    assert t.snapshot["b"].healthy


def _cold_backend(cold_start_s: float = 30.0) -> Backend:
    return Backend(name="z", url="http://127.0.0.1:1", served_model_name="x", expected_latency_s=1.0,
                   cold_start_s=cold_start_s)


def test_backends_that_scale_to_zero_start_cold_and_wake_on_traffic() -> None:
    t = Telemetry([_cold_backend()], RouterSettings(), idle_to_zero={"z": 10.0})
    assert t.snapshot["z"].cold  # never used: its scaler keeps it at zero
    t.begin("z")
    assert not t.snapshot["z"].cold  # a request wakes it; the next one does not pay the cold start
    used = t._state["z"].used_at
    assert used is not None
    t.end("z", ok=True, latency_s=0.5)
    t.update_cold(now=used + 5)
    assert not t.snapshot["z"].cold
    t.update_cold(now=used + 10.001)  # idle for tau: the scaler has taken it to zero
    assert t.snapshot["z"].cold


def test_no_cold_guess_without_a_cold_start_time_or_with_a_warm_pool() -> None:
    t = Telemetry([_cold_backend(0.0)], RouterSettings(), idle_to_zero={"z": 10.0})
    t.update_cold(now=1e9)
    assert not t.snapshot["z"].cold
    t2 = Telemetry([_cold_backend()], RouterSettings(), idle_to_zero={})  # warm pool > 0: never at zero
    t2.update_cold(now=1e9)
    assert not t2.snapshot["z"].cold


def test_the_activator_state_header_overrides_the_guess() -> None:
    from flask import Flask, Response

    from functions.router.telemetry import STATE_HEADER
    from tests.helpers import ServerThread

    state = {"v": "cold"}
    app = Flask("activator-like")

    @app.get("/health")
    def health() -> Response:
        return Response("ok", headers={STATE_HEADER: state["v"]})

    srv = ServerThread(app)
    try:
        b = Backend(name="z", url=srv.url, served_model_name="x", kind="vllm", cold_start_s=5.0)
        t = Telemetry([b], RouterSettings(), idle_to_zero={})
        http = urllib3.PoolManager()
        t.probe_once(http)
        assert t.snapshot["z"].cold and t.snapshot["z"].healthy  # the activator answers /health while cold
        state["v"] = "ready"
        t.probe_once(http)
        assert not t.snapshot["z"].cold
    finally:
        srv.stop()
