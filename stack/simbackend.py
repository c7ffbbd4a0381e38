"""A SIMULATED vLLM server, standing in for model tiers too large for this machine.

OpenAI-compatible (chat and text completions, streaming; embeddings and the Responses API, as vLLM
serves them), with vLLM's behaviour where it matters
for routing and scaling: a time to first token and a time per output token that grow with model
size and batch, a concurrency limit (``--max-num-seqs``) with a FIFO waiting queue, and vLLM's
metric names (``vllm:num_requests_running``, ``vllm:num_requests_waiting``,
``vllm:e2e_request_latency_seconds``, ``vllm:time_to_first_token_seconds``).

Like a real engine it is not ready at once: for ``load_s`` seconds after start (weights loading; by
default from model size, 70B about 20 s locally, see ``local_load_seconds``) ``/health`` answers 503
``{"status": "loading", "eta_s": ...}`` and requests get 503 with ``Retry-After``.

It never pretends to be a real model: every answer starts with ``[simulated <model>]``, /v1/models
marks it ``"simulated": true`` and responses carry ``X-PickSpin-Simulated: true``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, jsonify, request
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from pickspin.errors import APIError, register_error_handlers

_WORDS = ["the", "model", "would", "answer", "here", "with", "tokens", "that", "carry", "no", "meaning", "because", "this", "backend", "is", "a", "simulation", "used", "to", "measure", "routing", "and", "scaling"]


@dataclass(frozen=True)
class SimSpec:
    model: str
    params_b: float = 8.0
    ttft_s: float | None = None  # None: from model size
    tpot_s: float | None = None  # None: from model size
    max_num_seqs: int = 16
    default_max_tokens: int = 32
    max_max_tokens: int = 512
    time_scale: float = 1.0  # multiply every delay (0 = as fast as possible)
    fail_rate: float = 0.0  # share of requests answered with 500 (fault injection)
    seed: int = 0
    load_s: float = 0.0  # emulated model load after start (not scaled by time_scale)

    def ttft(self, prompt_tokens: int) -> float:
        # Prefill: a fixed overhead plus work proportional to size x prompt length.
        base = self.ttft_s if self.ttft_s is not None else 0.03 + 0.0015 * self.params_b
        return (base + 2e-6 * self.params_b * prompt_tokens) * self.time_scale

    def tpot(self, running: int) -> float:
        # Decode: memory-bound, ~linear in size on one GPU-equivalent; batching adds a little per sequence.
        base = self.tpot_s if self.tpot_s is not None else 0.004 + 0.0006 * self.params_b
        return base * (1 + 0.03 * max(0, running - 1)) * self.time_scale


# Local stand-in for weight loading: about 20 s for a 70B model, scaled with size (a real 70B engine
# takes 40-300 s to load; the trace simulator uses the real figures, config/sim.yaml).
LOCAL_LOAD_S_PER_B = 20.0 / 70.0


def local_load_seconds(params_b: float) -> float:
    return round(LOCAL_LOAD_S_PER_B * params_b, 3)


class _Engine:
    """Concurrency limit with a FIFO queue, and counters vLLM exports."""

    def __init__(self, spec: SimSpec, registry: CollectorRegistry) -> None:
        self.spec = spec
        self._cv = threading.Condition()
        self.running = 0
        self.waiting = 0
        self._rng = random.Random(spec.seed)
        lbl = ["model_name"]
        self.g_running = Gauge("vllm:num_requests_running", "Requests running (simulated).", lbl, registry=registry)
        self.g_waiting = Gauge("vllm:num_requests_waiting", "Requests waiting (simulated).", lbl, registry=registry)
        buckets = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80)
        self.h_e2e = Histogram("vllm:e2e_request_latency_seconds", "E2E latency (simulated).", lbl,
                               buckets=buckets, registry=registry)
        self.h_ttft = Histogram("vllm:time_to_first_token_seconds", "TTFT (simulated).", lbl,
                                buckets=buckets, registry=registry)
        for g in (self.g_running, self.g_waiting):
            g.labels(spec.model).set(0)

    def acquire(self) -> None:
        with self._cv:
            self.waiting += 1
            self.g_waiting.labels(self.spec.model).set(self.waiting)
            while self.running >= self.spec.max_num_seqs:
                self._cv.wait()
            self.waiting -= 1
            self.running += 1
            self.g_waiting.labels(self.spec.model).set(self.waiting)
            self.g_running.labels(self.spec.model).set(self.running)

    def release(self) -> None:
        with self._cv:
            self.running -= 1
            self.g_running.labels(self.spec.model).set(self.running)
            self._cv.notify()

    def should_fail(self) -> bool:
        with self._cv:
            return self.spec.fail_rate > 0 and self._rng.random() < self.spec.fail_rate


def _prompt_tokens(body: dict[str, Any]) -> int:
    if "messages" in body:
        text = " ".join(str(m.get("content", "")) for m in body.get("messages") or [] if isinstance(m, dict))
    else:
        text = str(body.get("prompt", ""))
    return max(1, len(text) // 4)


EMBED_DIM = 16


def _embedding(text: str, dim: int) -> list[float]:
    """A deterministic unit vector for ``text`` (no meaning: this backend is a simulation)."""
    raw = hashlib.sha256(text.encode()).digest() * (dim // 32 + 1)
    vec = [b / 255.0 - 0.5 for b in raw[:dim]]
    norm = sum(v * v for v in vec) ** 0.5 or 1.0
    return [v / norm for v in vec]


def create_sim_app(spec: SimSpec) -> Flask:
    app = Flask("stack.simbackend")
    register_error_handlers(app)
    registry = CollectorRegistry()
    eng = _Engine(spec, registry)
    app.extensions["pickspin_sim"] = eng
    ready_at = time.monotonic() + spec.load_s

    def loading_eta() -> float:
        """Seconds until the emulated load finishes (0 once loaded)."""
        return max(0.0, ready_at - time.monotonic())

    @app.before_request
    def _loading() -> Response | None:
        eta = loading_eta()
        if eta <= 0 or request.path in ("/health", "/metrics"):
            return None
        raise APIError(503, f"model {spec.model} is loading, ready in about {eta:.0f}s",
                       code="model_loading", headers={"Retry-After": str(max(1, round(eta)))})

    def sleep(s: float) -> None:
        if s > 0:
            time.sleep(s)

    def generate(body: dict[str, Any], chat: bool) -> Response:
        if not isinstance(body, dict):
            raise APIError(400, "request body must be a JSON object")
        if chat and not isinstance(body.get("messages"), list):
            raise APIError(400, "'messages' is required", param="messages")
        if not chat and "prompt" not in body:
            raise APIError(400, "'prompt' is required", param="prompt")
        if body.get("model") not in (None, spec.model):
            raise APIError(404, f"The model `{body.get('model')}` does not exist.", param="model",
                           code="model_not_found")
        n = body.get("max_tokens") or spec.default_max_tokens
        if not isinstance(n, int) or n < 1:
            raise APIError(400, "max_tokens must be a positive integer", param="max_tokens")
        n = min(n, spec.max_max_tokens)
        if eng.should_fail():
            raise APIError(500, "simulated backend failure (fault injection)", code="simulated_failure")
        ptoks = _prompt_tokens(body)
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        obj = "chat.completion" if chat else "text_completion"
        words = [f"[simulated {spec.model}]"] + [_WORDS[i % len(_WORDS)] for i in range(n - 1)]
        t0 = time.perf_counter()

        if not body.get("stream"):
            eng.acquire()
            try:
                sleep(spec.ttft(ptoks))
                eng.h_ttft.labels(spec.model).observe(time.perf_counter() - t0)
                for _ in range(n - 1):
                    sleep(spec.tpot(eng.running))
            finally:
                eng.release()
            eng.h_e2e.labels(spec.model).observe(time.perf_counter() - t0)
            text = " ".join(words)
            choice: dict[str, Any] = (
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
                if chat else {"index": 0, "text": text, "finish_reason": "length", "logprobs": None})
            return jsonify({"id": rid, "object": obj, "created": created, "model": spec.model,
                            "choices": [choice], "simulated": True,
                            "usage": {"prompt_tokens": ptoks, "completion_tokens": n,
                                      "total_tokens": ptoks + n}})

        def events() -> Iterator[bytes]:
            eng.acquire()
            try:
                sleep(spec.ttft(ptoks))
                eng.h_ttft.labels(spec.model).observe(time.perf_counter() - t0)
                for i, w in enumerate(words):
                    if i:
                        sleep(spec.tpot(eng.running))
                    piece = w if i == 0 else " " + w
                    delta: dict[str, Any] = (
                        {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                        if chat else {"index": 0, "text": piece, "finish_reason": None})
                    chunk = {"id": rid, "object": obj + ".chunk" if chat else obj, "created": created,
                             "model": spec.model, "choices": [delta]}
                    yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
                final: dict[str, Any] = (
                    {"index": 0, "delta": {}, "finish_reason": "length"}
                    if chat else {"index": 0, "text": "", "finish_reason": "length"})
                yield b"data: " + json.dumps({"id": rid, "object": obj + ".chunk" if chat else obj,
                                              "created": created, "model": spec.model,
                                              "choices": [final]}).encode() + b"\n\n"
                yield b"data: [DONE]\n\n"
            finally:
                eng.release()
                eng.h_e2e.labels(spec.model).observe(time.perf_counter() - t0)

        return Response(events(), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-PickSpin-Simulated": "true"})

    def body() -> dict[str, Any]:
        try:
            b = json.loads(request.get_data() or b"null")
        except json.JSONDecodeError as e:
            raise APIError(400, f"invalid JSON: {e}") from None
        return b

    @app.post("/v1/chat/completions")
    def chat() -> Response:
        return generate(body(), chat=True)

    @app.post("/v1/completions")
    def completions() -> Response:
        return generate(body(), chat=False)

    @app.post("/v1/embeddings")
    def embeddings() -> Response:
        b = body()
        if not isinstance(b, dict) or "input" not in b:
            raise APIError(400, "'input' is required", param="input")
        inputs = b["input"] if isinstance(b["input"], list) and b["input"] and not isinstance(b["input"][0], int) \
            else [b["input"]]
        dim = b.get("dimensions") or EMBED_DIM
        data = []
        for i, x in enumerate(inputs):
            vec = _embedding(json.dumps(x), dim)
            emb: Any = vec
            if b.get("encoding_format") == "base64":
                emb = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        toks = sum(max(1, len(json.dumps(x)) // 4) for x in inputs)
        return jsonify({"object": "list", "data": data, "model": spec.model, "simulated": True,
                        "usage": {"prompt_tokens": toks, "total_tokens": toks}})

    @app.post("/v1/responses")
    def responses() -> Response:
        b = body()
        if not isinstance(b, dict) or "input" not in b:
            raise APIError(400, "'input' is required", param="input")
        n = min(int(b.get("max_output_tokens") or spec.default_max_tokens), spec.max_max_tokens)
        text = " ".join([f"[simulated {spec.model}]"] + [_WORDS[i % len(_WORDS)] for i in range(n - 1)])
        rid, mid = "resp_" + uuid.uuid4().hex[:24], "msg_" + uuid.uuid4().hex[:24]
        part = {"type": "output_text", "text": text, "annotations": []}
        done = {"id": rid, "object": "response", "created_at": int(time.time()), "model": spec.model,
                "status": "completed", "simulated": True, "parallel_tool_calls": True, "tool_choice": "auto",
                "tools": [], "output": [{"type": "message", "id": mid, "role": "assistant", "status": "completed",
                                         "content": [part]}],
                "usage": {"input_tokens": 1, "output_tokens": n, "total_tokens": n + 1}}
        if not b.get("stream"):
            return jsonify(done)

        def events() -> Iterator[bytes]:
            seq = iter(range(1 << 30))

            def ev(kind: str, **fields: Any) -> bytes:
                return (f"event: {kind}\ndata: ".encode()
                        + json.dumps({"type": kind, "sequence_number": next(seq), **fields}).encode() + b"\n\n")

            yield ev("response.created", response={**done, "status": "in_progress", "output": []})
            for w in text.split(" "):
                yield ev("response.output_text.delta", item_id=mid, output_index=0, content_index=0, delta=w + " ")
            yield ev("response.output_text.done", item_id=mid, output_index=0, content_index=0, text=text)
            yield ev("response.completed", response=done)

        return Response(events(), mimetype="text/event-stream")

    @app.get("/v1/models")
    def models() -> Response:
        return jsonify({"object": "list", "data": [{"id": spec.model, "object": "model", "owned_by": "pickspin-sim",
                                                    "simulated": True, "params_b": spec.params_b}]})

    @app.get("/health")
    def health() -> Response:
        eta = loading_eta()
        if eta > 0:
            resp = jsonify({"status": "loading", "eta_s": round(eta, 2)})
            resp.status_code = 503
            return resp
        return jsonify({"status": "ok"})

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4")

    @app.after_request
    def _mark(resp: Response) -> Response:
        resp.headers["X-PickSpin-Simulated"] = "true"
        return resp

    return app


def add_parser(sub: Any) -> None:
    p = sub.add_parser("sim-backend", help="run a SIMULATED vLLM-compatible backend (labelled as such)")
    p.add_argument("--model", required=True, help="served model name")
    p.add_argument("--params-b", type=float, default=8.0, help="model size in billions (sets timing)")
    p.add_argument("--ttft-ms", type=float, default=None, help="override time to first token")
    p.add_argument("--tpot-ms", type=float, default=None, help="override time per output token")
    p.add_argument("--max-num-seqs", type=int, default=16, help="concurrency limit (rest queue)")
    p.add_argument("--default-max-tokens", type=int, default=32)
    p.add_argument("--time-scale", type=float, default=1.0, help="multiply all delays (0 = no delay)")
    p.add_argument("--fail-rate", type=float, default=0.0, help="share of requests failing with 500")
    p.add_argument("--load-seconds", type=float, default=None,
                   help="emulated model load time before ready (default: from --params-b, 70B about 20 s)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--threads", type=int, default=64)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pickspin.serving import serve

    spec = SimSpec(model=args.model, params_b=args.params_b,
                   ttft_s=None if args.ttft_ms is None else args.ttft_ms / 1000,
                   tpot_s=None if args.tpot_ms is None else args.tpot_ms / 1000,
                   max_num_seqs=args.max_num_seqs, default_max_tokens=args.default_max_tokens,
                   time_scale=args.time_scale, fail_rate=args.fail_rate,
                   load_s=local_load_seconds(args.params_b) if args.load_seconds is None else args.load_seconds)
    print(f"SIMULATED backend {spec.model} ({spec.params_b}B) on http://{args.host}:{args.port}, "
          f"loading for {spec.load_s:.1f}s", flush=True)
    serve(lambda: create_sim_app(spec), host=args.host, port=args.port, workers=1, worker_class="gthread",
          threads=args.threads, name=f"pickspin-sim-{spec.model}")
    return 0
