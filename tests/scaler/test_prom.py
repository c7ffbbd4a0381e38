"""The Prometheus client and the poller's bookkeeping (last used, staleness) against a scripted API."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pickspin_scaler.metadata import MetadataError, parse_metadata
from pickspin_scaler.prom import Poller, PollerConfig, PromClient, PromError

from .conftest import ThreadServer


class Scripted:
    """/api/v1/query answers with whatever body/status the test sets."""

    def __init__(self) -> None:
        self.status = "200 OK"
        self.auth: str | None = None
        self.body: Any = {"status": "success", "data": {"resultType": "vector", "result": []}}
        self.srv = ThreadServer(self._app)

    def _app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.auth = environ.get("HTTP_AUTHORIZATION")
        data = self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()
        start_response(self.status, [("Content-Type", "application/json")])
        return [data]


@pytest.fixture(scope="module")
def scripted() -> Any:
    s = Scripted()
    yield s
    s.srv.close()


def _vec(*values: str) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": {"i": str(i)}, "value": [1.0, v]}
                                                     for i, v in enumerate(values)]}}


@pytest.mark.parametrize(("body", "want"), [
    (_vec("2.5"), 2.5),
    (_vec("1", "2", "3.5"), 6.5),  # several series (an override without sum()): summed
    (_vec(), None),  # no series
    ({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "4"]}}, 4.0),
])
def test_query_reduces_to_one_number(scripted: Scripted, body: Any, want: float | None) -> None:
    scripted.status, scripted.body = "200 OK", body
    assert PromClient(1.0).query(scripted.srv.url, "x") == want


def test_nan_stays_nan_for_the_policy(scripted: Scripted) -> None:
    scripted.status, scripted.body = "200 OK", _vec("NaN")
    v = PromClient(1.0).query(scripted.srv.url, "x")
    assert v is not None and math.isnan(v)


@pytest.mark.parametrize(("status", "body", "match"), [
    ("503 Service Unavailable", b"down", "HTTP 503"),
    ("200 OK", b"<html>", "not JSON"),
    ("200 OK", {"status": "error", "error": "parse error at char 3"}, "parse error"),
    ("200 OK", {"status": "success", "data": {"resultType": "matrix", "result": []}}, "range vector"),
    ("200 OK", {"status": "success", "data": {"resultType": "vector", "result": [{"value": 7}]}}, "shape"),
])
def test_query_failures_are_prom_errors(scripted: Scripted, status: str, body: Any, match: str) -> None:
    scripted.status, scripted.body = status, body
    with pytest.raises(PromError, match=match):
        PromClient(1.0).query(scripted.srv.url, "x")


def test_a_broken_answer_for_one_model_does_not_stop_the_others(scripted: Scripted) -> None:
    class Picky(PromClient):
        def query(self, address: str, promql: str) -> float | None:
            if "bad" in promql:
                raise ValueError("boom")
            return 1.0

    p = Poller(PollerConfig(default_address=scripted.srv.url), client=Picky())
    good, bad = p.subscribe(parse_metadata({"model": "good"})), p.subscribe(parse_metadata({"model": "bad"}))
    p.poll_once()
    assert p.view(good).fresh and p.view(good).sample is not None
    v = p.view(bad)
    assert v.attempted and not v.fresh and v.error is not None and "boom" in v.error
    p.stop()


def test_last_used_tracks_counter_moves_and_demand() -> None:
    now = [100.0]
    values: dict[str, float | None] = {"rate": 0.0, "latency": math.nan, "demand": 0.0, "recent": 0.0, "total": 5.0}

    class Table(PromClient):
        def query(self, address: str, promql: str) -> float | None:
            return values[next(k for k, q in md.queries().items() if q == promql)]

    md = parse_metadata({"model": "m"})
    p = Poller(PollerConfig(max_staleness_s=10), client=Table(), clock=lambda: now[0])
    key = p.subscribe(md)
    p.poll_once()
    s = p.view(key).sample
    assert s is not None and s.last_used is None  # an old counter with no recent increase: not used
    now[0] = 110.0
    values["total"] = 6.0  # one request between two polls, too short for demand to show
    p.poll_once()
    s = p.view(key).sample
    assert s is not None and s.last_used == 110.0
    now[0] = 120.0
    values["demand"] = 2.0
    p.poll_once()
    s = p.view(key).sample
    assert s is not None and s.last_used == 120.0
    now[0] = 131.0  # no poll since 120: 11 s old > max staleness 10 s
    v = p.view(key)
    assert not v.fresh and v.age == pytest.approx(11.0)
    p.stop()


def test_first_poll_of_a_young_series_counts_as_used() -> None:
    class Young(PromClient):
        def query(self, address: str, promql: str) -> float | None:
            return None if "increase" in promql else 1.0  # total 1, but increase() has < 2 samples

    p = Poller(PollerConfig(), client=Young(), clock=lambda: 50.0)
    key = p.subscribe(parse_metadata({"model": "m"}))
    p.poll_once()
    s = p.view(key).sample
    assert s is not None and s.last_used == 50.0
    p.stop()


KEYS = ["model", "tier", "concurrency", "warmPool", "idleSeconds", "windowSeconds", "prometheusAddress",
        "queryFlavor", "servedModelName", "rateQuery", "scalerAddress", "other"]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), st.text(max_size=30)))
def test_any_metadata_parses_or_names_a_key(raw: dict[str, str]) -> None:
    """Whatever KEDA sends: a typed model, or MetadataError naming a known key (never another exception)."""
    try:
        md = parse_metadata(raw)
    except MetadataError as e:
        assert e.key in KEYS or e.key == "<root>"
        return
    assert md.model and md.concurrency >= 1 and md.floor() >= 0
    md.queries()
    md.metric_name()


def test_bearer_token_is_sent_and_reread_when_rotated(scripted: Scripted, tmp_path: Any) -> None:
    import os

    tok = tmp_path / "token"
    tok.write_text("first\n")
    scripted.status, scripted.body = "200 OK", _vec("1")
    c = PromClient(1.0, bearer_token_file=str(tok))
    c.query(scripted.srv.url, "x")
    assert scripted.auth == "Bearer first"
    tok.write_text("second")
    os.utime(tok, (1, 1))  # a new mtime, as a rotation gives
    c.query(scripted.srv.url, "x")
    assert scripted.auth == "Bearer second"
    with pytest.raises(PromError, match="bearer token file"):
        PromClient(1.0, bearer_token_file=str(tmp_path / "missing")).query(scripted.srv.url, "x")
