"""The simulator's config: the router's service matrix plus the cluster it runs on.

``config/sim.yaml`` has four parts:

* ``matrix`` - a :class:`pickspin.config.ServiceMatrix` exactly as the router reads it (models, tiers,
  capabilities, costs, scaling {concurrency, warm_pool, max_replicas, idle_seconds}, backends, profiles).
  Routing in the simulator goes through the router's own ``rank`` over this matrix.
* ``cluster`` - what the matrix does not say: GPUs per replica, cold start, TTFT / time per output token
  as a function of the batch, KV-bound batch size, GPU $/hour, request timeout, SLO. Every number
  carries a ``sources`` entry naming a reference in ``references``.
* ``policies`` - parameters of each autoscaler (Knative KPA defaults, KEDA/HPA defaults, the
  production-stack KEDA trigger, PickSpin's poll cadence).
* ``scenarios`` - the traces ``pickspin sim`` replays when no ``--trace`` is given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pickspin.config import ConfigError, ServiceMatrix, format_validation_error, read_yaml_mapping

DEFAULT_SIM_CONFIG = Path(__file__).resolve().parents[2] / "config" / "sim.yaml"

TraceScale = Literal["thin", "stretch"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GPU(_Strict):
    name: str
    usd_per_gpu_hour: float = Field(gt=0)
    source: str

    @property
    def usd_per_gpu_second(self) -> float:
        return self.usd_per_gpu_hour / 3600.0


class ModelCluster(_Strict):
    """How one model runs: one replica = one vLLM server on ``gpus`` GPUs (tensor parallel)."""

    matrix_column: str | None = None  # the MMLU-Pro outcome column standing in for this model
    gpus: int = Field(ge=1)
    cold_start_s: float = Field(ge=0)  # pod start -> ready: weights load + engine init/warm-up
    ttft_base_s: float = Field(ge=0)  # fixed part of time to first token at batch 1
    prefill_s_per_token: float = Field(ge=0)  # prefill time per input token at batch 1
    tpot_s: float = Field(gt=0)  # time per output token at batch 1
    batch_knee: int = Field(default=8, ge=1)  # up to this many running sequences, TPOT stays ~flat
    batch_slope: float = Field(default=0.1, ge=0)  # relative TPOT/TTFT growth per sequence past the knee
    max_batch: int = Field(ge=1)  # sequences one replica runs at once (KV-cache bound); more wait
    static_replicas: int = Field(default=1, ge=0)  # the static baseline's fixed replicas
    sources: dict[str, str] = Field(default_factory=dict)

    def slowdown(self, batch: int) -> float:
        """Factor on TPOT (and prefill) with ``batch`` sequences running."""
        over = batch - self.batch_knee
        return 1.0 + self.batch_slope * over if over > 0 else 1.0


class SLO(_Strict):
    ttft_s: float = Field(gt=0)
    tpot_s: float = Field(gt=0)


class Cluster(_Strict):
    gpu: GPU
    request_timeout_s: float = Field(default=300.0, gt=0)  # Knative revision timeoutSeconds
    slo: SLO = SLO(ttft_s=5.0, tpot_s=0.1)
    prometheus_scrape_s: float = Field(default=15.0, gt=0)
    models: dict[str, ModelCluster]
    sources: dict[str, str] = Field(default_factory=dict)


class HPA(_Strict):
    """Kubernetes HPA defaults (the controller KEDA drives for 1 <-> N)."""

    sync_period_s: float = Field(default=15.0, gt=0)
    tolerance: float = Field(default=0.1, ge=0)
    scale_down_stabilization_s: float = Field(default=300.0, ge=0)
    scale_up_percent: float = Field(default=100.0, gt=0)
    scale_up_pods: int = Field(default=4, ge=1)


class KnativeKPA(_Strict):
    tick_s: float = Field(default=2.0, gt=0)
    target_utilization: float = Field(default=0.7, gt=0, le=1)
    stable_window_s: float = Field(default=60.0, gt=0)
    panic_window_percentage: float = Field(default=10.0, gt=0, le=100)
    panic_threshold_percentage: float = Field(default=200.0, gt=100)
    max_scale_up_rate: float = Field(default=1000.0, gt=1)
    max_scale_down_rate: float = Field(default=2.0, gt=1)
    scale_to_zero_grace_s: float = Field(default=30.0, ge=0)
    # Per-pod concurrency target; None: the model's scaling.concurrency (autoscaling.knative.dev/target).
    target: float | None = Field(default=None, gt=0)


class KedaThreshold(_Strict):
    """vLLM production-stack's KEDA trigger: vllm:num_requests_waiting, threshold 5."""

    polling_interval_s: float = Field(default=15.0, gt=0)
    cooldown_s: float = Field(default=360.0, ge=0)
    threshold: float = Field(default=5.0, gt=0)
    keepalive_window_s: float = Field(default=60.0, gt=0)  # the scale-to-zero keepalive trigger's [1m]
    min_replicas: int = Field(default=0, ge=0)


