"""``pickspin scorer`` over real HTTP on 127.0.0.1: single, batch, concurrency, bad inputs, metrics."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from functions.scorer.app import ScorerSettings, create_app
from pickspin.config import COMPLEXITY_CLASSES
from tests.helpers import ServerThread, wait_until

from .conftest import ScorerProcess
from .test_engine import BATCH_TOLERANCE, margin


def post(url: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(url + "/v1/classify", json=body, timeout=30, **kw)


def test_health_and_ready(scorer_proc: ScorerProcess) -> None:
    assert httpx.get(scorer_proc.url + "/healthz").json() == {"status": "ok"}
    r = httpx.get(scorer_proc.url + "/readyz").json()
    assert r["status"] == "ready" and r["labels"] == list(COMPLEXITY_CLASSES) and r["max_batch"] == 16


def test_single_and_batch(scorer_proc: ScorerProcess) -> None:
    one = post(scorer_proc.url, {"input": "What is 2 + 2?"})
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["single"] is True and len(body["data"]) == 1 and body["model"]
    item = body["data"][0]
    assert item["class"] in COMPLEXITY_CLASSES
    assert abs(sum(item["probabilities"].values()) - 1) < 1e-4
    texts = ["What is 2 + 2?", "Derive the Euler-Lagrange equations for a double pendulum.", "hi"]
    many = post(scorer_proc.url, {"input": texts}).json()
    assert many["single"] is False and [d["index"] for d in many["data"]] == [0, 1, 2]
    assert abs(many["data"][0]["probabilities"]["high"] - item["probabilities"]["high"]) < BATCH_TOLERANCE


def test_concurrent_callers_get_their_own_answers(scorer_proc: ScorerProcess) -> None:
    # Every text has a different token count, so a caller handed someone else's result would notice.
    texts = [f"Question {i}: explain " + " ".join(["entropy"] * (3 * i)) + " in a closed system." for i in range(16)]
    expected = {t: post(scorer_proc.url, {"input": t}).json()["data"][0] for t in texts}
    got: dict[str, dict[str, Any]] = {}
    barrier = threading.Barrier(len(texts))

    def call(t: str) -> None:
        barrier.wait()
        got[t] = post(scorer_proc.url, {"input": t}).json()["data"][0]

    threads = [threading.Thread(target=call, args=(t,)) for t in texts]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    for t in texts:
        # Its own answer: same token count, same probabilities up to int8 batch-scale noise.
        assert got[t]["tokens"] == expected[t]["tokens"]
        for k in COMPLEXITY_CLASSES:
            assert abs(got[t]["probabilities"][k] - expected[t]["probabilities"][k]) < BATCH_TOLERANCE
        assert got[t]["class"] == expected[t]["class"] or margin(expected[t]["probabilities"]) < 2 * BATCH_TOLERANCE
    m = httpx.get(scorer_proc.url + "/metrics").text
    assert "pickspin_scorer_batch_size_count" in m
    counts = {line.split()[0]: float(line.split()[1]) for line in m.splitlines()
              if line.startswith("pickspin_scorer_batch_size_")}
    # Fewer model calls than texts: some calls carried more than one text.
    assert counts["pickspin_scorer_batch_size_count"] < counts["pickspin_scorer_batch_size_sum"]


@pytest.mark.parametrize("body,status,param", [
    ({"input": ""}, 400, "input"),
    ({"input": "   "}, 400, "input"),
    ({"input": []}, 400, "input"),
    ({"input": ["ok", 3]}, 400, "input[1]"),
    ({"input": {"text": "x"}}, 400, "input"),
    ({"prompt": "x"}, 400, "input"),
    ([1, 2], 400, None),
    ({"input": ["x"] * 257}, 413, "input"),
    ({"input": "y" * 100_001}, 413, "input"),
])
def test_bad_inputs(scorer_proc: ScorerProcess, body: Any, status: int, param: str | None) -> None:
    r = post(scorer_proc.url, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["param"] == param


def test_invalid_json_and_huge_body(scorer_proc: ScorerProcess) -> None:
    r = httpx.post(scorer_proc.url + "/v1/classify", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.post(scorer_proc.url + "/v1/classify", content=b"x" * (9 * 1024 * 1024),
                   headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413


def test_metrics_count_requests(scorer_proc: ScorerProcess) -> None:
    post(scorer_proc.url, {"input": ""})
    m = httpx.get(scorer_proc.url + "/metrics").text
    assert 'pickspin_scorer_requests_total{status="400"}' in m
    assert "pickspin_scorer_ready 1.0" in m
    assert "pickspin_scorer_model_info{version=" in m


def test_not_ready_until_model_loaded(tmp_path: Any) -> None:
    """A scorer whose model cannot load stays unready and answers 503, never 500."""
    app = create_app(ScorerSettings(model_dir=str(tmp_path)))
    srv = ServerThread(app)
    try:
        assert wait_until(lambda: httpx.get(srv.url + "/readyz").json()["status"] == "error", timeout=10)
        assert httpx.get(srv.url + "/readyz").status_code == 503
        r = httpx.post(srv.url + "/v1/classify", json={"input": "hello"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        assert httpx.get(srv.url + "/healthz").status_code == 200
    finally:
        srv.stop()


def test_scorer_cli_refuses_missing_model(tmp_path: Any) -> None:
    import subprocess

    from tests.helpers import pickspin_cmd, subprocess_env

    r = subprocess.run(pickspin_cmd("scorer", "--model-dir", str(tmp_path), "--port", "1"), env=subprocess_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no model.onnx" in r.stdout
