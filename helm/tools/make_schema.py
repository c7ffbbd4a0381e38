"""Write helm/pickspin/values.schema.json (run after changing the chart's values; a test checks it is current).

The schema is strict: every object rejects unknown keys (``additionalProperties: false``) except
pass-through Kubernetes fields (resources, tolerations, node selectors, annotations, env maps).
Each property has a description, so helm's error names the key and says what it is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "pickspin" / "values.schema.json"

DNS1035 = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS1123 = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUANTITY = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"


def obj(props: dict[str, Any], required: list[str] | None = None, desc: str = "") -> dict[str, Any]:
    o: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": props}
    if required:
        o["required"] = required
    if desc:
        o["description"] = desc
    return o


def s(desc: str, **kw: Any) -> dict[str, Any]:
    return {"type": "string", "description": desc, **kw}


def i(desc: str, minimum: int | None = 0, **kw: Any) -> dict[str, Any]:
    o: dict[str, Any] = {"type": "integer", "description": desc, **kw}
    if minimum is not None:
        o["minimum"] = minimum
    return o


def n(desc: str, **kw: Any) -> dict[str, Any]:
    return {"type": "number", "description": desc, **kw}


def b(desc: str) -> dict[str, Any]:
    return {"type": "boolean", "description": desc}


def smap(desc: str) -> dict[str, Any]:
    return {"type": "object", "description": desc, "additionalProperties": {"type": "string"}}


def image(desc: str) -> dict[str, Any]:
    return obj({
        "repository": s("image repository", minLength=1),
        "tag": s("image tag; empty = the chart's appVersion"),
        "pullPolicy": s("imagePullPolicy", enum=["Always", "IfNotPresent", "Never"]),
    }, ["repository"], desc)


QTY = {"anyOf": [{"type": "string", "pattern": QUANTITY}, {"type": "number", "minimum": 0}]}
RESOURCES = obj({
    "requests": {"type": "object", "description": "resource requests", "additionalProperties": QTY},
    "limits": {"type": "object", "description": "resource limits", "additionalProperties": QTY},
}, desc="container resources (requests/limits)")
ENV = {"type": "object", "description": "extra environment variables NAME: value",
       "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
       "additionalProperties": {"type": ["string", "number", "boolean"]}}


def ksvc_scale(component: str, min_default: int) -> dict[str, Any]:
    return {
        "minScale": i(f"{component}: autoscaling.knative.dev/min-scale (default {min_default})"),
        "maxScale": i(f"{component}: autoscaling.knative.dev/max-scale", minimum=1),
        "target": i(f"{component}: KPA concurrency target per replica", minimum=1),
        "containerConcurrency": i(f"{component}: hard per-replica concurrency limit (0 = none)"),
    }


SECURITY_CONTEXT = {"type": "object", "description": "container securityContext (Kubernetes fields, passed through)"}
PDB = obj({"enabled": b("create a PodDisruptionBudget"),
           "maxUnavailable": i("PDB maxUnavailable", minimum=1),
           "minAvailable": i("PDB minAvailable", minimum=1)}, desc="PodDisruptionBudget")


UNIT = {"type": "number", "minimum": 0, "maximum": 1}
MODEL_BACKEND = obj({
    "name": s("Knative Service name = the backend's name in the router config (DNS-1035 label)",
              pattern=DNS1035, maxLength=54),
    "kind": s("backend API flavour", enum=["vllm", "tgi", "trtllm", "openai"]),
    "served_model_name": s("model name the server expects in requests", minLength=1),
    "max_concurrency": i("router-side limit of requests in flight to this backend (default concurrency x max_replicas)",
                         minimum=1),
    "health_path": s("readiness path (default /health)", pattern="^/"),
    "simulated": b("true for a simulated backend (shown in /v1/models)"),
    "expected_latency_s": n("latency prior until the router has observations (s)", exclusiveMinimum=0),
    "image": s("container image", minLength=1),
    "image_pull_policy": s("imagePullPolicy", enum=["Always", "IfNotPresent", "Never"]),
    "command": {"type": "array", "items": {"type": "string"}, "description": "container command"},
    "args": {"type": "array", "items": {"type": "string"},
             "description": "container args (strings: quote numbers, e.g. \"2\")"},
    "env": ENV,
    "port": i("container port the server listens on (Knative sets $PORT to it)", minimum=1, maximum=65535),
    "resources": RESOURCES,
    "gpus": i("nvidia.com/gpu limit"),
    "model_volume": obj({
        "claim_name": s("PersistentVolumeClaim with the weights", pattern=DNS1123),
        "mount_path": s("where the weights are mounted (default /models)", pattern="^/"),
    }, ["claim_name"], "model weights on a PVC, mounted read-only (Knative flag kubernetes.podspec-persistent-volume-claim)"),
    "shm_size": {**QTY, "description": "size of a memory-backed /dev/shm (vLLM tensor parallelism)"},
    "load_seconds": i("model load time: KEDA initialCooldownPeriod (s)"),
    "image_pull_seconds": i("worst-case image pull time (s): progress deadline and timeout chain"),
    "progress_margin_seconds": i("serving.knative.dev/progress-deadline = image pull + load + this (s)"),
    "min_generation_seconds": i("time a request must have left after a cold start (timeout chain check, s)"),
    "security_context": SECURITY_CONTEXT,
    "timeout_seconds": i("Knative timeoutSeconds: longest request (s)", minimum=1),
    "response_start_timeout_seconds": i("Knative responseStartTimeoutSeconds: cold start + queue + prefill (s)",
                                        minimum=1),
    "node_selector": smap("nodeSelector (Knative flag kubernetes.podspec-nodeselector)"),
    "tolerations": {"type": "array", "items": {"type": "object"},
                    "description": "tolerations (Knative flag kubernetes.podspec-tolerations)"},
    "runtime_class_name": s("runtimeClassName (Knative flag kubernetes.podspec-runtimeclassname)"),
    "rollout": obj({
        "pin_revision": s("revision that keeps 100% of the traffic while the new one is smoke-tested; "
                          "empty = the latest revision serves (promote)", pattern=f"^({DNS1123[1:-1]})?$"),
        "candidate_tag": s("tag of the new revision (URL http://<tag>-<backend>...)", pattern=DNS1035),
    }, desc="roll out by tag: pin the serving revision, smoke-test the new one at 0%, then promote"),
}, ["name", "image"], "the model's backend: a Knative Service")

MODEL = obj({
    "name": s("model name, as clients request it and as the scaler labels it", pattern=r"^[A-Za-z0-9][-A-Za-z0-9._]*$",
              maxLength=63),
    "tier": s("size tier", enum=["small", "medium", "large"]),
    "capability": obj({"low": UNIT, "medium": UNIT, "high": UNIT}, ["low", "medium", "high"],
                      "share of each complexity class the model handles well, 0..1"),
    "cost": {**obj({"per_1k_tokens": {"type": "number", "minimum": 0},
                    "per_gpu_second": {"type": "number", "minimum": 0}},
                   desc="exactly one of per_1k_tokens or per_gpu_second"),
             "minProperties": 1, "maxProperties": 1},
    "scaling": obj({
        "concurrency": i("c: requests one replica serves at once (containerConcurrency and the scaler's target)",
                         minimum=1),
        "warm_pool": {"type": ["integer", "null"], "minimum": 0,
                      "description": "replicas kept warm (null: the tier's default)"},
        "max_replicas": i("max-scale", minimum=1),
        "idle_seconds": n("tau: scale to zero after this long without requests (s)", minimum=0),
        "keep_warm": {"type": "string", "enum": ["fixed", "adaptive"],
                      "description": "fixed: tau as set; adaptive: the scaler learns tau (and a time-of-day warm "
                                     "floor) from this model's idle gaps; the warm pool stays a lower bound"},
        "slo_miss_gpu_s": n("one request missing its SLO, priced in GPU-seconds (adaptive keep-warm)", minimum=0),
    }, desc="Spin parameters"),
    "backend": MODEL_BACKEND,
}, ["name", "tier", "capability", "cost", "backend"], "one model = one Knative Service")

SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "pickspin chart values",
    **obj({
        "nameOverride": s("override the chart name in resource names"),
        "fullnameOverride": s("override the release-derived prefix of resource names", maxLength=40),
        "clusterDomain": s("cluster DNS domain", minLength=1),
        "global": {"type": "object", "description": "Helm global values (unused)"},
        "router": obj({
            "image": image("router image"),
            "workers": i("gunicorn workers", minimum=1),
            "threads": i("gthread threads per worker", minimum=1),
            **ksvc_scale("router", 1),
            "containerConcurrency": {"type": ["integer", "null"], "minimum": 1,
                                     "description": "router: hard per-pod request limit, 1..workers x threads "
                                                    "(null: workers x (threads - 1))"},
            "allowUnauthenticatedExternal": b("allow visibility external without an API-key Secret"),
            "pdb": PDB,
            "antiAffinity": b("preferred pod anti-affinity (Knative flag kubernetes.podspec-affinity)"),
            "timeoutSeconds": i("Knative timeoutSeconds", minimum=1),
            "responseStartTimeoutSeconds": i("Knative responseStartTimeoutSeconds", minimum=1),
            "visibility": s("external or cluster-local", enum=["external", "cluster-local"]),
            "resources": RESOURCES,
            "apiKeysSecret": obj({"name": s("Secret name; empty = auth off"), "key": s("key in the Secret")},
                                 desc="Secret with comma-separated API keys"),
            "podAnnotations": smap("extra revision annotations"),
            "extraEnv": ENV,
            "settings": {"type": "object", "description": "the service matrix's router block (RouterSettings); "
                                                          "validated by pickspin.config when the router starts"},
        }, desc="the router Knative Service"),
        "routing": obj({
            "mode": s("classifier", enum=["keyword", "semantic", "hybrid"]),
            "default_profile": s("profile used when a request names none", minLength=1),
            "keyword": {"type": "object", "description": "keyword classifier rules (KeywordRules)"},
            "scorer": obj({"url": s("scorer URL; empty = the chart's scorer when enabled", pattern="^(https?://.*)?$"),
                           "model_dir": s("in-process model dir (unused when url is set)"),
                           "timeout_s": n("classify timeout (s)", exclusiveMinimum=0)}, desc="scorer client"),
        }, desc="the service matrix's routing block"),
        "profiles": {"type": "object", "description": "operator profiles {name: {alpha, lambda, mu}}",
                     "additionalProperties": obj({"alpha": n("relevance weight", minimum=0),
                                                  "lambda": n("latency weight", minimum=0),
                                                  "mu": n("cost weight", minimum=0)}, ["alpha", "lambda", "mu"])},
        "tiers": {"type": "object", "description": "warm-pool defaults per tier",
                  "propertyNames": {"enum": ["small", "medium", "large"]},
                  "additionalProperties": obj({"warm_pool": i("replicas kept warm")}, ["warm_pool"])},
        "scorer": obj({
            "enabled": b("deploy the scorer Knative Service"),
            "image": image("scorer image"),
            **ksvc_scale("scorer", 0),
            "timeoutSeconds": i("Knative timeoutSeconds", minimum=1),
            "httpThreads": i("gthread threads", minimum=1),
            "resources": RESOURCES,
            "podAnnotations": smap("extra revision annotations"),
            "extraEnv": ENV,
        }, desc="the scorer Knative Service"),
        "scaler": obj({
            "enabled": b("deploy the KEDA external scaler"),
            "image": image("scaler image"),
            "replicas": i("Deployment replicas (>= 2 for availability)", minimum=1),
            "pdb": PDB,
            "antiAffinity": s("pod anti-affinity on hostname", enum=["soft", "hard", "none"]),
            "tls": obj({"secretName": s("Secret with tls.crt, tls.key, ca.crt; empty = plaintext gRPC"),
                        "clientAuth": b("require client certificates (mutual TLS) signed by ca.crt")},
                       desc="TLS between KEDA and the scaler"),
            "revisionReachability": b("answer 0/inactive for revisions whose PodAutoscaler is Unreachable "
                                      "(mounts the SA token; Role on podautoscalers)"),
            "allowedPrometheusUrls": {"type": "array", "items": s("Prometheus base URL", pattern="^https?://[^\\s]+$"),
                                      "description": "other Prometheus URLs triggers may name (allow-list)"},
            "port": i("gRPC port", minimum=1, maximum=65535),
            "metricsPort": i("HTTP /metrics port", minimum=1, maximum=65535),
            "pushPort": i("HTTP port of the router's demand push (headless Service); 0 = off", minimum=0,
                          maximum=65535),
            "prometheusUrl": s("Prometheus that scrapes the router", pattern="^https?://"),
            "pollInterval": n("seconds between Prometheus polls", exclusiveMinimum=0),
            "maxStaleness": n("seconds to serve last good values when Prometheus is down", exclusiveMinimum=0),
            "resources": RESOURCES,
            "podAnnotations": smap("extra pod annotations"),
        }, desc="the KEDA external scaler"),
        "keda": obj({
            "pollingInterval": i("ScaledObject pollingInterval (s)", minimum=1),
            "cooldownPeriod": i("ScaledObject cooldownPeriod (s)"),
            "scaleDownStabilizationSeconds": i("HPA scaleDown stabilizationWindowSeconds"),
            "fallback": obj({"failureThreshold": i("failed reads before fallback", minimum=1),
                             "replicas": i("replicas while in fallback")}, ["failureThreshold", "replicas"],
                            "ScaledObject fallback"),
        }, desc="ScaledObject settings of every backend"),
        "backendDefaults": obj({k: v for k, v in MODEL_BACKEND["properties"].items()
                                if k in ("port", "health_path", "timeout_seconds", "response_start_timeout_seconds",
                                         "load_seconds", "image_pull_policy", "resources", "env", "node_selector",
                                         "tolerations", "runtime_class_name", "image_pull_seconds",
                                         "progress_margin_seconds", "min_generation_seconds", "security_context")},
                               desc="defaults for every model's backend block"),
        "models": {"type": "array", "minItems": 1, "items": MODEL, "description": "the service matrix's models"},
        "monitoring": obj({
            "scrapeAnnotations": b("prometheus.io/* annotations on router, scorer and scaler pods"),
            "podMonitor": obj({"enabled": b("create a PodMonitor"), "interval": s("scrape interval"),
                               "labels": smap("extra labels")}, desc="prometheus-operator PodMonitor"),
            "serviceMonitor": obj({"enabled": b("create a ServiceMonitor"), "interval": s("scrape interval"),
                                   "labels": smap("extra labels")}, desc="prometheus-operator ServiceMonitor"),
            "grafanaDashboard": obj({"enabled": b("create the dashboard ConfigMap"), "labels": smap("labels")},
                                    desc="Grafana dashboard ConfigMap"),
            "prometheusRule": obj({"enabled": b("create a PrometheusRule with the scaler's alerts"),
                                   "labels": smap("extra labels")}, desc="prometheus-operator PrometheusRule"),
        }, desc="monitoring"),
        "containerSecurityContext": SECURITY_CONTEXT,
        "networkPolicy": obj({
            "enabled": b("create NetworkPolicies for router, scorer, scaler and backends"),
            "kedaNamespace": s("namespace of KEDA's operator (dials the scaler)", pattern=DNS1123),
            "prometheusNamespace": s("namespace of Prometheus (scrapes the pods)", pattern=DNS1123),
            "knativeNamespaces": {"type": "array", "items": s("namespace", pattern=DNS1123),
                                  "description": "Knative data-plane namespaces (activator, ingress gateway)"},
        }, desc="NetworkPolicies"),
        "rbac": obj({
            "cli": obj({"create": b("create the Role for `pickspin backends`"),
                        "subjects": {"type": "array", "items": {"type": "object"},
                                     "description": "RoleBinding subjects (none: no RoleBinding)"}},
                       desc="RBAC of the pickspin backends CLI"),
        }, desc="RBAC"),
        "modelsPvc": obj({
            "create": b("create the PVC with the model weights"),
            "name": s("PVC name (model_volume.claim_name)", pattern=DNS1123),
            "size": {**QTY, "description": "requested storage"},
            "storageClassName": s("StorageClass; empty = cluster default"),
            "accessModes": {"type": "array", "items": s("access mode", enum=["ReadWriteOnce", "ReadOnlyMany",
                                                                                "ReadWriteMany", "ReadWriteOncePod"]),
                            "minItems": 1, "description": "PVC access modes"},
        }, desc="model-weights PVC"),
        "tests": obj({
            "enabled": b("helm test pods"),
            "completion": obj({"enabled": b("run one completion"), "model": s("model or auto"),
                               "prompt": s("prompt"), "maxTokens": i("max_tokens", minimum=1),
                               "timeoutSeconds": i("client timeout", minimum=1)}, desc="completion test"),
        }, desc="helm test"),
    }, ["models"]),
}


def main() -> int:
    text = json.dumps(SCHEMA, indent=2) + "\n"
    if "--check" in sys.argv:
        return 0 if OUT.read_text() == text else 1
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
