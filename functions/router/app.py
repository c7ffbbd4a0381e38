"""The router function: Flask app factory, state built once at start.

Request path: parse and validate -> classify the prompt -> rank candidates on the telemetry
snapshot (pure) -> forward to the best, failing over before the first byte.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from prometheus_client import CollectorRegistry

from pickspin.config import Model, Profile, ServiceMatrix, load_config
from pickspin.errors import APIError, json_object_body, register_error_handlers

from .classifiers import Classifier, Estimate, build_classifier, classifier_ready
from .metrics import RouterMetrics
from .proxy import Forwarder, Target
from .scoring import Candidate, Scored, candidates_of, rank
from .telemetry import CIRCUIT_STATES, BackendStats, Clock, Telemetry

log = logging.getLogger("pickspin.router")
OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")
ROUTER_FIELDS = ("profile",)  # body fields the router consumes and does not forward


@dataclass
class RouterState:
    matrix: ServiceMatrix
    classifier: Classifier
    telemetry: Telemetry
    metrics: RouterMetrics
    forwarder: Forwarder
    candidates: list[Candidate]
    by_model: dict[str, list[Candidate]]
    targets: dict[tuple[str, str], Target]
    api_keys: frozenset[str]

    @classmethod
    def build(cls, matrix: ServiceMatrix, classifier: Classifier | None = None, *,
              clock: Clock = time.monotonic) -> RouterState:
        metrics = RouterMetrics(CollectorRegistry(auto_describe=True))
        telemetry = Telemetry.for_matrix(matrix, clock=clock)
        telemetry.on_circuit = lambda name, old, new, why: metrics.circuit_transitions.labels(name, new).inc()
        pool = max(8, sum(b.max_concurrency for m in matrix.models for b in m.backends))
        cands = candidates_of(matrix)
        return cls(
            matrix=matrix,
            classifier=classifier or build_classifier(matrix.routing.mode, matrix),
            telemetry=telemetry,
            metrics=metrics,
            forwarder=Forwarder(matrix.router, telemetry, metrics, pool_size=pool),
            candidates=cands,
            by_model={m.name: [c for c in cands if c.model.name == m.name] for m in matrix.models},
            targets={(c.model.name, c.backend.name): Target(c.model, c.backend) for c in cands},
            api_keys=matrix.api_keys(),
        )


def state() -> RouterState:
    st: RouterState = current_app.extensions["pickspin"]
    return st


# -- request parsing ----------------------------------------------------------------------------

def _text_of(content: Any, param: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict):
                raise APIError(400, f"{param}[{i}] must be an object", param=f"{param}[{i}]")
            if part.get("type") == "text":
                t = part.get("text")
                if not isinstance(t, str):
                    raise APIError(400, f"{param}[{i}].text must be a string", param=f"{param}[{i}].text")
                parts.append(t)
        return "\n".join(parts)
    raise APIError(400, f"{param} must be a string or a list of content parts", param=param)


def prompt_text(body: dict[str, Any], kind: str) -> str:
    """The text to classify: the last user message (chat) or the prompt (completions)."""
    if kind == "chat":
        msgs = body.get("messages")
        if msgs is None:
            raise APIError(400, "'messages' is required", param="messages", code="missing_field")
        if not isinstance(msgs, list) or not msgs:
            raise APIError(400, "'messages' must be a non-empty array", param="messages")
        text = ""
        for i, m in enumerate(msgs):
            if not isinstance(m, dict):
                raise APIError(400, f"messages[{i}] must be an object", param=f"messages[{i}]")
            role = m.get("role")
            if not isinstance(role, str) or not role:
                raise APIError(400, f"messages[{i}].role must be a non-empty string", param=f"messages[{i}].role")
            t = _text_of(m.get("content"), f"messages[{i}].content")
            if role == "user":
                text = t
        return text
    p = body.get("prompt")
    if p is None:
        raise APIError(400, "'prompt' is required", param="prompt", code="missing_field")
    if isinstance(p, str):
        return p
    if isinstance(p, list) and p and all(isinstance(x, str) for x in p):
        return str(p[-1])
    raise APIError(400, "'prompt' must be a string or a non-empty array of strings", param="prompt")


def _check_common(body: dict[str, Any]) -> None:
    if "model" in body and not isinstance(body["model"], str | None):
        raise APIError(400, "'model' must be a string", param="model")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise APIError(400, "'stream' must be a boolean", param="stream")
    if "max_tokens" in body and body["max_tokens"] is not None and (
        not isinstance(body["max_tokens"], int) or isinstance(body["max_tokens"], bool) or body["max_tokens"] < 1
    ):
        raise APIError(400, "'max_tokens' must be a positive integer", param="max_tokens")


# -- the decision (no I/O) ----------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    estimate: Estimate
    profile_name: str
    profile: Profile
    table: list[Scored]
    requested_model: str | None
    snapshot: Mapping[str, BackendStats] | None = None  # the telemetry the table was ranked on

    @property
    def eligible(self) -> list[Scored]:
        return [s for s in self.table if s.eligible]

    def report(self) -> dict[str, Any]:
        """The dry run's answer (``POST /v1/route``, ``pickspin route --json``)."""
        best = next(iter(self.eligible), None)
        w = self.profile.weights()
        return {
            "decision": None if best is None else {"model": best.model, "backend": best.backend,
                                                   "score": round(best.score or 0.0, 4)},
            "complexity": self.estimate.as_dict(),
            "profile": {"name": self.profile_name, "weights": {"R": round(w[0], 4), "T": round(w[1], 4),
                                                               "C": round(w[2], 4)}},
            "requested_model": self.requested_model,
            "candidates": [{**s.as_dict(), **self._circuit(s.backend)} for s in self.table],
        }

    def _circuit(self, backend: str) -> dict[str, Any]:
        st = None if self.snapshot is None else self.snapshot.get(backend)
        if st is None:
            return {}
        return {"circuit": circuit_info(st)}


