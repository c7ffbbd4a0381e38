"""Streaming passes through chunk by chunk: the first chunk arrives long before the last."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from functions.router.app import create_app
from tests.helpers import ServerThread, sim_server, trio_matrix

TOKENS = 12
TPOT = 0.08


@pytest.fixture
def stream_router() -> Iterator[ServerThread]:
    with sim_server("small-served", ttft_s=0.02, tpot_s=TPOT) as s:
        app = create_app(trio_matrix({"small": [s.url]}))
        srv = ServerThread(app)
        yield srv
        srv.stop()
        app.extensions["pickspin"].telemetry.stop()


def _timed_events(url: str, body: dict[str, object]) -> tuple[list[tuple[float, bytes]], httpx.Headers]:
    out: list[tuple[float, bytes]] = []
    t0 = time.perf_counter()
    with httpx.stream("POST", url, json=body, timeout=30) as r:
        assert r.status_code == 200
        headers = r.headers
        for line in r.iter_lines():
            if line.startswith("data: "):
                out.append((time.perf_counter() - t0, line[6:].encode()))
    return out, headers


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_stream_arrives_incrementally(stream_router: ServerThread, path: str) -> None:
    body: dict[str, object] = {"stream": True, "max_tokens": TOKENS}
    body.update({"messages": [{"role": "user", "content": "list a"}]} if "chat" in path else {"prompt": "list a"})
    events, headers = _timed_events(stream_router.url + path, body)
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["X-PickSpin-Model"] == "small-model"
    assert events[-1][1] == b"[DONE]"
    data = [json.loads(e) for _, e in events[:-1]]
    assert len(data) == TOKENS + 1  # one chunk per token plus the final chunk
    first, last = events[0][0], events[-1][0]
    # the generation takes (TOKENS - 1) * TPOT ~ 0.9 s; a buffering proxy would deliver all at the end
    assert last - first > 0.5 * (TOKENS - 1) * TPOT
    assert first < 0.5 * last
    # and chunks arrive spread out, not in one burst
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(events)]
    assert sum(1 for g in gaps if g > TPOT / 3) >= TOKENS // 2


def test_stream_metrics_recorded_after_the_stream(stream_router: ServerThread) -> None:
    _timed_events(stream_router.url + "/v1/chat/completions",
                  {"stream": True, "max_tokens": 3, "messages": [{"role": "user", "content": "list"}]})
    text = httpx.get(stream_router.url + "/metrics").text
    assert 'pickspin_ttft_seconds_count{backend="small-b0",model="small-model"} 1.0' in text
    assert 'pickspin_inflight_requests{model="small-model"} 0.0' in text
