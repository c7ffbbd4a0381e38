from __future__ import annotations

import pytest
import urllib3

from functions.router.telemetry import Telemetry
from pickspin.config import Backend, RouterSettings


class Clock:
    """The one clock Telemetry reads; tests move it by hand (whole numbers: no float rounding)."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make(clock: Clock | None = None, **kw: float) -> Telemetry:
    b = Backend(name="b", url="http://127.0.0.1:1", served_model_name="x", expected_latency_s=1.0,
                max_concurrency=4)
    return Telemetry([b], RouterSettings(**kw), clock=clock or Clock())  # type: ignore[arg-type]


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
    clock = Clock()
    t = make(clock, latency_half_life_s=10.0)
    t.begin("b")
    t.end("b", ok=True, latency_s=9.0)
    clock.t += 10  # one half-life: halfway back to the prior of 1.0
    t.decay_latency()
    assert t.snapshot["b"].latency_s == pytest.approx(5.0)
    clock.t += 10  # another half-life
    t.decay_latency()
    assert t.snapshot["b"].latency_s == pytest.approx(3.0)


def test_no_decay_unless_configured() -> None:
    clock = Clock()
    t = make(clock)
    t.begin("b")
    t.end("b", ok=True, latency_s=9.0)
    clock.t += 1e6
    t.decay_latency()
    assert t.snapshot["b"].latency_s == 9.0


def test_no_decay_while_requests_are_in_flight() -> None:
    clock = Clock()
    t = make(clock, latency_half_life_s=1.0)
    t.begin("b")
    t.end("b", ok=True, latency_s=9.0)
    t.begin("b")
    clock.t += 100
    t.decay_latency()
    assert t.snapshot["b"].latency_s == 9.0


def test_revive_after_cooldown() -> None:
    clock = Clock()
    t = make(clock, down_cooldown_s=5.0)
    t.set_health("b", False)
    clock.t += 1
    t.revive_stale()
    assert not t.snapshot["b"].healthy
    clock.t += 4  # exactly the cooldown: one clock, no rounding between two time sources
    t.revive_stale()
    assert t.snapshot["b"].healthy


def _cold_backend(cold_start_s: float = 30.0) -> Backend:
    return Backend(name="z", url="http://127.0.0.1:1", served_model_name="x", expected_latency_s=1.0,
                   cold_start_s=cold_start_s)


def test_backends_that_scale_to_zero_start_cold_and_wake_on_traffic() -> None:
    clock = Clock()
    t = Telemetry([_cold_backend()], RouterSettings(), idle_to_zero={"z": 10.0}, clock=clock)
    assert t.snapshot["z"].cold  # never used: its scaler keeps it at zero
    t.begin("z")
    assert not t.snapshot["z"].cold  # a request wakes it; the next one does not pay the cold start
    t.end("z", ok=True, latency_s=0.5)
    clock.t += 5
    t.update_cold()
    assert not t.snapshot["z"].cold
    clock.t += 5  # idle for exactly tau: the scaler has taken it to zero
    t.update_cold()
    assert t.snapshot["z"].cold


def test_no_cold_guess_without_a_cold_start_time_or_with_a_warm_pool() -> None:
    clock = Clock()
    t = Telemetry([_cold_backend(0.0)], RouterSettings(), idle_to_zero={"z": 10.0}, clock=clock)
    t2 = Telemetry([_cold_backend()], RouterSettings(), idle_to_zero={}, clock=clock)  # warm pool > 0
    clock.t += 1e9
    t.update_cold()
    assert not t.snapshot["z"].cold
    t2.update_cold()
    assert not t2.snapshot["z"].cold


def test_the_activator_state_header_overrides_the_guess() -> None:
    from flask import Flask, Response

    from pickspin.contract import BACKEND_STATE_HEADER as STATE_HEADER
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


def test_the_activator_eta_is_read_and_priced_into_expected_latency() -> None:
    from flask import Flask, Response

    from functions.router.scoring import expected_latency
    from pickspin.contract import BACKEND_ETA_HEADER
    from pickspin.contract import BACKEND_STATE_HEADER as STATE_HEADER
    from tests.helpers import ServerThread

    said = {"state": "cold", "eta": "18.0"}
    app = Flask("activator-like")

    @app.get("/health")
    def health() -> Response:
        return Response("ok", headers={STATE_HEADER: said["state"], BACKEND_ETA_HEADER: said["eta"]})

    srv = ServerThread(app)
    try:
        b = Backend(name="z", url=srv.url, served_model_name="x", kind="vllm", expected_latency_s=1.0,
                    cold_start_s=60.0)
        t = Telemetry([b], RouterSettings(), idle_to_zero={})
        http = urllib3.PoolManager()
        t.probe_once(http)
        s = t.snapshot["z"]
        assert (s.cold, s.eta_s, s.readiness) == (True, 18.0, "cold")
        assert expected_latency(b, s) == 1.0 + 18.0  # the learned ETA, not the configured 60 s
        said.update(state="starting", eta="5.5")
        t.probe_once(http)
        s = t.snapshot["z"]
        assert (s.cold, s.readiness) == (False, "waking") and expected_latency(b, s) == 1.0 + 5.5
        said.update(state="ready", eta="0.0")
        t.probe_once(http)
        s = t.snapshot["z"]
        assert s.readiness == "warm" and expected_latency(b, s) == 1.0
        said.update(eta="soon")  # garbage is ignored, not trusted
        t.probe_once(http)
        assert t.snapshot["z"].eta_s is None
    finally:
        srv.stop()


# -- the circuit breaker (injected clock, no sleeps) ------------------------------------------------

def _fail(t: Telemetry, n: int = 1) -> None:
    for _ in range(n):
        assert t.begin("b")
        t.end("b", ok=False)


def _succeed(t: Telemetry, n: int = 1) -> None:
    for _ in range(n):
        assert t.begin("b")
        t.end("b", ok=True, latency_s=0.1)


def test_circuit_opens_on_consecutive_failures_and_recovers_through_half_open() -> None:
    clock = Clock()
    events: list[tuple[str, str]] = []
    t = make(clock, breaker_consecutive_failures=3, breaker_cooldown_s=2.0)
    t.on_circuit = lambda name, old, new, why: events.append((old, new))
    _fail(t, 2)
    assert t.snapshot["b"].circuit == "closed" and t.snapshot["b"].consecutive_failures == 2
    _fail(t)
    s = t.snapshot["b"]
    assert s.circuit == "open" and s.retry_at == clock.t + 2
    assert not t.begin("b")  # cooling down: refused, nothing counted
    assert t.snapshot["b"].inflight == 0
    clock.t += 2
    assert t.begin("b")  # the trial
    assert t.snapshot["b"].circuit == "half_open"
    assert not t.begin("b")  # one trial at a time
    t.end("b", ok=True, latency_s=0.1)
    s = t.snapshot["b"]
    assert (s.circuit, s.error_rate, s.consecutive_failures) == ("closed", 0.0, 0)
    assert events == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_failed_trial_reopens_for_another_cooldown() -> None:
    clock = Clock()
    t = make(clock, breaker_consecutive_failures=1, breaker_cooldown_s=3.0)
    _fail(t)
    clock.t += 3
    _fail(t)  # the trial fails
    s = t.snapshot["b"]
    assert s.circuit == "open" and s.retry_at == clock.t + 3
    clock.t += 1
    assert not t.begin("b")
    clock.t += 2
    _succeed(t)
    assert t.snapshot["b"].circuit == "closed"


def test_error_rate_opens_only_with_a_minimum_sample_count() -> None:
    t = make(breaker_consecutive_failures=100, breaker_min_samples=6, error_window=10, max_error_rate=0.5)
    _fail(t, 2)  # two failures out of two: rate 1.0, but too few samples
    assert t.snapshot["b"].circuit == "closed" and t.snapshot["b"].error_rate == 1.0
    _succeed(t)
    _fail(t)
    _succeed(t)
    assert t.snapshot["b"].circuit == "closed"  # 5 samples
    _fail(t)  # 6 samples, 4 failures: 0.67 > 0.5
    assert t.snapshot["b"].circuit == "open"


def test_half_open_admits_the_configured_number_of_trials() -> None:
    clock = Clock()
    t = make(clock, breaker_consecutive_failures=1, breaker_cooldown_s=1.0, breaker_half_open_requests=2)
    _fail(t)
    clock.t += 1
    assert t.begin("b") and t.begin("b") and not t.begin("b")
    t.end("b", ok=True)
    assert t.snapshot["b"].circuit == "closed"



def test_a_trial_that_answers_closes_the_circuit_before_its_stream_ends() -> None:
    clock = Clock()
    t = make(clock, breaker_consecutive_failures=1, breaker_cooldown_s=1.0)
    _fail(t)
    clock.t += 1
    assert t.begin("b")  # the trial: a long stream
    t.answered("b")  # its first byte came with a 200
    assert t.snapshot["b"].circuit == "closed"
    assert t.begin("b")  # other requests flow while the stream goes on
    t.end("b", ok=True)
    t.end("b", ok=True)
    assert t.snapshot["b"].circuit == "closed" and t.snapshot["b"].inflight == 0
