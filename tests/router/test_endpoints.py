"""POST /v1/embeddings and /v1/responses: routed to the models that declare them, pass-through, a clear
400 otherwise; checked with the OpenAI Python SDK against real servers on 127.0.0.1."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, Response, jsonify, request

from functions.router.app import create_app
from pickspin.config import parse_config
from tests.helpers import ServerThread

openai = pytest.importorskip("openai")

DIM = 8


def fake_openai_backend(name: str) -> Flask:
    """An OpenAI-compatible backend serving embeddings and responses (deterministic answers)."""
    app = Flask(name)

    @app.post("/v1/embeddings")
    def _emb() -> Response:
        body = request.get_json()
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, x in enumerate(inputs):
            vec = [float((len(str(x)) + i + k) % 7) for k in range(DIM)]
            emb: Any = vec
            if body.get("encoding_format") == "base64":
                emb = base64.b64encode(struct.pack(f"<{DIM}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return jsonify({"object": "list", "data": data, "model": body["model"],
                        "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}})

    @app.post("/v1/responses")
    def _resp() -> Response:
        body = request.get_json()
        text = f"[{name}] answered {body['model']}"
        return jsonify({"id": "resp_1", "object": "response", "created_at": 0, "model": body["model"],
                        "status": "completed", "output": [
                            {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                             "content": [{"type": "output_text", "text": text, "annotations": []}]}],
                        "parallel_tool_calls": True, "tool_choice": "auto", "tools": []})

    @app.post("/v1/chat/completions")
    def _chat() -> Response:
        return jsonify({"object": "chat.completion", "model": request.get_json()["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]})

    @app.get("/health")
    def _health() -> Response:
        return Response("ok")

    return app


def _model(name: str, url: str, endpoints: list[str] | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "tier": "small", "capability": {"low": 0.9, "medium": 0.6, "high": 0.3},
                         "cost": {"per_1k_tokens": 0.01},
                         "backends": [{"name": f"{name}-b0", "kind": "vllm", "url": url,
                                       "served_model_name": f"{name}-served"}]}
    if endpoints is not None:
        m["endpoints"] = endpoints
    return m


@pytest.fixture(scope="module")
def router() -> Iterator[str]:
    be = ServerThread(fake_openai_backend("be"))
    cfg = {"models": [_model("chat-model", be.url),
                      _model("embed-model", be.url, ["embeddings"]),
                      _model("resp-model", be.url, ["chat", "responses"])],
           "router": {"probe_interval_s": 0.5}}
    app = create_app(parse_config(cfg))
    srv = ServerThread(app)
    yield srv.url
    srv.stop()
    app.extensions["pickspin"].telemetry.stop()
    be.stop()


@pytest.fixture
def client(router: str) -> Any:
    return openai.OpenAI(base_url=router + "/v1", api_key="unused", max_retries=0, timeout=10)


def test_sdk_embeddings(client: Any) -> None:
    r = client.embeddings.create(model="embed-model", input=["alpha", "beta gamma"])
    assert [d.index for d in r.data] == [0, 1] and all(len(d.embedding) == DIM for d in r.data)
    assert r.model == "embed-model-served"  # the backend saw its served name
    auto = client.embeddings.create(model="auto", input="x", encoding_format="float")
    assert auto.model == "embed-model-served" and len(auto.data[0].embedding) == DIM


def test_sdk_responses(client: Any) -> None:
    r = client.responses.create(model="auto", input="list three colours")
    assert r.output_text == "[be] answered resp-model-served"  # only resp-model serves /v1/responses
    r2 = client.responses.create(model="resp-model", input=[{"role": "user", "content": "define x"}])
    assert "resp-model-served" in r2.output_text


def test_sdk_unsupported_endpoint_is_a_clear_400(client: Any) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="chat-model", input="hi")
    assert e.value.code == "unsupported_endpoint" and "does not support /v1/responses" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="chat-model", input="hi")
    assert e.value.code == "unsupported_endpoint" and "/v1/embeddings" in e.value.message


def test_chat_never_routes_to_an_embedding_model(router: str) -> None:
    table = httpx.post(router + "/v1/route", json={"messages": [{"role": "user", "content": "list"}]}).json()
    assert {c["model"] for c in table["candidates"]} == {"chat-model", "resp-model"}
    models = {d["id"]: d for d in httpx.get(router + "/v1/models").json()["data"]}
    assert models["embed-model"]["pickspin"]["endpoints"] == ["embeddings"]


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "embed-model"}, "input"),
    ({"model": "embed-model", "input": ""}, "input"),
    ({"model": "embed-model", "input": []}, "input"),
    ({"model": "embed-model", "input": [1, "a"]}, "input"),
    ({"model": "embed-model", "input": "a", "encoding_format": "hex"}, "encoding_format"),
    ({"model": "embed-model", "input": "a", "dimensions": 0}, "dimensions"),
])
def test_embeddings_validation(router: str, body: dict[str, Any], param: str) -> None:
    r = httpx.post(router + "/v1/embeddings", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "auto"}, "input"),
    ({"model": "auto", "input": []}, "input"),
    ({"model": "auto", "input": [3]}, "input[0]"),
    ({"model": "auto", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
])
def test_responses_validation(router: str, body: dict[str, Any], param: str) -> None:
    r = httpx.post(router + "/v1/responses", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param


# -- the same SDK calls against the local stack's simulated backend -------------------------------------

@pytest.fixture(scope="module")
def sim_router() -> Iterator[str]:
    from tests.helpers import sim_server

    with sim_server("sim-served", ttft_s=0.0, tpot_s=0.0) as s:
        m = _model("sim-model", s.url, ["chat", "completions", "embeddings", "responses"])
        m["backends"][0]["served_model_name"] = "sim-served"
        m["backends"][0]["simulated"] = True
        app = create_app(parse_config({"models": [m], "router": {"probe_interval_s": 0.5}}))
        srv = ServerThread(app)
        yield srv.url
        srv.stop()
        app.extensions["pickspin"].telemetry.stop()


def test_sdk_against_the_simulated_backend(sim_router: str) -> None:
    client = openai.OpenAI(base_url=sim_router + "/v1", api_key="unused", max_retries=0, timeout=10)
    e = client.embeddings.create(model="auto", input=["a", "b", "c"])  # the SDK asks for base64
    assert len(e.data) == 3 and len(e.data[0].embedding) == 16 and e.data[0].embedding != e.data[1].embedding
    r = client.responses.create(model="sim-model", input="list three colours", max_output_tokens=5)
    assert r.output_text.startswith("[simulated sim-served]")
    events = list(client.responses.create(model="auto", input="define x", stream=True, max_output_tokens=3))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    deltas = "".join(ev.delta for ev in events if ev.type == "response.output_text.delta")
    assert deltas.startswith("[simulated sim-served]")
    chat = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert chat.choices[0].message.content.startswith("[simulated")


def test_route_dry_run_takes_a_responses_body(router: str) -> None:
    r = httpx.post(router + "/v1/route", json={"input": "give a rigorous proof that 2 is prime"})
    assert r.status_code == 200
    assert [c["model"] for c in r.json()["candidates"]] == ["resp-model"]  # only it serves /v1/responses
    assert r.json()["complexity"]["class"] == "high"
