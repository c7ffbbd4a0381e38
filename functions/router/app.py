"""The router function: Flask app factory, state built once at start.

Request path: parse and validate -> classify the prompt -> rank candidates on the telemetry
snapshot (pure) -> forward to the best, failing over before the first byte.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from prometheus_client import CollectorRegistry

from pickspin.config import Backend, Model, Profile, ServiceMatrix, load_config
from pickspin.errors import APIError, json_object_body, register_error_handlers

from .classifiers import Classifier, Estimate, build_classifier, classifier_ready
from .demand import DemandPusher
from .metrics import RouterMetrics
from .proxy import Forwarder, Target
from .scoring import Candidate, Scored, candidates_of, rank
from .telemetry import CIRCUIT_STATES, BackendStats, Clock, Telemetry
from .waiting import STRICT, Waker, choose, wait_s

log = logging.getLogger("pickspin.router")
OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")
ROUTER_FIELDS = ("profile", "max_wait_s")  # body fields the router consumes and does not forward
ENDPOINTS = ("chat", "completions", "embeddings", "responses")
_ENDPOINT_PATH = {"chat": "/v1/chat/completions", "completions": "/v1/completions", "embeddings": "/v1/embeddings",
                  "responses": "/v1/responses"}
_KIND_ENDPOINT = {"chat": "chat", "completion": "completions", "responses": "responses"}
#: Embeddings have no prompt to classify: every class equally likely (relevance = mean capability).
NEUTRAL_ESTIMATE = Estimate("medium", {"low": 1 / 3, "medium": 1 / 3, "high": 1 / 3}, 1 / 3, "none")


@dataclass
class RouterState:
    matrix: ServiceMatrix
    classifier: Classifier
    telemetry: Telemetry
    metrics: RouterMetrics
    forwarder: Forwarder
    candidates: list[Candidate]
    by_model: dict[str, list[Candidate]]
    by_endpoint: dict[str, list[Candidate]]
    targets: dict[tuple[str, str], Target]
    api_keys: frozenset[str]
    waker: Waker
    pusher: DemandPusher | None

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
            by_endpoint={e: [c for c in cands if e in c.model.endpoints] for e in ENDPOINTS},
            targets={(c.model.name, c.backend.name): Target(c.model, c.backend) for c in cands},
            api_keys=matrix.api_keys(),
            waker=Waker([c.backend for c in cands], telemetry, matrix.router.cold_start_timeout_s),
            pusher=DemandPusher(matrix.router.scaler_push_url) if matrix.router.scaler_push_url else None,
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


def responses_text(body: dict[str, Any]) -> str:
    """The text to classify in a Responses API request: ``input`` as a string, or the last user message
    of an ``input`` item list (string content, or its ``input_text`` / ``text`` parts)."""
    inp = body.get("input")
    if inp is None:
        raise APIError(400, "'input' is required", param="input", code="missing_field")
    if isinstance(inp, str):
        return inp
    if not isinstance(inp, list) or not inp:
        raise APIError(400, "'input' must be a string or a non-empty array of input items", param="input")
    text = ""
    for i, item in enumerate(inp):
        if not isinstance(item, dict):
            raise APIError(400, f"input[{i}] must be an object", param=f"input[{i}]")
        if item.get("role") != "user":
            continue
        content = item.get("content")
        if isinstance(content, str):
            text = content
        elif isinstance(content, list):
            parts = []
            for j, part in enumerate(content):
                if not isinstance(part, dict):
                    raise APIError(400, f"input[{i}].content[{j}] must be an object", param=f"input[{i}].content[{j}]")
                if part.get("type") in ("input_text", "text") and isinstance(part.get("text"), str):
                    parts.append(part["text"])
            text = "\n".join(parts)
        else:
            raise APIError(400, f"input[{i}].content must be a string or a list of content parts",
                           param=f"input[{i}].content")
    return text


def check_embeddings_body(body: dict[str, Any]) -> None:
    """OpenAI's embeddings request: ``input`` is a string, an array of strings, an array of token ids,
    or an array of arrays of token ids; never empty."""
    inp = body.get("input")
    if inp is None:
        raise APIError(400, "'input' is required", param="input", code="missing_field")

    def tokens(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(t, int) and not isinstance(t, bool) for t in v)

    ok = (isinstance(inp, str) and inp != "") or tokens(inp) or (
        isinstance(inp, list) and bool(inp) and (all(isinstance(x, str) and x for x in inp)
                                                 or all(tokens(x) for x in inp)))
    if not ok:
        raise APIError(400, "'input' must be a non-empty string, an array of non-empty strings, an array of "
                            "token ids or an array of token-id arrays", param="input")
    if "encoding_format" in body and body["encoding_format"] not in ("float", "base64"):
        raise APIError(400, "'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    d = body.get("dimensions")
    if d is not None and (not isinstance(d, int) or isinstance(d, bool) or d < 1):
        raise APIError(400, "'dimensions' must be a positive integer", param="dimensions")


def prompt_text(body: dict[str, Any], kind: str) -> str:
    """The text to classify: the last user message (chat, responses) or the prompt (completions)."""
    if kind == "responses":
        return responses_text(body)
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
    for field in ("max_tokens", "max_output_tokens"):
        if field in body and body[field] is not None and (
            not isinstance(body[field], int) or isinstance(body[field], bool) or body[field] < 1
        ):
            raise APIError(400, f"'{field}' must be a positive integer", param=field)


# -- the decision (no I/O) ----------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    estimate: Estimate
    profile_name: str
    profile: Profile
    table: list[Scored]
    requested_model: str | None
    snapshot: Mapping[str, BackendStats] | None = None  # the telemetry the table was ranked on
    max_wait_s: float | None = None  # the wait budget applied (None: none)
    downgraded_from: str | None = None  # the best model, when it was not ready within the budget
    wake: str | None = None  # backend to wake in the background

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
            "max_wait_s": None if self.max_wait_s is None else ("strict" if math.isinf(self.max_wait_s)
                                                                else self.max_wait_s),
            "downgraded_from": self.downgraded_from,
            "candidates": [{**s.as_dict(), **self._circuit(s.backend)} for s in self.table],
        }

    def _circuit(self, backend: str) -> dict[str, Any]:
        st = None if self.snapshot is None else self.snapshot.get(backend)
        if st is None:
            return {}
        return {"circuit": circuit_info(st)}


def decide(st: RouterState, text: str, profile: str, model: str | None = None, *,
           estimate: Estimate | None = None, endpoint: str = "chat", max_wait_s: float | None = None) -> Decision:
    """Pick for one prompt: classify ``text`` (unless ``estimate`` is given) and rank the candidates of
    ``model`` (None or "auto": every model that serves ``endpoint``) under the operator ``profile`` on
    the telemetry snapshot, within the wait budget (``max_wait_s``, else the profile's, else the
    router's; see waiting.py).

    No request I/O: the HTTP views, ``pickspin route`` and the simulator all call it. Unknown model 404,
    unknown profile 400, a model (or no model at all) that does not serve ``endpoint`` 400, as
    :class:`APIError`.
    """
    requested = None if model in (None, "", "auto") else model
    if requested is not None and requested not in st.by_model:
        raise APIError(404, f"model {requested!r} does not exist; see GET /v1/models", param="model",
                       code="model_not_found")
    path = _ENDPOINT_PATH.get(endpoint, endpoint)
    if requested is not None:
        served = st.by_model[requested][0].model.endpoints
        if endpoint not in served:
            raise APIError(400, f"model {requested!r} does not support {path} (it serves "
                                f"{', '.join(_ENDPOINT_PATH[e] for e in served)}); see GET /v1/models",
                           param="model", code="unsupported_endpoint")
    elif not st.by_endpoint.get(endpoint):
        raise APIError(400, f"no model here supports {path}; declare one with endpoints: [{endpoint}]",
                       param="model", code="unsupported_endpoint")
    prof = st.matrix.profiles.get(profile)
    if prof is None:
        raise APIError(400, f"unknown profile {profile!r}; have {sorted(st.matrix.profiles)}", param="profile",
                       code="unknown_profile")
    t0 = time.perf_counter()
    est = estimate or st.classifier.classify(text)
    cands = st.by_endpoint[endpoint] if requested is None else st.by_model[requested]
    snap = st.telemetry.snapshot
    # the circuit breaker (telemetry) decides on error rates, with a minimum sample count and recovery
    kw: dict[str, Any] = {"max_error_rate": None, "now": st.telemetry.clock(),
                          "half_open_requests": st.matrix.router.breaker_half_open_requests,
                          "max_held": st.matrix.router.max_held_per_backend}
    budget = next((b for b in (max_wait_s, prof.max_wait_s, st.matrix.router.max_wait_s) if b is not None), None)
    if budget is None:
        d = Decision(est, profile, prof, rank(cands, snap, est, prof, **kw), requested, snap)
    else:
        ch = choose(cands, snap, est, prof, budget, **kw)
        d = Decision(est, profile, prof, ch.table, requested, snap, budget, ch.downgraded_from, ch.wake)
    st.metrics.decision.observe(time.perf_counter() - t0)
    return d


def _max_wait(body: dict[str, Any]) -> float | None:
    """The request's wait budget: ``X-PickSpin-Max-Wait`` header or ``max_wait_s`` field; seconds or "strict"."""
    raw: Any = request.headers.get("X-PickSpin-Max-Wait")
    param = "X-PickSpin-Max-Wait"
    if raw is None:
        raw, param = body.get("max_wait_s"), "max_wait_s"
    if raw is None:
        return None
    if raw == "strict":
        return STRICT
    try:
        v = float(raw) if not isinstance(raw, bool) else math.nan
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v) or v < 0:
        raise APIError(400, f"'{param}' must be a number of seconds >= 0 or \"strict\"", param=param)
    return v