class PickSpinPolicy(_Strict):
    """How the project's scaler runs: its poller, the ScaledObject's KEDA cooldown, the HPA window."""

    poll_interval_s: float = Field(default=2.0, gt=0)  # PollerConfig.interval_s
    window_s: float | None = Field(default=None, gt=0)  # windowSeconds; None: metadata default
    keda_cooldown_s: float = Field(default=30.0, ge=0)  # ScaledObject cooldownPeriod (tau is the idle knob)
    hpa_scale_down_stabilization_s: float | None = Field(default=None, ge=0)  # None: HPA default
    # pickspin-adaptive: keep-warm (floor, tau) per model from its own idle gaps (pickspin_scaler.policy)
    slo_miss_gpu_s: float = Field(default=60.0, ge=0)  # one request missing its SLO, priced in GPU-seconds
    keep_warm_every_s: float = Field(default=300.0, gt=0)  # how often (floor, tau) is re-chosen
    keep_warm_gaps: int = Field(default=500, ge=1)  # idle gaps remembered per model (bounded)
    time_of_day: bool = True  # warm before slots of the day that were busy on past days


class Policies(_Strict):
    # Warm replicas per model at t=0 for the autoscaled policies (Knative initial-scale default 1, a
    # Deployment's replicas: 1); each policy then scales from there. Static uses static_replicas.
    initial_replicas: int = Field(default=1, ge=0)
    hpa: HPA = HPA()
    knative_kpa: KnativeKPA = KnativeKPA()
    keda_threshold: KedaThreshold = KedaThreshold()
    pickspin: PickSpinPolicy = PickSpinPolicy()


class Scenario(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][-a-z0-9_.]*$")
    trace: str  # azure-conv | azure-code | azure | diurnal | poisson | path to a CSV
    hours: float | None = Field(default=None, gt=0)
    rate_per_day: float | None = Field(default=None, gt=0)
    scale: TraceScale = "stretch"
    warmup_s: float = Field(default=0.0, ge=0)  # simulated before the measured window (see trace.with_warmup)
    routings: list[str] | None = None  # routing variants for this scenario (None: all of routing_variants)
    description: str = ""


class SimConfig(_Strict):
    matrix: ServiceMatrix
    cluster: Cluster
    policies: Policies = Policies()
    routing_variants: list[str] = Field(default_factory=lambda: ["keyword", "hybrid", "quality-only"])
    default_routing: str = "keyword"
    scenarios: list[Scenario] = Field(default_factory=list)
    primary_scenario: str | None = None
    references: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> SimConfig:
        names = [m.name for m in self.matrix.models]
        for n in names:
            if n not in self.cluster.models:
                raise ValueError(f"cluster.models: no entry for matrix model {n!r}")
        for n in self.cluster.models:
            if n not in names:
                raise ValueError(f"cluster.models.{n}: not a model of the matrix")
        known = ("keyword", "hybrid", "semantic", "quality-only")
        for i, v in enumerate(self.routing_variants):
            if v.removesuffix("+decay").removesuffix("+aware").partition("@")[0] not in known:
                raise ValueError(f"routing_variants[{i}]: unknown {v!r} (have {list(known)}, each optionally "
                                 "@<profile> and +decay or +aware)")
        if self.default_routing not in self.routing_variants:
            raise ValueError(f"default_routing: {self.default_routing!r} is not in routing_variants")
        for i, sc in enumerate(self.scenarios):
            for r in sc.routings or []:
                if r not in self.routing_variants:
                    raise ValueError(f"scenarios[{i}].routings: {r!r} is not in routing_variants")
        if self.primary_scenario is not None and self.primary_scenario not in {s.name for s in self.scenarios}:
            raise ValueError(f"primary_scenario: {self.primary_scenario!r} is not a scenario")
        for name, mc in self.cluster.models.items():
            for key, ref in mc.sources.items():
                bad = [k for k in reference_keys(ref) if k not in self.references]
                if bad or not reference_keys(ref):
                    raise ValueError(f"cluster.models.{name}.sources.{key}: unknown reference in {ref!r}")
        return self

    def usd_per_replica_second(self, model: str) -> float:
        return self.cluster.models[model].gpus * self.cluster.gpu.usd_per_gpu_second


def reference_keys(source: str) -> list[str]:
    """The reference keys a source string cites: ``"a + b: note"`` -> ``["a", "b"]``."""
    head = source.split(":", 1)[0]
    return [k.strip() for k in head.split("+") if k.strip()]


def parse_sim_config(data: Mapping[str, Any], source: str = "<dict>") -> SimConfig:
    try:
        return SimConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def load_sim_config(path: str | Path | None = None) -> SimConfig:
    p = Path(path) if path else DEFAULT_SIM_CONFIG
    return parse_sim_config(read_yaml_mapping(p, "sim config"), str(p))


def kv_bound_batch(gpu_mem_gb: float, gpus: int, weights_gb: float, kv_bytes_per_token: float,
                   tokens_per_seq: int = 2048, gpu_memory_utilization: float = 0.9) -> int:
    """Sequences of ``tokens_per_seq`` that fit the KV cache vLLM leaves after the weights."""
    free = gpu_mem_gb * gpus * gpu_memory_utilization - weights_gb
    return max(1, math.floor(free * 1e9 / (kv_bytes_per_token * tokens_per_seq)))
