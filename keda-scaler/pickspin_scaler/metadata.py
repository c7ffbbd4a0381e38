"""The trigger's ``metadata`` (KEDA's ``scalerMetadata``) as a typed model.

KEDA passes every key of the trigger's ``metadata`` block as a string, including its own
(``scalerAddress``, TLS options); keys this scaler does not know are ignored. Known keys are
validated and a bad one is reported by name (the server maps that to ``INVALID_ARGUMENT``).

Example ScaledObject trigger::

    triggers:
      - type: external-push
        metadata:
          scalerAddress: pickspin-scaler.pickspin:6000
          model: llama-3.1-70b
          tier: large
          concurrency: "8"
          idleSeconds: "300"
          prometheusAddress: http://prometheus-server.monitoring:9090
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from string import Template
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pickspin.contract import (
    PROMQL_PLACEHOLDERS,
    QUERY_KEYS,
    ROUTER_QUERIES,
    TIER_WARM_POOL,
    VLLM_QUERIES,
    promql_duration,
)

Tier = Literal["small", "medium", "large"]
Flavor = Literal["router", "vllm"]

#: Placeholders a PromQL override may use (see pickspin.contract): ``${model}``, ``${window}``, ``${idle}``
#: and ``${namespace}`` (``metricsNamespace``, empty if unset).
PLACEHOLDERS = PROMQL_PLACEHOLDERS

_METRIC_NAME_BAD = re.compile(r"[^a-z0-9-]+")


class MetadataError(ValueError):
    """Invalid trigger metadata; ``key`` is the metadata key at fault."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"scalerMetadata.{key}: {message}")
        self.key = key


class ScalerMetadata(BaseModel):
    """Parsed trigger metadata. Field aliases are the camelCase keys of the ScaledObject."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, str_strip_whitespace=True)

    model: str = Field(min_length=1, max_length=253)
    tier: Tier | None = None
    concurrency: int = Field(default=4, ge=1, le=100_000)  # c: requests one replica serves at once
    warm_pool: int | None = Field(default=None, alias="warmPool", ge=0, le=10_000)
    idle_seconds: float = Field(default=300.0, alias="idleSeconds", ge=0, le=86_400 * 7)  # tau
    window_seconds: float = Field(default=300.0, alias="windowSeconds", ge=1, le=86_400)
    prometheus_address: str | None = Field(default=None, alias="prometheusAddress")
    query_flavor: Flavor = Field(default="router", alias="queryFlavor")
    # Label value used in the default vLLM queries (vLLM labels by served model name); default: model.
    served_model_name: str | None = Field(default=None, alias="servedModelName", min_length=1)
    # Adaptive keep-warm (policy.KeepWarmLearner): floor and tau learned from the model's own idle gaps and
    # busy hours; warmPool and idleSeconds hold until enough are seen. loadSeconds, gpus and
    # sloMissGpuSeconds price a cold start.
    keep_warm: Literal["fixed", "adaptive"] = Field(default="fixed", alias="keepWarm")
    load_seconds: float = Field(default=60.0, alias="loadSeconds", ge=0, le=86_400)
    gpus: int = Field(default=1, ge=1, le=1024)
    slo_miss_gpu_seconds: float = Field(default=60.0, alias="sloMissGpuSeconds", ge=0, le=1e9)
    rate_query: str | None = Field(default=None, alias="rateQuery", min_length=1)
    latency_query: str | None = Field(default=None, alias="latencyQuery", min_length=1)
    demand_query: str | None = Field(default=None, alias="demandQuery", min_length=1)
    recent_query: str | None = Field(default=None, alias="recentQuery", min_length=1)
    total_query: str | None = Field(default=None, alias="totalQuery", min_length=1)
    # Kubernetes namespace of the router's series: adds namespace="<ns>" to every default query, so two
    # releases sharing one Prometheus (and model names) do not see each other's traffic. See _namespaced().
    metrics_namespace: str | None = Field(default=None, alias="metricsNamespace", min_length=1, max_length=63)

    @field_validator("model", "served_model_name")
    @classmethod
    def _printable(cls, v: str | None) -> str | None:
        if v is not None and any(ch in v for ch in '"\\\n\r{}'):
            raise ValueError("must not contain quotes, backslashes, braces or newlines")
        return v

    @field_validator("idle_seconds", "window_seconds")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number of seconds")
        return v

    @field_validator("prometheus_address")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        return None if v is None else normalize_address(v)

    @field_validator("metrics_namespace")
    @classmethod
    def _dns_label(cls, v: str | None) -> str | None:
        if v is not None and not _NAMESPACE_RE.fullmatch(v):
            raise ValueError("must be a Kubernetes namespace name (RFC 1123 label)")
        return v

    @field_validator("rate_query", "latency_query", "demand_query", "recent_query", "total_query")
    @classmethod
    def _known_placeholders(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            Template(v).substitute({k: "x" for k in PLACEHOLDERS})
        except KeyError as e:
            raise ValueError(f"unknown placeholder {e}; allowed: ${{model}}, ${{window}}, ${{idle}}, "
                             "${namespace}") from None
        except ValueError:
            raise ValueError("bad placeholder; write $$ for a literal $") from None
        return v

    @model_validator(mode="after")
    def _vllm_name(self) -> ScalerMetadata:
        if self.served_model_name is not None and self.query_flavor != "vllm":
            raise ValueError("servedModelName: only meaningful with queryFlavor: vllm")
        return self

    # -- derived ---------------------------------------------------------------------------
    def floor(self) -> int:
        """Warm-pool floor: ``warmPool`` if given, else the tier's default, else 0."""
        if self.warm_pool is not None:
            return self.warm_pool
        return TIER_WARM_POOL.get(self.tier or "", 0)

    def metric_name(self) -> str:
        """The HPA metric name (KEDA prefixes it with ``sN-``)."""
        slug = _METRIC_NAME_BAD.sub("-", self.model.lower()).strip("-") or "model"
        return f"pickspin-{slug}-concurrency"[:200]

    def queries(self) -> dict[str, str]:
        """The PromQL for each of rate, latency, demand, recent, total, placeholders filled in."""
        base = VLLM_QUERIES if self.query_flavor == "vllm" else ROUTER_QUERIES
        overrides = {"rate": self.rate_query, "latency": self.latency_query, "demand": self.demand_query,
                     "recent": self.recent_query, "total": self.total_query}
        label = (self.served_model_name or self.model) if self.query_flavor == "vllm" else self.model
        values = {"model": label, "window": promql_duration(self.window_seconds),
                  "idle": promql_duration(self.idle_seconds), "namespace": self.metrics_namespace or ""}
        return {k: Template(overrides[k] or _namespaced(base[k], self.metrics_namespace)).substitute(values)
                for k in QUERY_KEYS}


