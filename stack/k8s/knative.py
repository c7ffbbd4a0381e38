"""Build the Kubernetes objects of one PickSpin model backend: a Knative Service scaled by KEDA.

One :class:`BackendSpec` describes a model backend on a cluster (the service-matrix fields plus
image, resources and storage). From it this module builds

* the Knative Service (``serving.knative.dev/v1``), whose revision template carries the
  autoscaler-keda annotations: class ``hpa.autoscaling.knative.dev``, ``min-scale: "0"``,
  ``max-scale`` and ``autoscaling.knative.dev/scaled-object-override`` -- a ScaledObject in JSON
  with one ``external-push`` trigger pointing at the project's scaler;
* the trigger metadata (the keys :mod:`pickspin_scaler.metadata` parses);
* the router's service-matrix entry for the model (``models[]`` of ``pickspin.config``);
* the ``kn service create/update`` command line that does the same;
* :func:`autoscaler_keda_scaled_object`: the ScaledObject autoscaler-keda derives from a revision,
  so tests and ``pickspin backends status`` can show and validate what the cluster will run.

The Helm chart renders the same objects from values; tests compare the two.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pickspin.contract import scaler_metadata

# -- names ---------------------------------------------------------------------------------
KSVC_GROUP = "serving.knative.dev"
KSVC_VERSION = "v1"
KSVC_PLURAL = "services"
KEDA_GROUP = "keda.sh"
KEDA_VERSION = "v1alpha1"

A_CLASS = "autoscaling.knative.dev/class"
A_MIN = "autoscaling.knative.dev/min-scale"
A_MAX = "autoscaling.knative.dev/max-scale"
A_TARGET = "autoscaling.knative.dev/target"
A_METRIC = "autoscaling.knative.dev/metric"
A_OVERRIDE = "autoscaling.knative.dev/scaled-object-override"
A_AUTOCREATE = "autoscaling.knative.dev/scaled-object-auto-create"
HPA_CLASS = "hpa.autoscaling.knative.dev"
KPA_CLASS = "kpa.autoscaling.knative.dev"
L_VISIBILITY = "networking.knative.dev/visibility"
A_PROGRESS_DEADLINE = "serving.knative.dev/progress-deadline"  # knative/serving pkg/apis/serving/register.go

L_PART_OF = "app.kubernetes.io/part-of"
L_COMPONENT = "app.kubernetes.io/component"
L_MANAGED_BY = "app.kubernetes.io/managed-by"
L_MODEL = "pickspin.dev/model"
L_TIER = "pickspin.dev/tier"
A_BACKEND_KIND = "pickspin.dev/backend-kind"
A_SERVED_NAME = "pickspin.dev/served-model-name"

#: Knative feature flags (ConfigMap ``config-features``) the backends need.
FEATURE_FLAGS = {
    "kubernetes.podspec-persistent-volume-claim": "enabled",  # model weights on a PVC
}

DEFAULT_SCALER_ADDRESS = "pickspin-scaler.pickspin.svc.cluster.local:6000"
DEFAULT_PROMETHEUS = "http://prometheus-server.monitoring.svc.cluster.local"

#: Container securityContext meeting the ``restricted`` Pod Security level (the chart's backendDefaults).
RESTRICTED_SECURITY_CONTEXT: Mapping[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@dataclass(frozen=True)
class KedaSettings:
    """ScaledObject knobs shared by all backends (``keda:`` in the chart's values)."""

    polling_interval: int = 5  # s between KEDA's GetMetrics calls (external-push pushes activity anyway)
    cooldown_period: int = 30  # s after the scaler last said "active" before 1 -> 0 (tau lives in the scaler)
    fallback_failure_threshold: int = 3  # failed metric reads before KEDA uses the fallback replicas
    fallback_replicas: int = 1
    scale_down_stabilization_s: int = 60


@dataclass(frozen=True)
class BackendSpec:
    """One model backend on the cluster: service-matrix fields + what the pod needs."""

    # service matrix
    model: str
    name: str  # Knative Service name = the backend name in the router's config
    tier: str = "small"
    capability: Mapping[str, float] = field(default_factory=lambda: {"low": 0.5, "medium": 0.5, "high": 0.5})
    cost: Mapping[str, float] = field(default_factory=lambda: {"per_1k_tokens": 0.05})
    kind: str = "openai"  # vllm | tgi | trtllm | openai (llama.cpp speaks plain OpenAI)
    served_model_name: str = ""
    concurrency: int = 4  # c: containerConcurrency and the scaler's per-replica target
    warm_pool: int = 0  # resolved floor (the tier default applied by the caller)
    max_replicas: int = 4
    idle_seconds: float = 300.0  # tau
    keep_warm: str = "fixed"  # fixed | adaptive (the scaler learns tau and a time-of-day floor)
    slo_miss_gpu_s: float = 60.0  # adaptive keep-warm: one SLO miss in GPU-seconds
    expected_latency_s: float = 1.0
    simulated: bool = False
    # pod
    image: str = ""
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = 8000
    health_path: str = "/health"
    cpu: str = "1"
    memory: str = "2Gi"
    cpu_limit: str | None = None
    memory_limit: str | None = None
    gpus: int = 0
    model_claim: str | None = None  # PVC with the weights (Knative flag kubernetes.podspec-persistent-volume-claim)
    model_mount: str = "/models"
    shm_size: str | None = None  # /dev/shm for vLLM tensor parallelism
    load_seconds: int = 300  # model load time: KEDA initialCooldownPeriod
    image_pull_seconds: int = 120  # worst-case image pull; progress deadline = pull + load + margin
    progress_margin_seconds: int = 120
    security_context: Mapping[str, Any] = field(default_factory=lambda: dict(RESTRICTED_SECURITY_CONTEXT))
    timeout_seconds: int = 600  # <= Knative max-revision-timeout-seconds (600 by default)
    response_start_timeout_seconds: int = 540
    visibility: str = "cluster-local"
    # scaler
    scaler_address: str = DEFAULT_SCALER_ADDRESS
    prometheus_address: str | None = None  # None: the scaler's --prometheus default
    window_seconds: float | None = None
    metrics_namespace: str | None = None  # namespace label of the router's series (the scaler's PromQL filter)
    scaler_auth_ref: str | None = None  # TriggerAuthentication with the scaler's TLS CA (chart: scaler.tls)
    keda: KedaSettings = KedaSettings()

    def served(self) -> str:
        return self.served_model_name or self.model


# -- scaler trigger ------------------------------------------------------------------------
def trigger_metadata(spec: BackendSpec) -> dict[str, str]:
    """The ``external-push`` trigger's metadata; every value a string, keys as the scaler reads them."""
    md = {"scalerAddress": spec.scaler_address,
          **scaler_metadata(model=spec.model, tier=spec.tier, concurrency=spec.concurrency, warm_pool=spec.warm_pool,
                            idle_seconds=spec.idle_seconds, window_seconds=spec.window_seconds,
                            prometheus_address=spec.prometheus_address,
                            metrics_namespace=spec.metrics_namespace, keep_warm=spec.keep_warm,
                            load_seconds=spec.load_seconds, gpus=max(1, spec.gpus),
                            slo_miss_gpu_s=spec.slo_miss_gpu_s)}
    return md


def scaled_object_override(spec: BackendSpec) -> dict[str, Any]:
    """The ScaledObject autoscaler-keda should create for each revision of this backend.

    autoscaler-keda fills in name, namespace, owner, labels, annotations, ``scaleTargetRef.name``
    (``<revision>-deployment``), ``advanced.horizontalPodAutoscalerConfig.name`` and
    ``maxReplicaCount`` (from ``max-scale``); everything else is taken as written. It sets the HPA
    config's name without checking that ``advanced.horizontalPodAutoscalerConfig`` exists, so the
    override always carries that object.
    """
    k = spec.keda
    return {
        "apiVersion": f"{KEDA_GROUP}/{KEDA_VERSION}",
        "kind": "ScaledObject",
        "spec": {
            "minReplicaCount": 0,
            "maxReplicaCount": spec.max_replicas,
            "pollingInterval": k.polling_interval,
            "cooldownPeriod": k.cooldown_period,
            "initialCooldownPeriod": int(spec.load_seconds),
            "fallback": {"failureThreshold": k.fallback_failure_threshold,
                         "replicas": min(k.fallback_replicas, spec.max_replicas)},
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": k.scale_down_stabilization_s}},
                },
            },
            "triggers": [_trigger(spec)],
        },
    }