def decide(st: RouterState, text: str, profile: str, model: str | None = None, *,
           estimate: Estimate | None = None) -> Decision:
    """Pick for one prompt: classify ``text`` (unless ``estimate`` is given) and rank the candidates of
    ``model`` (None or "auto": every model) under the operator ``profile`` on the telemetry snapshot.

    No request I/O: the HTTP views, ``pickspin route`` and the simulator all call it. Unknown model 404,
    unknown profile 400, as :class:`APIError`.
    """
    requested = None if model in (None, "", "auto") else model
    if requested is not None and requested not in st.by_model:
        raise APIError(404, f"model {requested!r} does not exist; see GET /v1/models", param="model",
                       code="model_not_found")
    prof = st.matrix.profiles.get(profile)
    if prof is None:
        raise APIError(400, f"unknown profile {profile!r}; have {sorted(st.matrix.profiles)}", param="profile",
                       code="unknown_profile")
    t0 = time.perf_counter()
    est = estimate or st.classifier.classify(text)
    cands = st.candidates if requested is None else st.by_model[requested]
    snap = st.telemetry.snapshot
    # the circuit breaker (telemetry) decides on error rates, with a minimum sample count and recovery
    table = rank(cands, snap, est, prof, max_error_rate=None, now=st.telemetry.clock(),
                 half_open_requests=st.matrix.router.breaker_half_open_requests)
    st.metrics.decision.observe(time.perf_counter() - t0)
    return Decision(est, profile, prof, table, requested, snap)


def decide_request(st: RouterState, body: dict[str, Any], kind: str) -> Decision:
    """Validate an OpenAI request body and decide for it; the profile comes from the
    ``X-PickSpin-Profile`` header, the ``profile`` field or the config's default."""
    text = prompt_text(body, kind)
    _check_common(body)
    profile = request.headers.get("X-PickSpin-Profile") or body.get("profile") or st.matrix.routing.default_profile
    if not isinstance(profile, str):
        raise APIError(400, "'profile' must be a string", param="profile")
    return decide(st, text, profile, body.get("model"))


# -- the app ------------------------------------------------------------------------------------

