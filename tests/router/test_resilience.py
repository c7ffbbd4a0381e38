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
    print(f"traffic back {recovered:.2f} s after the backend recovered")
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


# -- what a backend sends back: internal headers, streams cut short, deadlines, big answers -----------

def _sse(obj: object) -> bytes:
    import json

    return b"data: " + json.dumps(obj).encode() + b"\n\n"


class Odd:
    """A backend misbehaving on purpose; ``mode`` picks how."""

    def __init__(self) -> None:
        self.mode = "ok"
        app = Flask("odd")

        @app.post("/v1/chat/completions")
        def _chat() -> Response:
            mode = self.mode
            if mode == "ok":
                return Response(OK_BODY, mimetype="application/json",
                                headers={"X-PickSpin-Model": "evil", "X-PickSpin-Simulated": "true",
                                         "X-Pickspin-Whatever": "x", "X-Backend-Own": "kept"})

            def events() -> Iterator[bytes]:
                yield _sse({"n": 0})
                if mode == "nodone":
                    yield _sse({"n": 1})
                elif mode == "stall":
                    time.sleep(3)
                    yield b"data: [DONE]\n\n"
                elif mode == "trickle":
                    for i in range(50):  # bounded: 5 s
                        time.sleep(0.1)
                        yield _sse({"n": i})
                    yield b"data: [DONE]\n\n"

            if mode == "big":  # 200 MB non-streamed answer, generated piece by piece
                piece = b"x" * (1 << 20)
                return Response((piece for _ in range(200)), mimetype="application/json",
                                headers={"Content-Length": str(200 << 20)})
            if mode == "slowbody":  # a non-streamed body that trickles: 1 byte every 0.2 s
                def slow() -> Iterator[bytes]:
                    for _ in range(25):
                        time.sleep(0.2)
                        yield b" "
                return Response(slow(), mimetype="application/json", headers={"Content-Length": "25"})
            return Response(events(), mimetype="text/event-stream")

        @app.get("/health")
        def _health() -> Response:
            return Response("ok")

        self.srv = ServerThread(app)


@pytest.fixture
def odd() -> Iterator[Odd]:
    o = Odd()
    yield o
    o.srv.stop()


def _plain_router(url: str, **router: Any) -> tuple[ServerThread, Flask]:
    from pickspin.config import parse_config

    cfg = {"models": [{"name": "m", "tier": "small", "capability": {"low": 1, "medium": 1, "high": 1},
                       "cost": {"per_1k_tokens": 0.01},
                       "backends": [{"name": "real", "kind": "vllm", "url": url, "served_model_name": "m"}]}],
           "router": {"probe_interval_s": 0.2, **router}}
    app = create_app(parse_config(cfg))
    return ServerThread(app), app


def _stream_events(url: str, timeout: float = 20) -> tuple[list[str], float]:
    t0 = time.monotonic()
    with httpx.stream("POST", url + "/v1/chat/completions", json=chat(stream=True), timeout=timeout) as r:
        assert r.status_code == 200
        lines = [ln[6:] for ln in r.iter_lines() if ln.startswith("data: ")]
    return lines, time.monotonic() - t0


def test_backend_cannot_set_internal_headers(odd: Odd, stop_after: list[tuple[ServerThread, Flask]]) -> None:
    srv, app = _plain_router(odd.srv.url)
    stop_after.append((srv, app))
    r = httpx.post(srv.url + "/v1/chat/completions", json=chat())
    assert r.status_code == 200
    assert r.headers["X-PickSpin-Model"] == "m" and r.headers["X-PickSpin-Backend"] == "real"
    assert "X-PickSpin-Simulated" not in r.headers and "X-Pickspin-Whatever" not in r.headers
    assert r.headers["X-Backend-Own"] == "kept"


def test_stream_ending_without_done_gets_an_error_event(odd: Odd,
                                                        stop_after: list[tuple[ServerThread, Flask]]) -> None:
    import json

    srv, app = _plain_router(odd.srv.url)
    stop_after.append((srv, app))
    odd.mode = "nodone"
    lines, _ = _stream_events(srv.url)
    assert json.loads(lines[0]) == {"n": 0} and json.loads(lines[1]) == {"n": 1}
    assert json.loads(lines[-1])["error"]["code"] == "upstream_stream_incomplete"
    odd.mode = "trickle"  # a complete stream is left alone
    lines, _ = _stream_events(srv.url)
    assert lines[-1] == "[DONE]"


