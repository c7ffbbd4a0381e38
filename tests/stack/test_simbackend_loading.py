"""The simulated backend loads like a real engine: not ready for load_s, and says so."""

from __future__ import annotations

import httpx

from stack.simbackend import local_load_seconds
from tests.helpers import sim_server, wait_until

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def test_loading_then_ready() -> None:
    with sim_server("big", load_s=1.0, ttft_s=0.0, tpot_s=0.0) as s:
        h = httpx.get(s.url + "/health")
        assert h.status_code == 503 and h.json()["status"] == "loading" and 0 < h.json()["eta_s"] <= 1.0
        r = httpx.post(s.url + "/v1/chat/completions", json=CHAT)
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_loading"
        assert int(r.headers["Retry-After"]) >= 1
        assert httpx.get(s.url + "/metrics").status_code == 200  # scrapeable while loading
        assert wait_until(lambda: httpx.get(s.url + "/health").status_code == 200, 10)
        assert httpx.post(s.url + "/v1/chat/completions", json=CHAT).status_code == 200


def test_default_load_time_grows_with_model_size() -> None:
    assert local_load_seconds(70) == 20.0
    assert 0 < local_load_seconds(8) < local_load_seconds(46.7) < local_load_seconds(70)
