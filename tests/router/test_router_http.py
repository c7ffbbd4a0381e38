"""The router over real HTTP on 127.0.0.1, in front of real (simulated-vLLM) backend servers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, Response

from functions.router.app import create_app
from pickspin.errors import register_error_handlers
from tests.helpers import ServerThread, free_port, sim_server, trio_matrix, wait_until

FAST = {"ttft_s": 0.0, "tpot_s": 0.0}


def chat(text: str, **kw: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], "max_tokens": 4, **kw}


def assert_error_shape(r: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    if param is not None:
        assert err["param"] == param
    return err  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def trio() -> Iterator[dict[str, ServerThread]]:
    with sim_server("small-served", **FAST) as s, sim_server("medium-served", **FAST) as m, \
            sim_server("large-served", **FAST) as lg:
        yield {"small": s, "medium": m, "large": lg}


@pytest.fixture
def router(trio: dict[str, ServerThread]) -> Iterator[ServerThread]:
    matrix = trio_matrix({k: [v.url] for k, v in trio.items()}, router={"max_body_bytes": 4096})
    app = create_app(matrix)
    srv = ServerThread(app)
    yield srv
    srv.stop()
    app.extensions["pickspin"].telemetry.stop()


def test_routes_by_complexity_end_to_end(router: ServerThread) -> None:
    r1 = httpx.post(router.url + "/v1/chat/completions", json=chat("summarise three colours"))
    r2 = httpx.post(router.url + "/v1/chat/completions", json=chat("give a rigorous proof that sqrt(2) is irrational"))
    assert r1.status_code == 200 and r2.status_code == 200
    assert r1.headers["X-PickSpin-Model"] == "small-model"
    assert r1.headers["X-PickSpin-Complexity"] == "low"
    assert r2.headers["X-PickSpin-Complexity"] == "high"
    assert r2.headers["X-PickSpin-Model"] != r1.headers["X-PickSpin-Model"]
    # the backend saw its own served name, and the simulated backend says so
    assert r2.json()["model"] == r2.headers["X-PickSpin-Model"].replace("-model", "-served")
    assert r2.headers["X-PickSpin-Simulated"] == "true"
    assert r1.json()["choices"][0]["message"]["content"].startswith("[simulated small-served]")


def test_profile_header_and_body_field(router: ServerThread) -> None:
    q = httpx.post(router.url + "/v1/chat/completions", json=chat("a rigorous proof, please"), headers={"X-PickSpin-Profile": "quality"})
    c = httpx.post(router.url + "/v1/chat/completions", json=chat("a rigorous proof, please", profile="cost"))
    assert q.headers["X-PickSpin-Model"] == "large-model" and q.headers["X-PickSpin-Profile"] == "quality"
    assert c.headers["X-PickSpin-Model"] == "small-model" and c.headers["X-PickSpin-Profile"] == "cost"
    assert_error_shape(httpx.post(router.url + "/v1/chat/completions", json=chat("x", profile="nope")), 400,
                       "profile")


def test_named_model_still_picks_its_backend(router: ServerThread) -> None:
    r = httpx.post(router.url + "/v1/chat/completions", json={**chat("list a b c"), "model": "large-model"})
    assert r.status_code == 200
    assert r.headers["X-PickSpin-Model"] == "large-model" and r.headers["X-PickSpin-Backend"] == "large-b0"


def test_text_completions(router: ServerThread) -> None:
    r = httpx.post(router.url + "/v1/completions", json={"prompt": "summarise latency", "max_tokens": 3})
    assert r.status_code == 200
    assert r.json()["object"] == "text_completion"
    assert r.headers["X-PickSpin-Complexity"] == "low"


def test_models_lists_auto_and_simulated(router: ServerThread) -> None:
    data = httpx.get(router.url + "/v1/models").json()["data"]
    ids = [d["id"] for d in data]
    assert ids == ["auto", "small-model", "medium-model", "large-model"]
    assert all(d["pickspin"]["simulated"] for d in data[1:])
    assert data[3]["pickspin"]["tier"] == "large"


def test_route_dry_run_does_not_call_a_backend(router: ServerThread, trio: dict[str, ServerThread]) -> None:
    before = httpx.get(trio["large"].url + "/metrics").text.count("vllm:e2e_request_latency_seconds_count")
    eng = trio["large"].app.extensions["pickspin_sim"]
    hist_before = eng.h_e2e.labels("large-served")._sum.get()
    r = httpx.post(router.url + "/v1/route", json={"messages": [{"role": "user", "content": "give a rigorous proof that P != NP"}],
                                                  "profile": "quality"})
    assert r.status_code == 200
    body = r.json()
    assert body["decision"]["model"] == "large-model"
    assert body["complexity"]["class"] == "high" and body["complexity"]["rule"] == "high:rigorous"
    assert len(body["candidates"]) == 3 and {c["model"] for c in body["candidates"]} == {
        "small-model", "medium-model", "large-model"}
    assert body["profile"]["weights"]["R"] == pytest.approx(1 / 1.2, abs=1e-3)
    assert eng.h_e2e.labels("large-served")._sum.get() == hist_before
    assert before >= 1


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (b"", 400, None),
        (json.dumps({"model": "auto"}).encode(), 400, "messages"),
        (json.dumps({"messages": []}).encode(), 400, "messages"),
        (json.dumps({"messages": [{"content": "hi"}]}).encode(), 400, "messages[0].role"),
        (json.dumps({"messages": [{"role": "user", "content": 5}]}).encode(), 400, "messages[0].content"),
        (json.dumps({**chat("hi"), "stream": "yes"}).encode(), 400, "stream"),
        (json.dumps({**chat("hi"), "max_tokens": -1}).encode(), 400, "max_tokens"),
        (json.dumps({**chat("hi"), "model": "gpt-9"}).encode(), 404, "model"),
        (json.dumps(chat("x" * 5000)).encode(), 413, None),
    ],
)
def test_client_errors_have_openai_shape(router: ServerThread, body: bytes, status: int, param: str | None) -> None:
    r = httpx.post(router.url + "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert_error_shape(r, status, param)


def test_unknown_path_and_method(router: ServerThread) -> None:
    assert_error_shape(httpx.get(router.url + "/v1/nothing"), 404)
    assert_error_shape(httpx.get(router.url + "/v1/chat/completions"), 405)


def test_health_ready_metrics_openapi(router: ServerThread) -> None:
    assert httpx.get(router.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(router.url + "/readyz").status_code == 200
    httpx.post(router.url + "/v1/chat/completions", json=chat("summarise x"))
    text = httpx.get(router.url + "/metrics").text
    for name in ("pickspin_requests_total", "pickspin_request_duration_seconds_bucket", "pickspin_ttft_seconds",
                 "pickspin_inflight_requests", "pickspin_route_decision_seconds", "pickspin_backend_up"):
        assert name in text, name
    assert 'pickspin_requests_total{backend="small-b0",complexity="low",model="small-model",status="200"}' in text
    spec = httpx.get(router.url + "/openapi.yaml").text
    assert "/v1/chat/completions" in spec and "openapi: 3" in spec


# -- failures: no healthy backend, upstream errors, timeouts, failover ---------------------------

def _failing_backend(status: int = 500, delay: float = 0.0) -> ServerThread:
    app = Flask("failing")
    register_error_handlers(app)

    @app.post("/v1/chat/completions")
    def _chat() -> Response:
        time.sleep(delay)
        return Response('{"error": "boom"}', status=status, mimetype="application/json")

    @app.get("/health")
    def _health() -> Response:
        return Response("ok")

    return ServerThread(app)


def _router_for(urls: dict[str, list[str]], **router: Any) -> tuple[ServerThread, Flask]:
    app = create_app(trio_matrix(urls, router=router))
    return ServerThread(app), app


def test_no_healthy_backend_is_503_with_retry_after() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    srv, app = _router_for({"small": [dead]})
    try:
        st = app.extensions["pickspin"]
        assert wait_until(lambda: not st.telemetry.snapshot["small-b0"].healthy, 5)
        r = httpx.post(srv.url + "/v1/chat/completions", json=chat("hi"))
        assert_error_shape(r, 503)
        assert r.json()["error"]["code"] == "no_healthy_backend"
        assert r.headers["Retry-After"] == "2"
    finally:
        srv.stop()
        app.extensions["pickspin"].telemetry.stop()


def test_upstream_5xx_fails_over_then_502() -> None:
    bad = _failing_backend(500)
    with sim_server("small-served", **FAST) as good:
        srv, app = _router_for({"small": [bad.url, good.url]})
        try:
            r = httpx.post(srv.url + "/v1/chat/completions", json=chat("list"))
            assert r.status_code == 200 and r.headers["X-PickSpin-Backend"] == "small-b1"
            metrics = httpx.get(srv.url + "/metrics").text
            assert 'pickspin_upstream_retries_total{backend="small-b0",reason="status_5xx"} 1.0' in metrics
        finally:
            srv.stop()
            app.extensions["pickspin"].telemetry.stop()
    srv, app = _router_for({"small": [bad.url]})
    try:
        err = assert_error_shape(httpx.post(srv.url + "/v1/chat/completions", json=chat("list")), 502)
        assert err["code"] == "upstream_error"
    finally:
        srv.stop()
        app.extensions["pickspin"].telemetry.stop()
        bad.stop()


def test_upstream_timeout_is_504() -> None:
    slow = _failing_backend(200, delay=1.5)
    srv, app = _router_for({"small": [slow.url]}, first_byte_timeout_s=0.3, max_attempts=1)
    try:
        err = assert_error_shape(httpx.post(srv.url + "/v1/chat/completions", json=chat("list"), timeout=10), 504)
        assert err["code"] == "upstream_timeout"
    finally:
        srv.stop()
        app.extensions["pickspin"].telemetry.stop()
        slow.stop()


def test_upstream_4xx_is_passed_through_unchanged_and_not_retried() -> None:
    bad = _failing_backend(422)
    with sim_server("small-served", **FAST) as good:
        srv, app = _router_for({"small": [bad.url, good.url]})
        try:
            r = httpx.post(srv.url + "/v1/chat/completions", json=chat("list"))
            assert r.status_code == 422 and r.json() == {"error": "boom"}
            assert r.headers["X-PickSpin-Backend"] == "small-b0"
        finally:
            srv.stop()
            app.extensions["pickspin"].telemetry.stop()
            bad.stop()


def test_failover_when_a_backend_is_killed_mid_suite() -> None:
    with sim_server("small-served", **FAST) as b1:
        b0 = ServerThread(_sim_app("small-served"))
        srv, app = _router_for({"small": [b0.url, b1.url]}, probe_interval_s=30)
        try:
            first = httpx.post(srv.url + "/v1/chat/completions", json=chat("list"))
            assert first.status_code == 200 and first.headers["X-PickSpin-Backend"] == "small-b0"
            b0.stop()  # killed; the prober will not notice for 30 s
            for _ in range(3):
                r = httpx.post(srv.url + "/v1/chat/completions", json=chat("list"))
                assert r.status_code == 200
                assert r.headers["X-PickSpin-Backend"] == "small-b1"
            assert not app.extensions["pickspin"].telemetry.snapshot["small-b0"].healthy
        finally:
            srv.stop()
            app.extensions["pickspin"].telemetry.stop()


def _sim_app(model: str) -> Flask:
    from stack.simbackend import SimSpec, create_sim_app

    return create_sim_app(SimSpec(model=model, **FAST))


def test_a_failing_backend_never_takes_the_router_down() -> None:
    bad = _failing_backend(500)
    # breaker_consecutive_failures: keep the circuit closed so every request really reaches the backend
    srv, app = _router_for({"small": [bad.url]}, max_error_rate=1.0, breaker_consecutive_failures=1000)
    try:
        results: list[int] = []

        def hit() -> None:
            for _ in range(5):
                results.append(httpx.post(srv.url + "/v1/chat/completions", json=chat("list")).status_code)

        ts = [threading.Thread(target=hit) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=30)
        assert len(results) == 20 and set(results) == {502}
        assert httpx.get(srv.url + "/healthz").status_code == 200
    finally:
        srv.stop()
        app.extensions["pickspin"].telemetry.stop()
        bad.stop()


def test_api_keys_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PICKSPIN_API_KEYS", "k1, k2")
    with sim_server("small-served", **FAST) as s:
        srv, app = _router_for({"small": [s.url]})
        try:
            assert_error_shape(httpx.post(srv.url + "/v1/chat/completions", json=chat("list")), 401)
            assert_error_shape(httpx.post(srv.url + "/v1/chat/completions", json=chat("list"),
                                          headers={"Authorization": "Bearer nope"}), 401)
            ok = httpx.post(srv.url + "/v1/chat/completions", json=chat("list"), headers={"Authorization": "Bearer k2"})
            assert ok.status_code == 200
            assert httpx.get(srv.url + "/healthz").status_code == 200  # probes need no key
        finally:
            srv.stop()
            app.extensions["pickspin"].telemetry.stop()


def test_passive_health_without_probes_skips_then_retries_a_dead_backend() -> None:
    """On Knative the router must not probe (a probe would wake a scaled-to-zero backend)."""
    port = free_port()
    with sim_server("small-served", **FAST) as good:
        srv, app = _router_for({"small": [f"http://127.0.0.1:{port}", good.url]}, active_probes=False,
                               down_cooldown_s=0.5)
        tel = app.extensions["pickspin"].telemetry
        try:
            r = httpx.post(srv.url + "/v1/chat/completions", json=chat("list"))
            assert r.status_code == 200 and r.headers["X-PickSpin-Backend"] == "small-b1"
            assert not tel.snapshot["small-b0"].healthy  # marked down by the failed connect
            # the dead backend comes back to life on its port; after the cooldown it is tried again
            revived = ServerThread(_sim_app("small-served"), port=port)
            try:
                assert wait_until(lambda: tel.snapshot["small-b0"].healthy, 5)
                table = httpx.post(srv.url + "/v1/route", json=chat("list")).json()["candidates"]
                assert {c["backend"]: c["eligible"] for c in table} == {"small-b0": True, "small-b1": True}
            finally:
                revived.stop()
        finally:
            srv.stop()
            tel.stop()


def test_readyz_waits_for_a_loading_classifier() -> None:
    from functions.router.classifiers.keyword import KeywordClassifier
    from pickspin.config import KeywordRules

    class Loading(KeywordClassifier):
        loaded = False

        def ready(self) -> bool:
            return self.loaded

    clf = Loading(KeywordRules())
    app = create_app(trio_matrix({"small": ["http://127.0.0.1:9"]}), classifier=clf, start_prober=False)
    c = app.test_client()
    r = c.get("/readyz")
    assert r.status_code == 503 and r.get_json()["status"] == "loading classifier"
    clf.loaded = True
    assert c.get("/readyz").status_code == 200
    assert c.get("/healthz").status_code == 200


def test_models_show_readiness_and_503_retry_after_follows_the_eta() -> None:
    """/v1/models says cold / waking / warm with the activator's ETA; a 503 asks to retry when the
    soonest waking backend should be ready (test client: no network, the telemetry set by hand)."""
    app = create_app(trio_matrix({"small": ["http://127.0.0.1:9"]}), start_prober=False)
    tel = app.extensions["pickspin"].telemetry
    c = app.test_client()

    def backend() -> dict[str, Any]:
        return dict(c.get("/v1/models").get_json()["data"][1]["pickspin"]["backends"][0])

    assert (backend()["state"], backend()["eta_s"]) == ("warm", None)
    tel.set_readiness("small-b0", cold=False, eta_s=4.2)
    assert (backend()["state"], backend()["eta_s"]) == ("waking", 4.2)
    tel.set_health("small-b0", False)
    r = c.post("/v1/chat/completions", json=chat("list three colours"))
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    tel.set_readiness("small-b0", cold=True, eta_s=None)
    assert backend()["state"] == "cold"
    r = c.post("/v1/chat/completions", json=chat("list three colours"))
    assert r.headers["Retry-After"] == str(app.extensions["pickspin"].matrix.router.retry_after_s)


def test_a_waking_backend_beyond_its_held_cap_answers_503_with_its_eta() -> None:
    """Herd control: a waking backend takes max_concurrency + router.max_held_per_backend requests for its one
    start; the next gets 503 in OpenAI's shape, names the cap, and Retry-After is the ETA (not the default)."""
    m = trio_matrix({"small": ["http://127.0.0.1:9"]}, router={"max_held_per_backend": 3, "max_wait_s": 60})
    app = create_app(m, start_prober=False)
    st = app.extensions["pickspin"]
    tel = st.telemetry
    cap = st.candidates[0].backend.max_concurrency + 3
    tel.set_readiness("small-b0", cold=False, eta_s=7.2)
    for _ in range(cap):
        tel.begin("small-b0")
    r = app.test_client().post("/v1/chat/completions", json=chat("list three colours"))
    assert r.status_code == 503 and r.headers["Retry-After"] == "8"
    err = r.get_json()["error"]
    assert err["code"] == "no_healthy_backend" and f"{cap} held, at the cap" in err["message"]
