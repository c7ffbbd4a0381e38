from __future__ import annotations

import pytest

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
    t.revive_stale(now=checked + 5)
    assert t.snapshot["b"].healthy
