"""What Pick, Spin and the tooling around them must agree on, defined once.

The router writes the metrics and reads the backend-state header; the scaler queries those metrics
and reads the trigger metadata; the local activator writes the header; the simulator, the Kubernetes
builder and the scaler's ``--config`` mode all build the same trigger metadata. Each of them imports
it from here. (The Helm chart renders the same values in Go templates; tests/k8s/test_drift.py checks
the rendered manifests against this module.)
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config imports this module; the reverse import is for types only
    from pickspin.config import Model, ServiceMatrix

# -- the router's Prometheus metrics -------------------------------------------------------------
REQUESTS_TOTAL = "pickspin_requests_total"  # {model, backend, status, complexity}, one count per attempt
REQUEST_DURATION = "pickspin_request_duration_seconds"  # histogram {model, backend}
TTFT = "pickspin_ttft_seconds"  # histogram {model, backend}
INFLIGHT = "pickspin_inflight_requests"  # gauge {model}, incl. requests held for a cold start
DECISION_DURATION = "pickspin_route_decision_seconds"
UPSTREAM_RETRIES = "pickspin_upstream_retries_total"  # {backend, reason}
CLASSIFIER_FALLBACKS = "pickspin_classifier_fallbacks_total"  # {reason}
BACKEND_UP = "pickspin_backend_up"  # gauge {backend}
DOWNGRADES = "pickspin_downgrades_total"  # {from_model, to_model}: the best model was not ready in budget
BACKEND_CIRCUIT = "pickspin_backend_circuit_state"  # gauge {backend}: 0 closed, 1 half-open, 2 open
CIRCUIT_TRANSITIONS = "pickspin_circuit_transitions_total"  # {backend, to}: breaker state changes

#: Placeholders a PromQL template may use: ``${model}`` (label value), ``${window}`` and ``${idle}``
#: (range durations such as ``300s``), ``${namespace}`` (the scaler's ``metricsNamespace``, empty if unset).
PROMQL_PLACEHOLDERS = ("model", "window", "idle", "namespace")
#: What the scaler asks Prometheus, per model: request rate, mean latency, demand now (in flight +
#: queued), requests over the idle horizon tau, and the lifetime counter (to see any new request).
QUERY_KEYS = ("rate", "latency", "demand", "recent", "total")

ROUTER_QUERIES: dict[str, str] = {
    "rate": f'sum(rate({REQUESTS_TOTAL}{{model="${{model}}"}}[${{window}}]))',
    "latency": (f'sum(rate({REQUEST_DURATION}_sum{{model="${{model}}"}}[${{window}}]))'
                f' / sum(rate({REQUEST_DURATION}_count{{model="${{model}}"}}[${{window}}]))'),
    "demand": f'sum({INFLIGHT}{{model="${{model}}"}})',
    "recent": f'sum(increase({REQUESTS_TOTAL}{{model="${{model}}"}}[${{idle}}]))',
    "total": f'sum({REQUESTS_TOTAL}{{model="${{model}}"}})',
}
# vLLM's own metrics (its contract, labelled by served model name), for a scaler that reads the engines.
_VLLM_E2E = "vllm:e2e_request_latency_seconds"
VLLM_QUERIES: dict[str, str] = {
    "rate": f'sum(rate({_VLLM_E2E}_count{{model_name="${{model}}"}}[${{window}}]))',
    "latency": (f'sum(rate({_VLLM_E2E}_sum{{model_name="${{model}}"}}[${{window}}]))'
                f' / sum(rate({_VLLM_E2E}_count{{model_name="${{model}}"}}[${{window}}]))'),
    "demand": ('sum(vllm:num_requests_running{model_name="${model}"})'
               ' + sum(vllm:num_requests_waiting{model_name="${model}"})'),
    "recent": f'sum(increase({_VLLM_E2E}_count{{model_name="${{model}}"}}[${{idle}}]))',
    "total": f'sum({_VLLM_E2E}_count{{model_name="${{model}}"}})',
}


# -- backend readiness, as the local activator tells the router ------------------------------------
BACKEND_STATE_HEADER = "X-PickSpin-Backend-State"  # on the activator's health answers
#: Seconds until the backend is ready (0 when ready), learned from observed start-ups; absent when unknown.
BACKEND_ETA_HEADER = "X-PickSpin-Backend-ETA"
#: On a relayed answer: seconds the request was held (cold start, free slot) before the backend got it.
#: The router leaves it out of service time, so Little's law does not count a cold start as work.
HELD_HEADER = "X-PickSpin-Held-S"


class BackendState(StrEnum):
    COLD = "cold"  # no process: a request would wait for a cold start
    STARTING = "starting"  # a cold start is under way
    READY = "ready"
    STOPPING = "stopping"


#: States in which a request does not pay a (new) cold start.
WARM_STATES = frozenset({BackendState.READY, BackendState.STARTING})


# -- HTTP ----------------------------------------------------------------------------------------
#: Hop-by-hop headers (RFC 9110 7.6.1, plus the proxy-auth pair): never forwarded by a proxy.
HOP_BY_HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                                "proxy-authenticate", "proxy-authorization"})


# -- Spin: warm pools and the scaler's trigger metadata -----------------------------------------
#: Replicas kept warm per tier when a model gives no ``scaling.warm_pool`` / trigger gives no ``warmPool``.
TIER_WARM_POOL: dict[str, int] = {"small": 1, "medium": 0, "large": 0}


def _num(v: float) -> str:
    """Numbers as KEDA metadata strings: integers without a trailing .0."""
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def scaler_metadata(*, model: str, tier: str, concurrency: int, warm_pool: int, idle_seconds: float,
                    window_seconds: float | None = None, prometheus_address: str | None = None,
                    metrics_namespace: str | None = None, keep_warm: str = "fixed", load_seconds: float = 0.0,
                    gpus: int = 1, slo_miss_gpu_s: float = 60.0) -> dict[str, str]:
    """The ``external-push`` trigger's metadata for one model: every value a string, keys as the scaler
    reads them (KEDA adds its own, e.g. ``scalerAddress``)."""
    md = {"model": model, "tier": tier, "concurrency": str(concurrency), "warmPool": str(warm_pool),
          "idleSeconds": _num(idle_seconds)}
    if window_seconds is not None:
        md["windowSeconds"] = _num(window_seconds)
    if prometheus_address:
        md["prometheusAddress"] = prometheus_address
    if metrics_namespace:  # keeps releases that share a Prometheus apart
        md["metricsNamespace"] = metrics_namespace
    if keep_warm == "adaptive":  # tau chosen by the scaler from the model's idle gaps (policy.choose_keep_warm)
        md.update(keepWarm="adaptive", loadSeconds=_num(load_seconds), gpus=str(gpus),
                  sloMissGpuSeconds=_num(slo_miss_gpu_s))
    return md


def trigger_metadata(matrix: ServiceMatrix, model: Model, *, window_seconds: float | None = None,
                     prometheus_address: str | None = None, metrics_namespace: str | None = None) -> dict[str, str]:
    """The trigger metadata of ``model`` as the service matrix declares it (tier floor applied)."""
    return scaler_metadata(model=model.name, tier=model.tier, concurrency=model.scaling.concurrency,
                           warm_pool=matrix.warm_pool(model), idle_seconds=model.scaling.idle_seconds,
                           window_seconds=window_seconds, prometheus_address=prometheus_address,
                           metrics_namespace=metrics_namespace, keep_warm=model.scaling.keep_warm,
                           load_seconds=max((b.cold_start_s for b in model.backends), default=0.0) or 60.0,
                           gpus=model.scaling.gpus, slo_miss_gpu_s=model.scaling.slo_miss_gpu_s)


def promql_duration(seconds: float) -> str:
    """A PromQL range duration; whole seconds, at least 1s."""
    return f"{max(1, math.ceil(seconds))}s"