def test_stalled_stream_ends_by_the_idle_deadline(odd: Odd, stop_after: list[tuple[ServerThread, Flask]]) -> None:
    import json

    srv, app = _plain_router(odd.srv.url, stream_idle_timeout_s=0.5)
    stop_after.append((srv, app))
    odd.mode = "stall"
    lines, took = _stream_events(srv.url)
    assert json.loads(lines[-1])["error"]["code"] == "upstream_idle_timeout"
    assert took < 2.5  # the backend stalls for 3 s; without the idle deadline the stream would wait for it


def test_trickling_stream_ends_by_the_total_deadline(odd: Odd, stop_after: list[tuple[ServerThread, Flask]]) -> None:
    import json

    srv, app = _plain_router(odd.srv.url, total_timeout_s=1.0)
    stop_after.append((srv, app))
    odd.mode = "trickle"  # a chunk every 0.1 s for 5 s: never idle, always late
    lines, took = _stream_events(srv.url)
    assert json.loads(lines[-1])["error"]["code"] == "upstream_deadline"
    assert 3 < len(lines) < 40 and took < 4.0


def test_trickling_body_ends_by_the_total_deadline(odd: Odd, stop_after: list[tuple[ServerThread, Flask]]) -> None:
    srv, app = _plain_router(odd.srv.url, total_timeout_s=1.0, max_attempts=1)
    stop_after.append((srv, app))
    odd.mode = "slowbody"  # 5 s of body, a byte every 0.2 s
    t0 = time.monotonic()
    r = httpx.post(srv.url + "/v1/chat/completions", json=chat(), timeout=20)
    assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - t0 < 4.0


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def test_a_200mb_answer_streams_through_with_bounded_memory(
        odd: Odd, stop_after: list[tuple[ServerThread, Flask]]) -> None:
    import threading

    srv, app = _plain_router(odd.srv.url)
    stop_after.append((srv, app))
    odd.mode = "big"
    base = _rss_mb()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.01)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    got = 0
    try:
        with httpx.stream("POST", srv.url + "/v1/chat/completions", json=chat(), timeout=60) as r:
            assert r.status_code == 200
            for part in r.iter_raw(1 << 16):
                got += len(part)
    finally:
        done.set()
        t.join(5)
    assert got == 200 << 20
    print(f"RSS growth while relaying a 200 MB answer: {peak[0] - base:.0f} MB")
    assert peak[0] - base < 80, f"RSS grew by {peak[0] - base:.0f} MB"  # buffering it would take >= 200 MB


def test_a_500_whose_body_hangs_fails_over_at_once(stop_after: list[tuple[ServerThread, Flask]]) -> None:
    import socket as socketlib
    import threading

    # a raw backend: 500 status and headers promising a body that never comes
    lsock = socketlib.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    held: list[socketlib.socket] = []

    def serve() -> None:
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            held.append(c)
            c.recv(65536)
            c.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000\r\n\r\n{")

    threading.Thread(target=serve, daemon=True).start()
    good = Flaky()
    try:
        srv, app = _router({"small": [f"http://127.0.0.1:{lsock.getsockname()[1]}", good.url]},
                           active_probes=False, first_byte_timeout_s=10)
        stop_after.append((srv, app))
        t0 = time.monotonic()
        r = httpx.post(srv.url + "/v1/chat/completions", json=chat(), timeout=30)
        took = time.monotonic() - t0
        assert r.status_code == 200 and r.headers["X-PickSpin-Backend"] == "small-b1"
        assert took < 3.0, took  # not the 10 s first-byte timeout
        assert 'pickspin_upstream_retries_total{backend="small-b0",reason="status_5xx"} 1.0' in \
            httpx.get(srv.url + "/metrics").text
    finally:
        lsock.close()
        for c in held:
            c.close()
        good.srv.stop()