def create_app(config: ServiceMatrix | str | Path | None = None, *, classifier: Classifier | None = None,
               start_prober: bool = True) -> Flask:
    matrix = config if isinstance(config, ServiceMatrix) else load_config(config)
    app = Flask("pickspin.router")
    app.config["MAX_CONTENT_LENGTH"] = matrix.router.max_body_bytes
    app.config["PICKSPIN_CLIENT_READ_TIMEOUT_S"] = matrix.router.client_request_timeout_s
    app.json.sort_keys = False  # type: ignore[attr-defined]
    st = RouterState.build(matrix, classifier)
    app.extensions["pickspin"] = st
    register_error_handlers(app)
    if start_prober:
        st.telemetry.start_prober()

    @app.before_request
    def _auth() -> None:
        g.request_id = request.headers.get("X-Request-Id") or f"{random.getrandbits(64):016x}"
        if st.api_keys and request.path.startswith("/v1/"):
            auth = request.headers.get("Authorization", "")
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
            if token not in st.api_keys:
                raise APIError(401, "missing or invalid API key (Authorization: Bearer <key>)",
                               code="invalid_api_key")

    @app.after_request
    def _request_id(resp: Response) -> Response:
        resp.headers["X-Request-Id"] = g.get("request_id", "")
        return resp

    def _proxy(path: str, kind: str) -> Response:
        body = json_object_body(max_depth=st.matrix.router.max_json_depth)
        d = decide_request(st, body, kind)
        eligible = d.eligible
        if not eligible:
            why = "; ".join(f"{s.backend}: {s.reason}" for s in d.table)
            raise APIError(503, f"no healthy backend with free capacity ({why})", code="no_healthy_backend",
                           headers={"Retry-After": str(st.matrix.router.retry_after_s)})
        targets = [st.targets[(s.model, s.backend)] for s in eligible]
        if d.estimate.source == "keyword-fallback":
            st.metrics.fallbacks.labels(str(d.estimate.detail.get("fallback_reason", "unknown"))).inc()
        fwd = {k: v for k, v in body.items() if k not in ROUTER_FIELDS}
        headers = {"X-PickSpin-Complexity": d.estimate.label, "X-PickSpin-Profile": d.profile_name,
                   "X-PickSpin-Classifier": d.estimate.source}
        if st.matrix.router.log_prompts:
            log.info("request %s prompt=%r", g.request_id, prompt_text(body, kind)[:500])
        log.debug("request %s complexity=%s rule=%s -> %s/%s", g.request_id, d.estimate.label, d.estimate.rule,
                 eligible[0].model, eligible[0].backend)
        return st.forwarder.forward(path, fwd, targets, stream=bool(body.get("stream")),
                                    complexity=d.estimate.label, extra_headers=headers)

    @app.post("/v1/chat/completions")
    def chat_completions() -> Response:
        return _proxy("/v1/chat/completions", "chat")

    @app.post("/v1/completions")
    def completions() -> Response:
        return _proxy("/v1/completions", "completion")

    @app.post("/v1/route")
    def route() -> Response:
        body = json_object_body(max_depth=st.matrix.router.max_json_depth)
        kind = "completion" if "prompt" in body and "messages" not in body else "chat"
        return jsonify(decide_request(st, body, kind).report())

    @app.get("/v1/models")
    def models() -> Response:
        snap = st.telemetry.snapshot
        data: list[dict[str, Any]] = [{"id": "auto", "object": "model", "owned_by": "pickspin",
                                       "pickspin": {"description": "Pick decides per prompt"}}]
        for m in st.matrix.models:
            data.append({"id": m.name, "object": "model", "owned_by": "pickspin", "pickspin": _model_info(m, snap)})
        return jsonify({"object": "list", "data": data})

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        up = sum(1 for s in st.telemetry.snapshot.values() if s.healthy)
        ready = classifier_ready(st.classifier)
        resp = jsonify({"status": "ready" if ready else "loading classifier", "classifier": st.classifier.name,
                        "backends_up": up, "backends": len(st.telemetry.snapshot)})
        resp.status_code = 200 if ready else 503
        return resp

    @app.get("/metrics")
    def metrics() -> Response:
        for name, s in st.telemetry.snapshot.items():
            st.metrics.backend_up.labels(name).set(1 if s.healthy else 0)
            st.metrics.circuit.labels(name).set(CIRCUIT_STATES.index(s.circuit))
        return Response(st.metrics.render(), mimetype="text/plain; version=0.0.4")

    @app.get("/openapi.yaml")
    def openapi() -> Response:
        return Response(OPENAPI_PATH.read_text(), mimetype="application/yaml")

    return app


def _model_info(m: Model, snap: Any) -> dict[str, Any]:
    return {
        "tier": m.tier,
        "capability": m.capability.model_dump(),
        "cost": {m.cost.unit: m.cost.value},
        "simulated": all(b.simulated for b in m.backends),
        "backends": [{"name": b.name, "kind": b.kind, "simulated": b.simulated,
                      "healthy": bool(snap[b.name].healthy) if b.name in snap else None,
                      "circuit": circuit_info(snap[b.name]) if b.name in snap else None} for b in m.backends],
    }


def circuit_info(s: BackendStats) -> dict[str, Any]:
    """A backend's circuit breaker as the API shows it."""
    return {"state": s.circuit, "consecutive_failures": s.consecutive_failures,
            "error_rate": round(s.error_rate, 4)}
