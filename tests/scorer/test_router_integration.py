"""Routing modes keyword | semantic | hybrid: in-process and remote scorer, and the keyword fallback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask, Response, jsonify

from functions.router.app import create_app
from functions.router.classifiers import build_classifier
from functions.router.classifiers.hybrid import HybridClassifier
from functions.router.classifiers.keyword import KeywordClassifier
from functions.router.classifiers.remote import LocalScorer, RemoteScorer
from functions.router.classifiers.semantic import SemanticClassifier
from pickspin.config import COMPLEXITY_CLASSES, KeywordRules
from tests.helpers import ServerThread, free_port, sim_server, trio_matrix

from .conftest import ScorerProcess
from .test_engine import BATCH_TOLERANCE

NO_KEYWORD = "A 2.0 kg block slides down a frictionless incline of 30 degrees; what is its acceleration?"
KEYWORD_HIGH = "Give a rigorous proof that the square root of 2 is irrational."
CONFLICT = "Summarise the steps and prove the lemma."
FAST = {"ttft_s": 0.0, "tpot_s": 0.0}


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def matrix(mode: str, keyword: dict[str, Any] | None = None, **scorer: Any) -> Any:
    urls = {"small": ["http://127.0.0.1:9"], "medium": ["http://127.0.0.1:9"], "large": ["http://127.0.0.1:9"]}
    return trio_matrix(urls, routing={"mode": mode, "scorer": scorer, **({"keyword": keyword} if keyword else {})})


@pytest.fixture(scope="module")
def local_scorer(model_dir: Path) -> LocalScorer:
    s = LocalScorer(model_dir)
    assert s.wait_ready(60), s.error
    return s


def test_registry_builds_each_mode(model_dir: Path) -> None:
    assert isinstance(build_classifier("keyword", matrix("keyword")), KeywordClassifier)
    sem = build_classifier("semantic", matrix("semantic"))
    assert isinstance(sem, SemanticClassifier) and isinstance(sem.scorer, LocalScorer)
    hyb = build_classifier("hybrid", matrix("hybrid", url="http://127.0.0.1:1", timeout_s=0.1))
    assert isinstance(hyb, HybridClassifier) and isinstance(hyb.semantic.scorer, RemoteScorer)
    assert hyb.semantic.scorer.timeout_s == 0.1


def test_semantic_in_process(local_scorer: LocalScorer) -> None:
    c = SemanticClassifier(local_scorer, KeywordClassifier(KeywordRules()))
    e = c.classify(NO_KEYWORD)
    assert e.source == "semantic" and e.label in COMPLEXITY_CLASSES
    assert set(e.probs) == set(COMPLEXITY_CLASSES) and abs(sum(e.probs.values()) - 1) < 1e-5
    assert e.confidence == e.probs[e.label] and e.detail["scorer"] == "in-process"


def test_semantic_remote_matches_in_process(scorer_proc: ScorerProcess, local_scorer: LocalScorer) -> None:
    kw = KeywordClassifier(KeywordRules())
    remote = SemanticClassifier(RemoteScorer(scorer_proc.url, timeout_s=5.0), kw).classify(NO_KEYWORD)
    local = SemanticClassifier(local_scorer, kw).classify(NO_KEYWORD)
    assert remote.source == "semantic" and remote.detail["scorer"] == scorer_proc.url
    assert remote.detail["model_version"] == local.detail["model_version"]
    for k in COMPLEXITY_CLASSES:
        assert abs(remote.probs[k] - local.probs[k]) < BATCH_TOLERANCE


def test_hybrid_confident_keyword_hit_decides_without_scorer() -> None:
    h = HybridClassifier.from_config(matrix("hybrid", keyword={"hit_confidence": 0.85}, url=dead_url(), timeout_s=0.2))
    e = h.classify(KEYWORD_HIGH)
    assert e.source == "keyword" and e.label == "high" and e.detail["hybrid"] == "keyword"


def test_hybrid_default_hit_goes_to_the_scorer(local_scorer: LocalScorer) -> None:
    """Default rules are weak (hit_confidence 0.6 < 0.8): the scorer decides, the rule is only noted."""
    kw = KeywordClassifier(KeywordRules())
    sem = SemanticClassifier(local_scorer, kw)
    h = HybridClassifier(kw, sem)
    alone = sem.classify(KEYWORD_HIGH)
    e = h.classify(KEYWORD_HIGH)
    assert e.source == "semantic" and e.detail["hybrid"] == "scorer:weak-hit" and e.rule == "high:rigorous"
    assert e.probs == alone.probs and e.label == alone.label


def test_hybrid_ambiguous_goes_to_scorer(local_scorer: LocalScorer) -> None:
    kw = KeywordClassifier(KeywordRules())
    assert kw.classify(NO_KEYWORD).rule is None and kw.classify(CONFLICT).detail.get("conflict")
    h = HybridClassifier(kw, SemanticClassifier(local_scorer, kw))
    for text, why in ((NO_KEYWORD, "no-hit"), (CONFLICT, "conflict")):
        e = h.classify(text)
        assert e.source == "semantic", text
        assert e.detail["hybrid"] == f"scorer:{why}"


def test_hybrid_falls_back_when_scorer_is_stopped() -> None:
    proc = ScorerProcess()
    try:
        proc.wait_ready()
        kw = KeywordClassifier(KeywordRules())
        h = HybridClassifier(kw, SemanticClassifier(RemoteScorer(proc.url, timeout_s=5.0, cooldown_s=0.0), kw))
        assert h.classify(NO_KEYWORD).source == "semantic"
    finally:
        proc.stop()
    e = h.classify(NO_KEYWORD)
    assert e.source == "keyword-fallback" and e.detail["fallback_reason"] == "unavailable"
    assert e.label == "medium" and e.rule is None  # the keyword default class
    assert h.classify(KEYWORD_HIGH).source == "keyword-fallback"  # the keyword estimate stands in


@pytest.fixture
def slow_scorer() -> Iterator[ServerThread]:
    app = Flask("slow")

    @app.post("/v1/classify")
    def classify() -> Response:
        time.sleep(1.0)
        return jsonify({"model": "slow", "data": [{"class": "low", "probabilities": {"low": 1, "medium": 0, "high": 0}}]})

    srv = ServerThread(app)
    yield srv
    srv.stop()


def test_slow_scorer_times_out_to_keywords(slow_scorer: ServerThread) -> None:
    kw = KeywordClassifier(KeywordRules())
    remote = RemoteScorer(slow_scorer.url, timeout_s=0.2, cooldown_s=30.0)
    c = SemanticClassifier(remote, kw)
    e = c.classify(NO_KEYWORD)
    assert e.source == "keyword-fallback" and e.detail["fallback_reason"] == "timeout"
    # The breaker is open now: the next call does not wait for the slow scorer again.
    e2 = c.classify(NO_KEYWORD)
    assert e2.source == "keyword-fallback" and e2.detail["fallback_reason"] == "timeout"


def test_bad_scorer_answers_are_errors() -> None:
    app = Flask("bad")

    @app.post("/v1/classify")
    def classify() -> Response:
        return jsonify({"unexpected": True})

    srv = ServerThread(app)
    try:
        e = SemanticClassifier(RemoteScorer(srv.url, timeout_s=2.0), KeywordClassifier(KeywordRules())).classify("x")
        assert e.source == "keyword-fallback" and e.detail["fallback_reason"] == "error"
    finally:
        srv.stop()


def test_in_process_missing_model_falls_back(tmp_path: Path) -> None:
    s = LocalScorer(tmp_path)
    assert not s.wait_ready(10) and s.error
    e = SemanticClassifier(s, KeywordClassifier(KeywordRules())).classify(NO_KEYWORD)
    assert e.source == "keyword-fallback" and e.detail["fallback_reason"] == "unavailable"


# -- through the router app over real HTTP ------------------------------------------------------

@pytest.fixture(scope="module")
def trio() -> Iterator[dict[str, ServerThread]]:
    with sim_server("small-served", **FAST) as s, sim_server("medium-served", **FAST) as m, \
            sim_server("large-served", **FAST) as lg:
        yield {"small": s, "medium": m, "large": lg}


def _router(trio: dict[str, ServerThread], **routing: Any) -> tuple[ServerThread, Flask]:
    app = create_app(trio_matrix({k: [v.url] for k, v in trio.items()}, routing=routing))
    srv = ServerThread(app)
    assert _wait_backends(srv.url)
    return srv, app


def _wait_backends(url: str) -> bool:
    from tests.helpers import wait_until

    return wait_until(lambda: httpx.get(url + "/readyz").json()["backends_up"] == 3, timeout=10)


def _chat(url: str, text: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", timeout=30,
                      json={"model": "auto", "messages": [{"role": "user", "content": text}], "max_tokens": 4})


def test_router_hybrid_with_remote_scorer_and_fallback(trio: dict[str, ServerThread],
                                                       scorer_proc: ScorerProcess) -> None:
    srv, app = _router(trio, mode="hybrid", scorer={"url": scorer_proc.url, "timeout_s": 5.0})
    try:
        r = _chat(srv.url, NO_KEYWORD)
        assert r.status_code == 200 and r.headers["X-PickSpin-Classifier"] == "semantic"
        r = _chat(srv.url, KEYWORD_HIGH)  # default rules: a hit shifts the scorer's estimate (weak-hit)
        assert r.status_code == 200 and r.headers["X-PickSpin-Classifier"] == "semantic"
        route = httpx.post(srv.url + "/v1/route", json={"messages": [{"role": "user", "content": NO_KEYWORD}]}).json()
        assert route["complexity"]["source"] == "semantic"
        probs = route["complexity"]["probabilities"]
        # R(p, L_x) = sum_k p_k * capability[x][k] for every candidate.
        caps = {m.name: m.capability for m in app.extensions["pickspin"].matrix.models}
        for row in route["candidates"]:
            want = sum(probs[k] * caps[row["model"]].of(k) for k in COMPLEXITY_CLASSES)
            assert abs(row["R_hat"] - want) < 1e-3
    finally:
        srv.stop()
        app.extensions["pickspin"].telemetry.stop()


def test_router_scorer_down_never_fails_the_request(trio: dict[str, ServerThread]) -> None:
    srv, app = _router(trio, mode="semantic", scorer={"url": dead_url(), "timeout_s": 0.2})
    try:
        for _ in range(3):
            r = _chat(srv.url, NO_KEYWORD)
            assert r.status_code == 200, r.text
            assert r.headers["X-PickSpin-Classifier"] == "keyword-fallback"
        m = httpx.get(srv.url + "/metrics").text
        line = next(x for x in m.splitlines() if x.startswith("pickspin_classifier_fallbacks_total{"))
        assert 'reason="unavailable"' in line and float(line.split()[-1]) == 3.0
    finally:
        srv.stop()
        app.extensions["pickspin"].telemetry.stop()


def test_router_semantic_in_process(trio: dict[str, ServerThread], model_dir: Path) -> None:
    srv, app = _router(trio, mode="semantic", scorer={"model_dir": str(model_dir)})
    try:
        clf = app.extensions["pickspin"].classifier
        assert isinstance(clf, SemanticClassifier) and isinstance(clf.scorer, LocalScorer)
        assert clf.scorer.wait_ready(60)
        r = _chat(srv.url, NO_KEYWORD)
        assert r.status_code == 200 and r.headers["X-PickSpin-Classifier"] == "semantic"
        assert r.headers["X-PickSpin-Complexity"] in COMPLEXITY_CLASSES
    finally:
        srv.stop()
        app.extensions["pickspin"].telemetry.stop()
