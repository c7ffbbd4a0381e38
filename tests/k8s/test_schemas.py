"""Every Knative Service and ScaledObject (rendered by the chart, hand-written in knative/, and the
ScaledObject autoscaler-keda derives from each override) validated against the real CRD schemas in
../shared/k8s/crds, unknown fields rejected; built-in kinds validated with kubernetes-validate."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from stack.k8s import knative as kn

from .conftest import (
    VALUE_SETS,
    helm_bin,
    knative_docs,
    need_crds,
    need_helm,
    render,
    validate_builtin,
    validate_cr,
)

CR_GROUPS = ("serving.knative.dev", "keda.sh")
# prometheus-operator kinds: no CRD here; checked for shape below.
OPERATOR_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}


def _is_cr(d: dict[str, Any]) -> bool:
    return d["apiVersion"].split("/")[0] in CR_GROUPS


def _all_docs() -> list[tuple[str, dict[str, Any]]]:
    # without helm (no `make install`) the chart's objects are missing here; test_helm_present says so
    out = [(f"helm:{name}", d) for name in sorted(VALUE_SETS) for d in render(name)] if helm_bin() else []
    return out + knative_docs()


def test_helm_present() -> None:
    need_helm()


def _ids(docs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [f"{src}:{d['kind']}/{d['metadata']['name']}" for src, d in docs]


ALL = _all_docs()
CRS = [x for x in ALL if _is_cr(x[1])]
BUILTINS = [x for x in ALL if not _is_cr(x[1]) and x[1]["kind"] not in OPERATOR_KINDS]


def test_there_is_something_to_validate() -> None:
    kinds = {d["kind"] for _, d in CRS}
    assert kinds == {"Service", "ScaledObject"}
    assert len([1 for _, d in CRS if d["kind"] == "Service"]) >= (12 if helm_bin() else 5)


@pytest.mark.parametrize(("src", "doc"), CRS, ids=_ids(CRS))
def test_custom_resource_matches_crd(src: str, doc: dict[str, Any]) -> None:
    need_crds()
    validate_cr(doc)


@pytest.mark.parametrize(("src", "doc"), BUILTINS, ids=_ids(BUILTINS))
def test_builtin_matches_kubernetes_schema(src: str, doc: dict[str, Any]) -> None:
    validate_builtin(doc)


BACKENDS = [(src, d) for src, d in CRS if d["kind"] == "Service"
            and d["spec"]["template"].get("metadata", {}).get("annotations", {}).get(kn.A_OVERRIDE)]


def test_backends_found() -> None:
    assert len(BACKENDS) >= (7 if helm_bin() else 2)  # 1 default + 3 gpu + 1 kind + 2 knative/


@pytest.mark.parametrize(("src", "doc"), BACKENDS, ids=_ids(BACKENDS))
def test_autoscaler_keda_scaled_object_matches_crd(src: str, doc: dict[str, Any]) -> None:
    """The ScaledObject autoscaler-keda will create from the override annotation is valid for KEDA."""
    need_crds()
    so = kn.autoscaler_keda_scaled_object(doc, f"{doc['metadata']['name']}-00001", "pickspin")
    validate_cr(so)
    spec = so["spec"]
    assert spec["scaleTargetRef"]["name"] == f"{doc['metadata']['name']}-00001-deployment"
    assert spec["minReplicaCount"] == 0
    assert spec["maxReplicaCount"] == int(doc["spec"]["template"]["metadata"]["annotations"][kn.A_MAX])
    assert spec["initialCooldownPeriod"] > 0
    assert spec["fallback"]["replicas"] >= 1
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "external-push"
    assert trigger["metadata"]["scalerAddress"].endswith(":6000")


@pytest.mark.parametrize(("src", "doc"), BACKENDS, ids=_ids(BACKENDS))
def test_backend_knative_settings(src: str, doc: dict[str, Any]) -> None:
    tmpl = doc["spec"]["template"]
    ann = tmpl["metadata"]["annotations"]
    assert ann[kn.A_CLASS] == kn.HPA_CLASS
    assert ann[kn.A_MIN] == "0"
    assert doc["metadata"]["labels"][kn.L_VISIBILITY] == "cluster-local"
    spec = tmpl["spec"]
    md = kn.trigger_metadata_of(doc)
    assert md is not None
    assert spec["containerConcurrency"] == int(md["concurrency"]), "containerConcurrency must equal the scaler's c"
    assert spec["responseStartTimeoutSeconds"] <= spec["timeoutSeconds"]
    c = spec["containers"][0]
    assert c["ports"][0]["containerPort"] == 8000
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert "port" not in c["readinessProbe"]["httpGet"]  # Knative probes the user port


# -- the validator itself must be able to fail -------------------------------------------------
def _a_backend() -> dict[str, Any]:
    return copy.deepcopy(BACKENDS[0][1])


@pytest.mark.parametrize("mutate", [
    lambda d: d["spec"]["template"]["spec"].__setitem__("containerConcurency", 2),  # typo
    lambda d: d["spec"]["template"]["spec"]["containers"][0].__setitem__("livenessProb", {}),
    lambda d: d["spec"]["template"]["spec"].__setitem__("timeoutSeconds", "600"),
    lambda d: d["spec"].__setitem__("replicas", 1),
    lambda d: d["metadata"].__setitem__("name", "Not_A_DNS_Name"),
], ids=["typo-containerConcurrency", "typo-livenessProbe", "string-timeout", "unknown-spec-field", "bad-name"])
def test_validator_rejects_broken_knative_service(mutate: Any) -> None:
    need_crds()
    d = _a_backend()
    mutate(d)
    with pytest.raises(jsonschema.ValidationError):
        validate_cr(d)


@pytest.mark.parametrize("mutate", [
    lambda s: s["spec"].__setitem__("cooldownPeriods", 5),
    lambda s: s["spec"]["fallback"].pop("replicas"),
    lambda s: s["spec"]["triggers"][0]["metadata"].__setitem__("concurrency", 2),  # metadata values are strings
    lambda s: s["spec"].pop("scaleTargetRef"),
], ids=["unknown-field", "fallback-without-replicas", "int-metadata", "no-target"])
def test_validator_rejects_broken_scaled_object(mutate: Any) -> None:
    need_crds()
    so = kn.autoscaler_keda_scaled_object(_a_backend(), "x-00001", "pickspin")
    validate_cr(so)
    mutate(so)
    with pytest.raises(jsonschema.ValidationError):
        validate_cr(so)


def test_kubernetes_validate_rejects_unknown_field() -> None:
    need_helm()
    import kubernetes_validate

    dep = copy.deepcopy(next(d for _, d in BUILTINS if d["kind"] == "Deployment"))
    validate_builtin(dep)
    dep["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_builtin(dep)


@pytest.mark.parametrize("name", ["gpu-example"])
def test_prometheus_operator_objects_shape(name: str) -> None:
    docs = [d for d in render(name) if d["kind"] in OPERATOR_KINDS]
    assert {d["kind"] for d in docs} == OPERATOR_KINDS
    for d in docs:
        assert d["apiVersion"] == "monitoring.coreos.com/v1"
        if d["kind"] == "PrometheusRule":
            rules = [r for g in d["spec"]["groups"] for r in g["rules"]]
            assert any('code="UNAVAILABLE"' in r["expr"] for r in rules), "alert on the scaler's UNAVAILABLE"
            continue
        eps = d["spec"].get("podMetricsEndpoints") or d["spec"].get("endpoints")
        assert eps and all(e["path"] == "/metrics" and e["port"] for e in eps)
        assert d["spec"]["selector"]
