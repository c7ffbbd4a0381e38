"""Property test: whatever the body, the router answers without a 500, and errors have OpenAI's shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.router.app import create_app
from tests.helpers import sim_server, trio_matrix

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=False),
                    st.text(max_size=30))
content = st.one_of(scalars, st.text(max_size=200),
                    st.lists(st.one_of(scalars, st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]),
                                                                      "text": scalars})), max_size=3))
message = st.one_of(scalars, st.dictionaries(st.sampled_from(["role", "content", "name"]),
                                             st.one_of(st.sampled_from(["user", "system", "assistant", ""]), content),
                                             max_size=3))
body = st.dictionaries(
    st.sampled_from(["model", "messages", "prompt", "stream", "max_tokens", "profile", "temperature"]),
    st.one_of(scalars, st.lists(message, max_size=4), st.sampled_from(["auto", "small-model", "nope"]),
              st.lists(st.text(max_size=20), max_size=3)),
    max_size=6,
)


@pytest.fixture(scope="module")
def app() -> Iterator[Flask]:
    with sim_server("small-served", ttft_s=0.0, tpot_s=0.0, max_max_tokens=4) as s:
        a = create_app(trio_matrix({"small": [s.url]}), start_prober=False)
        yield a


def _check(resp: Any) -> None:
    assert resp.status_code != 500, resp.get_data(as_text=True)
    if resp.status_code >= 400:
        err = resp.get_json()["error"]
        assert set(err) == {"message", "type", "param", "code"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(b=body, path=st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/route"]))
def test_json_bodies_never_500(app: Flask, b: dict[str, Any], path: str) -> None:
    _check(app.test_client().post(path, data=json.dumps(b), content_type="application/json"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_raw_bytes_never_500(app: Flask, raw: bytes) -> None:
    _check(app.test_client().post("/v1/chat/completions", data=raw, content_type="application/json"))