def _trigger(spec: BackendSpec) -> dict[str, Any]:
    t: dict[str, Any] = {"type": "external-push", "metricType": "AverageValue", "metadata": trigger_metadata(spec)}
    if spec.scaler_auth_ref:
        t["authenticationRef"] = {"name": spec.scaler_auth_ref}
    return t


def override_json(spec: BackendSpec) -> str:
    return json.dumps(scaled_object_override(spec), sort_keys=True, separators=(",", ":"))


# -- Knative Service -----------------------------------------------------------------------
def _resources(spec: BackendSpec) -> dict[str, Any]:
    requests: dict[str, Any] = {"cpu": spec.cpu, "memory": spec.memory}
    limits: dict[str, Any] = {"memory": spec.memory_limit or spec.memory}
    if spec.cpu_limit:
        limits["cpu"] = spec.cpu_limit
    if spec.gpus:
        limits["nvidia.com/gpu"] = str(spec.gpus)
    return {"requests": requests, "limits": limits}


def progress_deadline_s(spec: BackendSpec) -> int:
    """Image pull + model load + margin: Knative's default (600 s) would fail a slow first start."""
    return int(spec.image_pull_seconds) + int(spec.load_seconds) + int(spec.progress_margin_seconds)


def revision_annotations(spec: BackendSpec) -> dict[str, str]:
    return {
        A_CLASS: HPA_CLASS,
        A_MIN: "0",
        A_MAX: str(spec.max_replicas),
        A_OVERRIDE: override_json(spec),
        A_PROGRESS_DEADLINE: f"{progress_deadline_s(spec)}s",
    }


