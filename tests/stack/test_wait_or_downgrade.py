"""Wait-or-downgrade against real processes: a router, a warm small tier, and a large tier at zero behind
a real local activator (its backend takes about 3 s to start; its configured cold start is 20 s)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from functions.router.app import create_app
from pickspin.config import ServiceMatrix, parse_config
from stack.activator import LocalActivator
from tests.helpers import ServerThread, free_port, sim_server, wait_until

STUB = Path(__file__).parents[1] / "scaler" / "stub_backend.py"
PROVE = {"messages": [{"role": "user", "content": "give a rigorous proof that sqrt(2) is irrational"}], "max_tokens": 3}


def matrix(small_url: str, large_port: int) -> ServiceMatrix:
    def model(name: str, tier: str, cap: tuple[float, float, float], cost: float, backend: dict[str, Any]) -> dict:
        return {"name": name, "tier": tier, "capability": dict(zip(("low", "medium", "high"), cap, strict=True)),
                "cost": {"per_1k_tokens": cost}, "scaling": {"concurrency": 4, "idle_seconds": 300},
                "backends": [backend]}

    return parse_config({
        "models": [
            model("small-model", "small", (0.9, 0.5, 0.05), 0.02,
                  {"name": "small-b", "kind": "vllm", "url": small_url, "served_model_name": "small-served"}),
            model("large-model", "large", (0.97, 0.92, 0.85), 0.18,
                  {"name": "large-b", "kind": "vllm", "url": f"http://127.0.0.1:{large_port}",
                   "served_model_name": "large-served", "cold_start_s": 20,
                   "launch": {"type": "sim", "startup_timeout_s": 30}}),
        ],
        "router": {"probe_interval_s": 0.2, "probe_timeout_s": 1.0, "cold_start_timeout_s": 30,
                   "waiting_comment_interval_s": 0.5},
    })


@pytest.fixture
def stack() -> Iterator[tuple[ServerThread, LocalActivator]]:
    with sim_server("small-served", ttft_s=0.0, tpot_s=0.0) as small:
        m = matrix(small.url, free_port())
        large = m.models[1].backends[0]
        act = LocalActivator(m, large, lambda port: [sys.executable, str(STUB), "--port", str(port),
                                                      "--startup-delay", "3"], control_interval_s=0.1)
        act.start()
        app = create_app(m)
        router = ServerThread(app)
        try:
            wait_until(lambda: httpx.get(router.url + "/v1/models").json()["data"][2]["pickspin"]["backends"][0]
                       ["state"] == "cold", 5)
            yield router, act
        finally:
            router.stop()
            app.extensions["pickspin"].telemetry.stop()
            act.stop()


def test_a_short_budget_is_served_warm_now_and_the_best_model_wakes(stack: tuple[ServerThread, LocalActivator]) -> None:
    router, act = stack
    headers = {"X-PickSpin-Max-Wait": "2", "X-PickSpin-Profile": "quality"}
    t0 = time.monotonic()
    r = httpx.post(router.url + "/v1/chat/completions", json=PROVE, headers=headers, timeout=30)
    took = time.monotonic() - t0
    assert r.status_code == 200, r.text
    assert r.headers["X-PickSpin-Model"] == "small-model" and took < 2.0, took
    assert r.headers["X-PickSpin-Downgraded-From"] == "large-model"
    # the large tier is waking because of it (the request itself never went there)
    assert wait_until(lambda: act.state in ("starting", "ready"), 2)
    metrics = httpx.get(router.url + "/metrics").text
    assert 'pickspin_downgrades_total{from_model="large-model",to_model="small-model"} 1.0' in metrics
    # once it is up, the same request gets the best model, without a downgrade
    assert wait_until(lambda: httpx.get(router.url + "/v1/models").json()["data"][2]["pickspin"]["backends"][0]
                      ["state"] == "warm", 20)
    r = httpx.post(router.url + "/v1/chat/completions", json=PROVE, headers=headers, timeout=30)
    assert r.headers["X-PickSpin-Model"] == "large-model" and "X-PickSpin-Downgraded-From" not in r.headers
    assert act.starts == 1  # one start for the wake-up, none more


def test_strict_waits_for_the_best_model(stack: tuple[ServerThread, LocalActivator]) -> None:
    router, act = stack
    t0 = time.monotonic()
    r = httpx.post(router.url + "/v1/chat/completions", json={**PROVE, "max_wait_s": "strict"},
                   headers={"X-PickSpin-Profile": "quality"}, timeout=30)
    waited = time.monotonic() - t0
    assert r.status_code == 200 and r.headers["X-PickSpin-Model"] == "large-model"
    assert "X-PickSpin-Downgraded-From" not in r.headers and act.starts == 1
    assert "X-PickSpin-Held-S" not in r.headers  # internal: the router reads it, the client never sees it
    # Little's law input: the service time excludes the ~3 s cold start the client waited through
    metrics = httpx.get(router.url + "/metrics").text
    line = next(x for x in metrics.splitlines()
                if x.startswith('pickspin_request_duration_seconds_sum{backend="large-b",model="large-model"}'))
    assert waited > 2.5 and float(line.split()[-1]) < 1.0, (waited, line)


def test_a_bad_budget_is_a_400_naming_it(stack: tuple[ServerThread, LocalActivator]) -> None:
    router, _ = stack
    for bad in ("-1", "soon", "inf"):
        r = httpx.post(router.url + "/v1/chat/completions", json=PROVE, headers={"X-PickSpin-Max-Wait": bad})
        assert r.status_code == 400 and r.json()["error"]["param"] == "X-PickSpin-Max-Wait", (bad, r.text)
    r = httpx.post(router.url + "/v1/chat/completions", json={**PROVE, "max_wait_s": True})
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_wait_s"


def test_a_stream_to_a_cold_model_gets_sse_comments_while_it_wakes(stack: tuple[ServerThread, LocalActivator]) -> None:
    """Valid SSE at once (comments, which OpenAI SDKs ignore), every interval while the backend loads,
    then the backend's own stream to its [DONE]."""
    router, act = stack
    t0 = time.monotonic()
    lines: list[tuple[float, str]] = []
    with httpx.stream("POST", router.url + "/v1/chat/completions", json={**PROVE, "stream": True},
                      headers={"X-PickSpin-Max-Wait": "strict", "X-PickSpin-Profile": "quality"}, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["X-PickSpin-Model"] == "large-model"
        for line in r.iter_lines():
            if line:
                lines.append((time.monotonic() - t0, line))
    comments = [(t, x) for t, x in lines if x.startswith(":")]
    data = [(t, x) for t, x in lines if x.startswith("data:")]
    assert comments and comments[0][0] < 2.0, lines[:3]
    assert comments[0][1].startswith(": waking large-model, eta ")
    assert len(comments) >= 3  # the stub takes about 3 s to start; a comment every 0.5 s
    assert data and data[0][0] > comments[-1][0] and data[-1][1] == "data: [DONE]"
    assert act.starts == 1


def test_fifty_concurrent_requests_to_a_cold_model_start_it_once_and_are_all_served(
        stack: tuple[ServerThread, LocalActivator]) -> None:
    """50 at once, far above the backend's max_concurrency (8): while it is cold they are held for its one
    start (router.max_held_per_backend), not turned away, and all are answered by it."""
    from concurrent.futures import ThreadPoolExecutor

    router, act = stack

    def one(_: int) -> httpx.Response:
        return httpx.post(router.url + "/v1/chat/completions", json={**PROVE, "model": "large-model"},
                          timeout=60)

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(one, range(50)))
    assert [r.status_code for r in answers] == [200] * 50, [r.text for r in answers if r.status_code != 200][:2]
    assert {r.headers["X-PickSpin-Model"] for r in answers} == {"large-model"}
    assert act.starts == 1


def test_the_openai_sdk_streams_through_the_waking_comments(stack: tuple[ServerThread, LocalActivator]) -> None:
    """The official OpenAI SDK reads a stream that starts with `: waking ...` comments: it skips them and
    yields exactly the backend's chunks (the stub's are {"n": 0..3}), with no error, once the model is up."""
    import openai

    router, act = stack
    client = openai.OpenAI(base_url=router.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    stream = client.chat.completions.create(
        model="auto", messages=PROVE["messages"], max_tokens=3, stream=True,
        extra_headers={"X-PickSpin-Max-Wait": "strict", "X-PickSpin-Profile": "quality"})
    t0 = time.monotonic()
    chunks = list(stream)
    assert [getattr(c, "n", None) for c in chunks] == [0, 1, 2, 3]
    assert time.monotonic() - t0 < 30 and act.starts == 1