# -- namespace filter and address checks (kept apart from the query tables above) -----------------
_NAMESPACE_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _namespaced(promql: str, namespace: str | None) -> str:
    """A default query with ``namespace="<ns>"`` added to every label matcher (unchanged without one).

    The defaults select series by ``{model="${model}"}`` / ``{model_name="${model}"}``; Prometheus'
    Kubernetes service discovery (kubernetes-pods job, PodMonitor) attaches the pod's ``namespace``.
    """
    if not namespace:
        return promql
    return promql.replace('{model="${model}"}', '{namespace="${namespace}",model="${model}"}').replace(
        '{model_name="${model}"}', '{namespace="${namespace}",model_name="${model}"}')


def normalize_address(v: str) -> str:
    """A Prometheus base URL: http(s)://host[:port][/path], no spaces, credentials, query or fragment.

    Returned without a trailing slash, scheme and host lower-cased, so that allow-list checks compare
    like with like. Raises ``ValueError`` otherwise.
    """
    if not v or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in v):
        raise ValueError("must be an http:// or https:// URL without spaces or control characters")
    try:
        u = urlsplit(v)
        port = u.port  # ValueError when not a number in 0..65535
    except ValueError as e:
        raise ValueError(f"not a valid URL ({e})") from None
    if u.scheme.lower() not in ("http", "https"):
        raise ValueError("must start with http:// or https://")
    if not u.hostname:
        raise ValueError("has no host")
    if u.username is not None or u.password is not None or "@" in u.netloc:
        raise ValueError("must not carry credentials (use the scaler's bearer token file)")
    if u.query or u.fragment or "?" in v or "#" in v:
        raise ValueError("must not have a query or fragment")
    host = u.hostname.lower()
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port is not None else "")
    return f"{u.scheme.lower()}://{netloc}{u.path}".rstrip("/")


_ALIASES = {name: (f.alias or name) for name, f in ScalerMetadata.model_fields.items()}


def parse_metadata(raw: Mapping[str, str]) -> ScalerMetadata:
    """Validate KEDA's ``scalerMetadata``; raise :class:`MetadataError` naming the first bad key."""
    data = {k: v for k, v in raw.items() if not (isinstance(v, str) and v.strip() == "" and k != "model")}
    try:
        return ScalerMetadata.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = [str(p) for p in err["loc"]]
        key = _ALIASES.get(loc[0], loc[0]) if loc else "<root>"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "is required"
        if not loc and ":" in msg:  # model-level validator: "key: message"
            key, _, msg = msg.partition(":")
            msg = msg.strip()
        raise MetadataError(key, msg) from None