def decide_request(st: RouterState, body: dict[str, Any], kind: str) -> Decision:
    """Validate an OpenAI request body and decide for it; the profile comes from the
    ``X-PickSpin-Profile`` header, the ``profile`` field or the config's default."""
    if kind == "embeddings":
        check_embeddings_body(body)
        text, estimate = "", NEUTRAL_ESTIMATE
    else:
        text, estimate = prompt_text(body, kind), None
    _check_common(body)
    profile = request.headers.get("X-PickSpin-Profile") or body.get("profile") or st.matrix.routing.default_profile
    if not isinstance(profile, str):
        raise APIError(400, "'profile' must be a string", param="profile")
    return decide(st, text, profile, body.get("model"), estimate=estimate,
                  endpoint=_KIND_ENDPOINT.get(kind, kind), max_wait_s=_max_wait(body))


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
                           headers={"Retry-After": str(_retry_after(st, d))})
        targets = [st.targets[(s.model, s.backend)] for s in eligible]
        if d.wake is not None and st.waker.wake(d.wake) and st.pusher is not None:
            st.pusher.push(next(c.model.name for c in st.candidates if c.backend.name == d.wake), 1)
        if d.estimate.source == "keyword-fallback":
            st.metrics.fallbacks.labels(str(d.estimate.detail.get("fallback_reason", "unknown"))).inc()
        fwd = {k: v for k, v in body.items() if k not in ROUTER_FIELDS}
        headers = {"X-PickSpin-Complexity": d.estimate.label, "X-PickSpin-Profile": d.profile_name,
                   "X-PickSpin-Classifier": d.estimate.source}
        if d.downgraded_from is not None:
            headers["X-PickSpin-Downgraded-From"] = d.downgraded_from
            st.metrics.downgrades.labels(d.downgraded_from, eligible[0].model).inc()
        if st.matrix.router.log_prompts and kind != "embeddings":
            log.info("request %s prompt=%r", g.request_id, prompt_text(body, kind)[:500])
        log.debug("request %s complexity=%s rule=%s -> %s/%s", g.request_id, d.estimate.label, d.estimate.rule,
                 eligible[0].model, eligible[0].backend)
        stream = kind != "embeddings" and bool(body.get("stream"))
        first = targets[0].backend
        waiting = wait_s(first, st.telemetry.snapshot.get(first.name)) > 0
        if waiting and st.pusher is not None:  # held for a cold start: tell the scaler now, not at the next scrape
            model = targets[0].model.name
            held = 1 + sum(st.telemetry.snapshot[c.backend.name].inflight for c in st.by_model[model])
            st.pusher.push(model, held, held)
        if stream and waiting:
            # the backend is cold or waking: keep the client informed until its first byte
            return st.forwarder.forward_waiting(
                path, fwd, targets, complexity=d.estimate.label, extra_headers=headers,
                eta=lambda: wait_s(first, st.telemetry.snapshot.get(first.name)) or None,
                interval_s=st.matrix.router.waiting_comment_interval_s)
        return st.forwarder.forward(path, fwd, targets, stream=stream, complexity=d.estimate.label,
                                    extra_headers=headers)

    @app.post("/v1/chat/completions")
    def chat_completions() -> Response:
        return _proxy("/v1/chat/completions", "chat")

    @app.post("/v1/completions")
    def completions() -> Response:
        return _proxy("/v1/completions", "completion")

    @app.post("/v1/embeddings")
    def embeddings() -> Response:
        return _proxy("/v1/embeddings", "embeddings")

    @app.post("/v1/responses")
    def responses() -> Response:
        return _proxy("/v1/responses", "responses")

    @app.post("/v1/route")
    def route() -> Response:
        body = json_object_body(max_depth=st.matrix.router.max_json_depth)
        if "messages" in body:
            kind = "chat"
        elif "prompt" in body:
            kind = "completion"
        else:  # a Responses API body ({"input": ...}); without any of the three, chat says what is missing
            kind = "responses" if "input" in body else "chat"
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
        "endpoints": list(m.endpoints),
        "cost": {m.cost.unit: m.cost.value},
        "simulated": all(b.simulated for b in m.backends),
        "backends": [_backend_info(b, snap.get(b.name)) for b in m.backends],
    }


def circuit_info(s: BackendStats) -> dict[str, Any]:
    """A backend's circuit breaker as the API shows it."""
    return {"state": s.circuit, "consecutive_failures": s.consecutive_failures,
            "error_rate": round(s.error_rate, 4)}


def _retry_after(st: RouterState, d: Decision) -> int:
    """Seconds a client should wait: the soonest ETA of a candidate that is waking, else the default."""
    snap = st.telemetry.snapshot
    etas = [e for s in d.table if (e := getattr(snap.get(s.backend), "eta_s", None))]
    return max(1, math.ceil(min(etas))) if etas else st.matrix.router.retry_after_s


def _backend_info(b: Backend, s: BackendStats | None) -> dict[str, Any]:
    return {"name": b.name, "kind": b.kind, "simulated": b.simulated,
            "healthy": None if s is None else s.healthy,
            "circuit": None if s is None else circuit_info(s),
            "state": None if s is None else s.readiness,
            "eta_s": None if s is None or s.eta_s is None else round(s.eta_s, 1)}
