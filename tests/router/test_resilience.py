"""Router resilience over real HTTP on 127.0.0.1: circuit breaker recovery, restarted backends,
malformed input, internal headers, streams cut short. Loops are bounded in count and time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, Response

from functions.router.app import create_app
from tests.helpers import ServerThread, trio_matrix, wait_until


def chat(text: str = "list a b", **kw: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], "max_tokens": 4, **kw}


OK_BODY = '{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}]}'


class Flaky:
    """A backend whose chat answer the test switches: 200, or ``status`` with an error body."""

    def __init__(self) -> None:
        self.status = 200
        self.calls = 0
        app = Flask("flaky")

        @app.post("/v1/chat/completions")
        def _chat() -> Response:
            self.calls += 1
            if self.status != 200:
                return Response('{"error": "down"}', status=self.status, mimetype="application/json")
            return Response(OK_BODY, mimetype="application/json")

        @app.get("/health")
        def _health() -> Response:
            return Response("ok")

        self.srv = ServerThread(app)
        self.url = self.srv.url


@pytest.fixture
def flaky() -> Iterator[Flaky]:
    f = Flaky()
    yield f
    f.srv.stop()


def _router(urls: dict[str, list[str]], **router: Any) -> tuple[ServerThread, Flask]:
    app = create_app(trio_matrix(urls, router=router))
    return ServerThread(app), app


@pytest.fixture
def stop_after() -> Iterator[list[tuple[ServerThread, Flask]]]:
    made: list[tuple[ServerThread, Flask]] = []
    yield made
    for srv, app in made:
        srv.stop()
        app.extensions["pickspin"].telemetry.stop()


def test_a_500ing_backend_gets_traffic_back_within_2s_without_active_probes(
        flaky: Flaky, stop_after: list[tuple[ServerThread, Flask]]) -> None:
    srv, app = _router({"small": [flaky.url]}, active_probes=False)
    stop_after.append((srv, app))
    flaky.status = 500
    codes = [httpx.post(srv.url + "/v1/chat/completions", json=chat(), timeout=10).status_code for _ in range(8)]
    assert codes[:5] == [502] * 5 and set(codes[5:]) == {503}  # 5 failures in a row open the circuit
    route = httpx.post(srv.url + "/v1/route", json=chat()).json()
    assert route["candidates"][0]["circuit"]["state"] == "open"
    models = httpx.get(srv.url + "/v1/models").json()["data"]
    assert models[1]["pickspin"]["backends"][0]["circuit"]["state"] == "open"
    metrics = httpx.get(srv.url + "/metrics").text
    assert 'pickspin_backend_circuit_state{backend="small-b0"} 2.0' in metrics
    assert 'pickspin_circuit_transitions_total{backend="small-b0",to="open"} 1.0' in metrics

    flaky.status = 200  # the backend recovers
    t0 = time.monotonic()
    recovered = None
    for _ in range(200):  # at most ~3 s of polling
        if httpx.post(srv.url + "/v1/chat/completions", json=chat(), timeout=10).status_code == 200:
            recovered = time.monotonic() - t0
            break
        time.sleep(0.015)
    assert recovered is not None and recovered < 2.0, recovered
    # and it stays in rotation
    assert all(httpx.post(srv.url + "/v1/chat/completions", json=chat()).status_code == 200 for _ in range(5))
    assert httpx.post(srv.url + "/v1/route", json=chat()).json()["candidates"][0]["circuit"]["state"] == "closed"


def test_two_502s_on_the_only_backend_do_not_lock_it_out(
        flaky: Flaky, stop_after: list[tuple[ServerThread, Flask]]) -> None:
    srv, app = _router({"small": [flaky.url]}, active_probes=False)
    stop_after.append((srv, app))
    flaky.status = 502
    assert [httpx.post(srv.url + "/v1/chat/completions", json=chat()).status_code for _ in range(2)] == [502, 502]
    flaky.status = 200
    r = httpx.post(srv.url + "/v1/chat/completions", json=chat())
    assert r.status_code == 200, r.text


def test_client_4xx_never_opens_the_circuit(flaky: Flaky, stop_after: list[tuple[ServerThread, Flask]]) -> None:
    srv, app = _router({"small": [flaky.url]}, active_probes=False, breaker_consecutive_failures=2)
    stop_after.append((srv, app))
    flaky.status = 400
    codes = {httpx.post(srv.url + "/v1/chat/completions", json=chat()).status_code for _ in range(6)}
    assert codes == {400}
    assert app.extensions["pickspin"].telemetry.snapshot["small-b0"].circuit == "closed"
    assert wait_until(lambda: flaky.calls == 6, 1)


# -- a restarted backend: stale pooled keep-alive connections ----------------------------------------

STUB = __import__("pathlib").Path(__file__).resolve().parents[1] / "scaler" / "stub_backend.py"


def _start_stub(port: int) -> Any:
    import subprocess
    import sys

    from pickspin.procs import wait_http_ok

    p = subprocess.Popen([sys.executable, str(STUB), "--port", str(port)], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_http_ok(f"http://127.0.0.1:{port}/health", timeout=20, proc=p, interval=0.05)
    return p


def test_kill_and_restart_of_the_only_backend_next_request_succeeds(
        stop_after: list[tuple[ServerThread, Flask]]) -> None:
    import signal
    from concurrent.futures import ThreadPoolExecutor

    from pickspin.procs import terminate_group
    from tests.helpers import free_port

    port = free_port()
    stub = _start_stub(port)
    srv, app = _router({"small": [f"http://127.0.0.1:{port}"]}, active_probes=False)
    stop_after.append((srv, app))
    tel = app.extensions["pickspin"].telemetry
    try:
        # several requests at once leave several idle keep-alive connections in the router's pool
        with ThreadPoolExecutor(4) as ex:
            assert set(ex.map(lambda _: httpx.post(srv.url + "/v1/chat/completions", json=chat()).status_code,
                              range(8))) == {200}
        assert len(app.extensions["pickspin"].forwarder.pool._idle[("127.0.0.1", port)]) >= 2
        stub.send_signal(signal.SIGKILL)  # the backend dies; its process comes back on the same port
        stub.wait(5)
        stub = _start_stub(port)
        r = httpx.post(srv.url + "/v1/chat/completions", json=chat())
        assert r.status_code == 200, r.text
        s = tel.snapshot["small-b0"]
        assert (s.circuit, s.consecutive_failures, s.error_rate) == ("closed", 0, 0.0)  # no failure counted
    finally:
        terminate_group(stub)