def knative_service(spec: BackendSpec, namespace: str | None = None, *,
                    extra_labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The Knative Service of one backend (scale-to-zero through autoscaler-keda and the scaler)."""
    labels = {L_PART_OF: "pickspin", L_COMPONENT: "backend", L_MODEL: spec.model, L_TIER: spec.tier,
              L_VISIBILITY: spec.visibility, **(extra_labels or {})}
    container: dict[str, Any] = {
        "name": "model",
        "image": spec.image,
        "ports": [{"name": "http1", "containerPort": spec.port}],
        "readinessProbe": {"httpGet": {"path": spec.health_path}, "periodSeconds": 5,
                           "timeoutSeconds": 3, "failureThreshold": 3},
        # liveness starts once the startup probe passed: it allows load_seconds + margin for the model to load
        "startupProbe": {"httpGet": {"path": spec.health_path}, "periodSeconds": 10, "timeoutSeconds": 3,
                         "failureThreshold": 1 + (int(spec.load_seconds) + int(spec.progress_margin_seconds)) // 10},
        "livenessProbe": {"httpGet": {"path": spec.health_path}, "periodSeconds": 15,
                          "timeoutSeconds": 5, "failureThreshold": 4},
        "resources": _resources(spec),
    }
    if spec.security_context:
        container["securityContext"] = dict(spec.security_context)
    if spec.command:
        container["command"] = list(spec.command)
    if spec.args:
        container["args"] = list(spec.args)
    if spec.env:
        container["env"] = [{"name": k, "value": str(v)} for k, v in spec.env.items()]
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if spec.model_claim:
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": spec.model_claim, "readOnly": True}})
        mounts.append({"name": "models", "mountPath": spec.model_mount, "readOnly": True})
    if spec.shm_size:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    if mounts:
        container["volumeMounts"] = mounts
    rev_spec: dict[str, Any] = {
        "containerConcurrency": spec.concurrency,
        "timeoutSeconds": spec.timeout_seconds,
        "responseStartTimeoutSeconds": spec.response_start_timeout_seconds,
        "containers": [container],
    }
    if volumes:
        rev_spec["volumes"] = volumes
    meta: dict[str, Any] = {
        "name": spec.name,
        "labels": labels,
        "annotations": {A_BACKEND_KIND: spec.kind, A_SERVED_NAME: spec.served()},
    }
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": f"{KSVC_GROUP}/{KSVC_VERSION}",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "template": {
                "metadata": {"labels": {L_PART_OF: "pickspin", L_MODEL: spec.model},
                             "annotations": revision_annotations(spec)},
                "spec": rev_spec,
            },
        },
    }


def cluster_url(name: str, namespace: str) -> str:
    """The cluster-local URL of a Knative Service (through the activator when scaled to zero)."""
    return f"http://{name}.{namespace}.svc.cluster.local"


def config_model_entry(spec: BackendSpec, namespace: str) -> dict[str, Any]:
    """The backend's model in the router's service matrix (``models[]``), as the chart renders it."""
    return {
        "name": spec.model,
        "tier": spec.tier,
        "capability": dict(spec.capability),
        "cost": dict(spec.cost),
        "scaling": {"concurrency": spec.concurrency, "warm_pool": spec.warm_pool,
                    "max_replicas": spec.max_replicas, "idle_seconds": spec.idle_seconds},
        "backends": [{
            "name": spec.name,
            "kind": spec.kind,
            "url": cluster_url(spec.name, namespace),
            "served_model_name": spec.served(),
            "max_concurrency": spec.concurrency * spec.max_replicas,
            "health_path": spec.health_path,
            "simulated": spec.simulated,
            "expected_latency_s": spec.expected_latency_s,
            # Pick knows what Spin is doing: a backend believed at zero costs its load time in T
            "cold_start_s": spec.load_seconds,
        }],
    }


# -- what autoscaler-keda makes of a revision ---------------------------------------------
def autoscaler_keda_scaled_object(ksvc: Mapping[str, Any], revision: str, namespace: str) -> dict[str, Any]:
    """The ScaledObject autoscaler-keda creates for ``revision`` of ``ksvc`` from its override annotation.

    Mirrors the documented behaviour of knative-extensions/autoscaler-keda (override path): the
    override JSON is taken as the object, then name/namespace = the revision's PodAutoscaler,
    ``scaleTargetRef.name`` = ``<revision>-deployment``, the HPA is named after the revision and
    ``maxReplicaCount`` comes from ``max-scale`` (unbounded when absent or 0).
    """
    tmpl = ksvc["spec"]["template"].get("metadata", {})
    anns: Mapping[str, str] = tmpl.get("annotations", {})
    if A_OVERRIDE not in anns:
        raise ValueError(f"{ksvc['metadata']['name']}: no {A_OVERRIDE} annotation")
    so: dict[str, Any] = json.loads(anns[A_OVERRIDE])
    so.setdefault("apiVersion", f"{KEDA_GROUP}/{KEDA_VERSION}")
    so.setdefault("kind", "ScaledObject")
    so["metadata"] = {"name": revision, "namespace": namespace, "annotations": dict(anns),
                      "labels": dict(tmpl.get("labels", {}))}
    spec = so.setdefault("spec", {})
    spec.setdefault("scaleTargetRef", {})["name"] = f"{revision}-deployment"
    adv = spec.setdefault("advanced", {"horizontalPodAutoscalerConfig": {}})
    if "horizontalPodAutoscalerConfig" not in adv:
        # autoscaler-keda would dereference a nil pointer here; refuse instead.
        raise ValueError("override has spec.advanced without horizontalPodAutoscalerConfig")
    adv["horizontalPodAutoscalerConfig"]["name"] = revision
    max_scale = int(anns.get(A_MAX, "0") or 0)
    spec["maxReplicaCount"] = max_scale if max_scale > 0 else 2**31 - 1
    return so


# -- kn ------------------------------------------------------------------------------------
def kn_command(spec: BackendSpec, namespace: str, *, action: str = "create") -> list[str]:
    """``kn service create|update`` with the same image, scaling annotations and limits."""
    if action not in ("create", "update"):
        raise ValueError("action must be create or update")
    cmd = ["kn", "service", action, spec.name, "--namespace", namespace, "--image", spec.image,
           "--port", f"http1:{spec.port}", "--concurrency-limit", str(spec.concurrency),
           "--scale-min", "0", "--scale-max", str(spec.max_replicas)]
    if action == "create":
        cmd += ["--cluster-local"]
    # --arg=VALUE: a value starting with "-" would otherwise be read as a kn flag
    if spec.command:
        cmd += [f"--cmd={spec.command[0]}"] + [f"--arg={a}" for a in spec.command[1:]]
    cmd += [f"--arg={a}" for a in spec.args]
    for k, v in spec.env.items():
        cmd += ["--env", f"{k}={v}"]
    res = _resources(spec)
    cmd += ["--request", ",".join(f"{k}={v}" for k, v in res["requests"].items()),
            "--limit", ",".join(f"{k}={v}" for k, v in res["limits"].items())]
    for k, v in {L_MODEL: spec.model, L_TIER: spec.tier, L_PART_OF: "pickspin", L_COMPONENT: "backend"}.items():
        cmd += ["--label-service", f"{k}={v}"]
    cmd += ["--annotation-service", f"{A_BACKEND_KIND}={spec.kind}",
            "--annotation-service", f"{A_SERVED_NAME}={spec.served()}"]
    # scale bounds go through --scale-min/--scale-max; the class and the override as revision annotations
    for k, v in revision_annotations(spec).items():
        if k not in (A_MIN, A_MAX):
            cmd += ["--annotation-revision", f"{k}={v}"]
    if spec.model_claim:
        cmd += ["--mount", f"{spec.model_mount}=pvc:{spec.model_claim}"]
    cmd += ["--probe-readiness", f"http::{spec.port}:{spec.health_path}",
            "--timeout", str(spec.timeout_seconds)]
    return cmd


def kn_command_str(spec: BackendSpec, namespace: str, *, action: str = "create") -> str:
    return " ".join(shlex.quote(p) for p in kn_command(spec, namespace, action=action))


def kn_gaps(spec: BackendSpec) -> list[str]:
    """Settings of the Knative Service that the kn command line cannot express."""
    gaps = [f"responseStartTimeoutSeconds={spec.response_start_timeout_seconds} (no kn flag)"]
    if spec.model_claim:
        gaps.append("the PVC mount read-only (kn mounts it read-write, which needs "
                    "kubernetes.podspec-persistent-volume-write)")
    if spec.shm_size:
        gaps.append(f"the memory-backed /dev/shm emptyDir of {spec.shm_size}")
    return gaps


# -- reading back --------------------------------------------------------------------------
def override_of(ksvc: Mapping[str, Any]) -> dict[str, Any] | None:
    anns = ksvc.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {}) or {}
    raw = anns.get(A_OVERRIDE)
    return json.loads(raw) if raw else None


def trigger_metadata_of(ksvc: Mapping[str, Any]) -> dict[str, str] | None:
    """The external-push trigger metadata inside a Knative Service's override annotation."""
    so = override_of(ksvc)
    if not so:
        return None
    for t in so.get("spec", {}).get("triggers", []):
        if t.get("type") in ("external-push", "external"):
            return dict(t.get("metadata", {}))
    return None


def spec_from_ksvc(ksvc: Mapping[str, Any]) -> BackendSpec:
    """Rebuild a :class:`BackendSpec` from a Knative Service made by this module (or the chart)."""
    meta = ksvc["metadata"]
    labels = meta.get("labels", {}) or {}
    anns = meta.get("annotations", {}) or {}
    rev = ksvc["spec"]["template"]
    c = rev["spec"]["containers"][0]
    md = trigger_metadata_of(ksvc) or {}
    so = override_of(ksvc) or {"spec": {}}
    res = c.get("resources", {})
    req, lim = res.get("requests", {}), res.get("limits", {})
    env = {e["name"]: e.get("value", "") for e in c.get("env", []) if "value" in e}
    claim = None
    mount = "/models"
    shm = None
    for v in rev["spec"].get("volumes", []):
        if "persistentVolumeClaim" in v:
            claim = v["persistentVolumeClaim"].get("claimName")
            for m in c.get("volumeMounts", []):
                if m["name"] == v["name"]:
                    mount = m["mountPath"]
        if v.get("emptyDir", {}).get("medium") == "Memory":
            shm = v["emptyDir"].get("sizeLimit")
    s = so["spec"]
    fb = s.get("fallback", {})
    beh = s.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior", {})
    keda = KedaSettings(
        polling_interval=int(s.get("pollingInterval", KedaSettings.polling_interval)),
        cooldown_period=int(s.get("cooldownPeriod", KedaSettings.cooldown_period)),
        fallback_failure_threshold=int(fb.get("failureThreshold", KedaSettings.fallback_failure_threshold)),
        fallback_replicas=int(fb.get("replicas", KedaSettings.fallback_replicas)),
        scale_down_stabilization_s=int(beh.get("scaleDown", {}).get("stabilizationWindowSeconds",
                                                                  KedaSettings.scale_down_stabilization_s)),
    )
    ports = c.get("ports") or [{"containerPort": 8080}]
    load = int(s.get("initialCooldownPeriod", 300))
    deadline = str(rev.get("metadata", {}).get("annotations", {}).get(A_PROGRESS_DEADLINE, "")).removesuffix("s")
    margin = BackendSpec.progress_margin_seconds
    pull = int(deadline) - load - margin if deadline.isdigit() else BackendSpec.image_pull_seconds
    gpus = lim.get("nvidia.com/gpu")
    return BackendSpec(
        model=md.get("model") or labels.get(L_MODEL, meta["name"]),
        name=meta["name"],
        tier=md.get("tier") or labels.get(L_TIER, "small"),
        kind=anns.get(A_BACKEND_KIND, "openai"),
        served_model_name=anns.get(A_SERVED_NAME, ""),
        concurrency=int(rev["spec"].get("containerConcurrency") or md.get("concurrency") or 4),
        warm_pool=int(md.get("warmPool", "0")),
        max_replicas=int(rev.get("metadata", {}).get("annotations", {}).get(A_MAX, "4")),
        idle_seconds=float(md.get("idleSeconds", "300")),
        keep_warm=md.get("keepWarm", "fixed"),
        slo_miss_gpu_s=float(md.get("sloMissGpuSeconds", "60")),
        image=c.get("image", ""),
        command=tuple(c.get("command", [])),
        args=tuple(c.get("args", [])),
        env=env,
        port=int(ports[0]["containerPort"]),
        health_path=c.get("readinessProbe", {}).get("httpGet", {}).get("path", "/health"),
        cpu=str(req.get("cpu", "1")),
        memory=str(req.get("memory", "2Gi")),
        cpu_limit=str(lim["cpu"]) if "cpu" in lim else None,
        memory_limit=str(lim["memory"]) if "memory" in lim else None,
        gpus=int(gpus) if gpus is not None else 0,
        model_claim=claim,
        model_mount=mount,
        shm_size=shm,
        load_seconds=load,
        image_pull_seconds=pull,
        security_context=dict(c.get("securityContext") or {}),
        timeout_seconds=int(rev["spec"].get("timeoutSeconds", 600)),
        response_start_timeout_seconds=int(rev["spec"].get("responseStartTimeoutSeconds", 540)),
        visibility=labels.get(L_VISIBILITY, "cluster-local"),
        scaler_address=md.get("scalerAddress", DEFAULT_SCALER_ADDRESS),
        prometheus_address=md.get("prometheusAddress"),
        window_seconds=float(md["windowSeconds"]) if "windowSeconds" in md else None,
        metrics_namespace=md.get("metricsNamespace"),
        scaler_auth_ref=next((t.get("authenticationRef", {}).get("name") for t in s.get("triggers", [])
                              if t.get("type") in ("external-push", "external")), None),
        keda=keda,
    )


def check_spec(spec: BackendSpec) -> list[str]:
    """Problems a cluster would reject or that break scaling, as ``field: message`` lines."""
    errs: list[str] = []
    import re

    # <= 54: the revision "<name>-00001" must stay a 63-character label (same limit as the chart's schema)
    if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", spec.name) or len(spec.name) > 54:
        errs.append("name: must be a DNS-1035 label (lower case, starts with a letter, <= 54 chars)")
    label = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
    if len(spec.model) > 63 or not re.fullmatch(label, spec.model):
        errs.append("model: must be a valid label value (<= 63 chars: letters, digits, '-', '_', '.')")
    if not spec.image:
        errs.append("image: required")
    if spec.concurrency < 1:
        errs.append("concurrency: must be >= 1")
    if spec.max_replicas < 1:
        errs.append("max_replicas: must be >= 1")
    if spec.warm_pool > spec.max_replicas:
        errs.append("warm_pool: must be <= max_replicas")
    if spec.response_start_timeout_seconds > spec.timeout_seconds:
        errs.append("response_start_timeout_seconds: must be <= timeout_seconds")
    cold = int(spec.image_pull_seconds) + int(spec.load_seconds)
    if cold >= spec.response_start_timeout_seconds:
        errs.append(f"response_start_timeout_seconds: must exceed image_pull_seconds + load_seconds = {cold} "
                    "(a cold start would always time out)")
    if spec.tier not in ("small", "medium", "large"):
        errs.append("tier: must be small, medium or large")
    if not math.isfinite(spec.idle_seconds) or spec.idle_seconds < 0:
        errs.append("idle_seconds: must be a finite number >= 0")
    if spec.gpus < 0:
        errs.append("gpus: must be >= 0")
    return errs
