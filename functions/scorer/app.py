"""The scorer's Flask app: ``POST /v1/classify`` -> class probabilities, with micro-batching.

Request: ``{"input": "a prompt"}`` or ``{"input": ["p1", "p2", ...]}``.
Response: ``{"object": "list", "model": <version>, "labels": [...], "data": [{"index", "class",
"confidence", "probabilities", "tokens", "truncated"}, ...]}``.

``/healthz`` is liveness (the process answers); ``/readyz`` is 200 only once the model is loaded and
warmed up; ``/metrics`` is Prometheus text. The model loads in a background thread so the port
opens at once and Knative/Kubernetes readiness gates traffic until it is ready.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from pickspin.errors import APIError, json_object_body, register_error_handlers

from .batcher import MicroBatcher
from .engine import ComplexityModel, ModelLoadError, Prediction

log = logging.getLogger("pickspin.scorer")

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0, 2.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass(frozen=True)
class ScorerSettings:
    model_dir: str | None = None
    max_batch: int = 16  # texts per model call
    max_wait_ms: float = 2.0  # how long the first request of a batch waits for company
    threads: int | None = None  # onnxruntime intra-op threads (None: 1 on <= 2 cores, else 2)
    max_items: int = 256  # texts per request
    max_chars: int = 100_000  # per text; longer -> 413 (texts are truncated to the model's max length)
    max_body_bytes: int = 8 * 1_048_576
    request_timeout_s: float = 30.0

    @classmethod
    def from_env(cls, **overrides: Any) -> ScorerSettings:
        env: dict[str, Any] = {}
        for name, conv in (("max_batch", int), ("max_wait_ms", float), ("threads", int), ("max_items", int),
                           ("max_chars", int)):
            v = os.environ.get(f"PICKSPIN_SCORER_{name.upper()}")
            if v:
                env[name] = conv(v)
        if os.environ.get("PICKSPIN_SCORER_MODEL_DIR"):
            env["model_dir"] = os.environ["PICKSPIN_SCORER_MODEL_DIR"]
        env.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**env)


class ScorerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter("pickspin_scorer_requests_total", "Classify requests by status.", ["status"],
                                registry=registry)
        self.texts = Counter("pickspin_scorer_texts_total", "Texts classified, by predicted class.", ["complexity"],
                             registry=registry)
        self.request_seconds = Histogram("pickspin_scorer_request_duration_seconds",
                                         "Classify request latency inside the scorer.", buckets=LATENCY_BUCKETS,
                                         registry=registry)
        self.batch_size = Histogram("pickspin_scorer_batch_size", "Texts per model call (micro-batches).",
                                    buckets=BATCH_BUCKETS, registry=registry)
        self.queue_seconds = Histogram("pickspin_scorer_queue_wait_seconds",
                                       "Time the oldest request of a batch waited for it to start.",
                                       buckets=LATENCY_BUCKETS, registry=registry)
        self.inference_seconds = Histogram("pickspin_scorer_inference_seconds", "Model time per batch.",
                                           buckets=LATENCY_BUCKETS, registry=registry)
        self.truncated = Counter("pickspin_scorer_truncated_total", "Texts cut to the model's max length.",
                                 registry=registry)
        self.ready = Gauge("pickspin_scorer_ready", "1 once the model is loaded and warmed up.", registry=registry)
        self.info = Gauge("pickspin_scorer_model_info", "The loaded model version.", ["version"], registry=registry)


@dataclass
class ScorerState:
    settings: ScorerSettings
    metrics: ScorerMetrics
    model: ComplexityModel | None = None
    batcher: MicroBatcher[Prediction] | None = None
    error: str | None = None
    loaded: threading.Event = field(default_factory=threading.Event)
    inflight: int = 0  # classify requests inside the app (the batcher's "anyone else coming?" hint)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self) -> None:
        with self._lock:
            self.inflight += 1

    def leave(self) -> None:
        with self._lock:
            self.inflight -= 1

    def load(self) -> None:
        t0 = time.perf_counter()
        try:
            m = ComplexityModel(self.settings.model_dir, threads=self.settings.threads)
            m.warmup()
        except ModelLoadError as e:
            self.error = str(e)
            log.error("model not loaded: %s", e)
            return
        self.model = m
        self.batcher = MicroBatcher(m.predict, max_batch=self.settings.max_batch,
                                    max_wait_s=self.settings.max_wait_ms / 1000.0, on_batch=self._on_batch,
                                    inflight=lambda: self.inflight)
        self.metrics.info.labels(m.version).set(1)
        self.metrics.ready.set(1)
        self.loaded.set()
        log.info("model %s loaded from %s in %.2fs (threads=%d, max_batch=%d, max_wait=%.1fms)", m.version,
                 m.model_dir, time.perf_counter() - t0, m.threads, self.settings.max_batch, self.settings.max_wait_ms)

    def _on_batch(self, n: int, waited: float, seconds: float) -> None:
        self.metrics.batch_size.observe(n)
        self.metrics.queue_seconds.observe(waited)
        self.metrics.inference_seconds.observe(seconds)


def _texts(body: Any, s: ScorerSettings) -> tuple[list[str], bool]:
    if not isinstance(body, dict):
        raise APIError(400, "request body must be a JSON object with an 'input' field", code="invalid_json")
    if "input" not in body:
        raise APIError(400, "'input' is required (a string or an array of strings)", param="input",
                       code="missing_field")
    inp = body["input"]
    single = isinstance(inp, str)
    items = [inp] if single else inp
    if not isinstance(items, list):
        raise APIError(400, "'input' must be a string or an array of strings", param="input")
    if not items:
        raise APIError(400, "'input' must not be an empty array", param="input", code="empty_input")
    if len(items) > s.max_items:
        raise APIError(413, f"'input' has {len(items)} texts; at most {s.max_items} per request", param="input",
                       code="too_many_inputs")
    for i, t in enumerate(items):
        p = "input" if single else f"input[{i}]"
        if not isinstance(t, str):
            raise APIError(400, f"{p} must be a string", param=p)
        if not t.strip():
            raise APIError(400, f"{p} is empty; nothing to classify", param=p, code="empty_input")
        if len(t) > s.max_chars:
            raise APIError(413, f"{p} has {len(t)} characters; at most {s.max_chars}", param=p,
                           code="input_too_large")
    return items, single


def create_app(settings: ScorerSettings | None = None, *, load_async: bool = True) -> Flask:
    s = settings or ScorerSettings.from_env()
    app = Flask("pickspin.scorer")
    app.config["MAX_CONTENT_LENGTH"] = s.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    st = ScorerState(s, ScorerMetrics(CollectorRegistry(auto_describe=True)))
    app.extensions["pickspin_scorer"] = st
    register_error_handlers(app)
    if load_async:
        threading.Thread(target=st.load, name="scorer-load", daemon=True).start()
    else:
        st.load()

    @app.post("/v1/classify")
    def classify() -> Response:
        t0 = time.perf_counter()
        status = "200"
        st.enter()
        try:
            body = json_object_body('a JSON object {"input": ...}')
            texts, single = _texts(body, s)
            if st.batcher is None or st.model is None:
                raise APIError(503, "model is not loaded yet" if st.error is None else f"model unavailable: {st.error}",
                               code="not_ready", headers={"Retry-After": "1"})
            try:
                preds = st.batcher(texts, timeout=s.request_timeout_s)
            except TimeoutError:
                raise APIError(504, "classification timed out", code="timeout") from None
            for p in preds:
                st.metrics.texts.labels(p.label).inc()
                if p.truncated:
                    st.metrics.truncated.inc()
            return jsonify({
                "object": "list",
                "model": st.model.version,
                "labels": list(st.model.labels),
                "max_length": st.model.max_length,
                "single": single,
                "data": [{"index": i, **p.as_dict()} for i, p in enumerate(preds)],
            })
        except APIError as e:
            status = str(e.status)
            raise
        except Exception:
            status = "500"
            raise
        finally:
            st.leave()
            st.metrics.requests.labels(status).inc()
            st.metrics.request_seconds.observe(time.perf_counter() - t0)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        if st.model is None:
            resp = jsonify({"status": "loading" if st.error is None else "error", "error": st.error})
            resp.status_code = 503
            return resp
        return jsonify({"status": "ready", "model": st.model.version, "labels": list(st.model.labels),
                        "max_length": st.model.max_length, "threads": st.model.threads,
                        "max_batch": s.max_batch, "max_wait_ms": s.max_wait_ms})

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(st.metrics.registry), mimetype="text/plain; version=0.0.4")

    return app


def model_dir_of(app: Flask) -> Path | None:
    st: ScorerState = app.extensions["pickspin_scorer"]
    return st.model.model_dir if st.model else None
