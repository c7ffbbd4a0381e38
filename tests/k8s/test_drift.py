"""No drift between the router's config, the scaler's trigger metadata, the chart, knative/ and the CLI.

* The ConfigMap the chart renders (and knative/01-config.yaml) loads with pickspin.config.parse_config.
* Every trigger's metadata is parsed by the scaler's own model (pickspin_scaler.metadata), and its
  model, tier, c, warm-pool floor and tau equal the config's values for that model.
* The Knative Services of the chart and of knative/ are what stack.k8s.knative (used by the
  `pickspin backends` CLI) builds from the same settings.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import yaml

from pickspin.config import ServiceMatrix, parse_config
from pickspin_scaler.cli import metadata_from_config
from pickspin_scaler.metadata import MetadataError, ScalerMetadata, parse_metadata
from stack.k8s import knative as kn

from .conftest import VALUE_SETS, helm_bin, knative_docs, render


def _matrix_from(docs: list[dict[str, Any]], name: str = "pickspin-config") -> tuple[ServiceMatrix, dict[str, Any]]:
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)
    raw = yaml.safe_load(cm["data"]["config.yaml"])
    return parse_config(raw, f"ConfigMap {name}"), raw


def _backends(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == "Service" and d["apiVersion"].startswith("serving.knative.dev")
            and kn.A_OVERRIDE in d["spec"]["template"].get("metadata", {}).get("annotations", {})]


def _sets() -> list[tuple[str, list[dict[str, Any]]]]:
    # without helm the chart's sets are missing; tests/k8s/test_schemas.py::test_helm_present says so
    out = [(f"helm:{n}", render(n)) for n in sorted(VALUE_SETS)] if helm_bin() else []
    out.append(("knative/", [d for _, d in knative_docs() if "alternatives" not in _]))
    return out


SETS = _sets()


@pytest.mark.parametrize(("src", "docs"), SETS, ids=[s for s, _ in SETS])
def test_config_loads_with_pickspin_config(src: str, docs: list[dict[str, Any]]) -> None:
    matrix, raw = _matrix_from(docs)
    assert matrix.router.active_probes is False, "Knative backends: no active probes (they would wake them)"
    for m in matrix.models:
        for b in m.backends:
            assert b.url == f"http://{b.name}.pickspin.svc.cluster.local", b.url
            assert not b.simulated or src == "none"
    if src != "knative/" and "scorer" in raw["routing"]:
        assert raw["routing"]["scorer"]["url"] == "http://pickspin-scorer.pickspin.svc.cluster.local"


@pytest.mark.parametrize(("src", "docs"), SETS, ids=[s for s, _ in SETS])
def test_trigger_metadata_parsed_by_scaler_and_matches_config(src: str, docs: list[dict[str, Any]]) -> None:
    matrix, _ = _matrix_from(docs)
    backends = _backends(docs)
    assert backends
    seen = set()
    adaptive: set[str] = set()
    for ksvc in backends:
        md_raw = kn.trigger_metadata_of(ksvc)
        assert md_raw is not None
        assert all(isinstance(v, str) for v in md_raw.values()), "KEDA metadata values are strings"
        md = parse_metadata(md_raw)  # the scaler's own model; raises on any bad key
        m = matrix.model(md.model)
        assert m is not None, f"{ksvc['metadata']['name']}: trigger model {md.model!r} is not in the config"
        assert ksvc["metadata"]["name"] in {b.name for b in m.backends}
        assert md.tier == m.tier
        assert md.concurrency == m.scaling.concurrency
        assert md.floor() == matrix.warm_pool(m)
        assert md.idle_seconds == m.scaling.idle_seconds
        assert md.keep_warm == m.scaling.keep_warm
        if md.keep_warm == "adaptive":  # the scaler prices a cold start as the router's config does
            adaptive.add(m.name)
            assert md.load_seconds == max(b.cold_start_s for b in m.backends)
            assert (md.gpus, md.slo_miss_gpu_seconds) == (m.scaling.gpus, m.scaling.slo_miss_gpu_s)
            limits = ksvc["spec"]["template"]["spec"]["containers"][0].get("resources", {}).get("limits", {})
            assert md.gpus == int(limits.get("nvidia.com/gpu", 1)), "a cold start holds the pod's GPUs"
        assert int(ksvc["spec"]["template"]["metadata"]["annotations"][kn.A_MAX]) == m.scaling.max_replicas
        assert ksvc["spec"]["template"]["spec"]["containerConcurrency"] == m.scaling.concurrency
        # readiness-aware Pick: the router's cold-start penalty is the model load time KEDA waits for
        backend = next(b for b in m.backends if b.name == ksvc["metadata"]["name"])
        assert backend.cold_start_s == kn.override_of(ksvc)["spec"]["initialCooldownPeriod"]
        seen.add(m.name)
    assert seen == {m.name for m in matrix.models}, "every model in the config has a scaled backend"
    if src == "helm:gpu-example":  # the example turns adaptive keep-warm on for its 70B
        assert adaptive == {"llama-3.1-70b"}


@pytest.mark.parametrize(("src", "docs"), SETS, ids=[s for s, _ in SETS])
def test_scaler_config_mode_agrees_with_triggers(src: str, docs: list[dict[str, Any]], tmp_path: Any) -> None:
    """The scaler pre-polls models from the same ConfigMap (--config): same metadata as the triggers."""
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "pickspin-config")
    f = tmp_path / "config.yaml"
    f.write_text(cm["data"]["config.yaml"])
    # the scaler's own --metrics-namespace flag, as its Deployment passes it (same namespace filter as triggers)
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "pickspin-scaler")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    ns = next((a.split("=", 1)[1] for a in args if a.startswith("--metrics-namespace=")), None)
    from_config = {md.model: md for md in metadata_from_config(str(f), namespace=ns)}
    for ksvc in _backends(docs):
        md = parse_metadata(kn.trigger_metadata_of(ksvc) or {})
        c = from_config[md.model]
        assert (c.tier, c.concurrency, c.floor(), c.idle_seconds) == (md.tier, md.concurrency, md.floor(), md.idle_seconds)
        assert (c.keep_warm, c.load_seconds, c.gpus, c.slo_miss_gpu_seconds) == (
            md.keep_warm, md.load_seconds, md.gpus, md.slo_miss_gpu_seconds)
        assert c.queries() == md.queries(), "same PromQL from both paths"


def test_scaler_rejects_a_broken_trigger() -> None:
    """The drift checks above would catch a bad key: the scaler's model is strict about values."""
    ksvc = _backends(render("default"))[0]
    md = dict(kn.trigger_metadata_of(ksvc) or {})
    md["concurrency"] = "zero"
    with pytest.raises(MetadataError, match="concurrency"):
        parse_metadata(md)


@pytest.mark.parametrize(("src", "docs"), SETS, ids=[s for s, _ in SETS])
def test_builder_reproduces_manifests(src: str, docs: list[dict[str, Any]]) -> None:
    """stack.k8s.knative (the CLI's builder) rebuilds each backend Knative Service exactly."""
    for ksvc in _backends(docs):
        spec = kn.spec_from_ksvc(ksvc)
        built = kn.knative_service(spec, "pickspin")
        t_live, t_built = ksvc["spec"]["template"], built["spec"]["template"]
        live_ann = dict(t_live["metadata"]["annotations"])
        built_ann = dict(t_built["metadata"]["annotations"])
        assert kn.override_of(ksvc) == kn.scaled_object_override(spec)
        live_ann.pop(kn.A_OVERRIDE)
        built_ann.pop(kn.A_OVERRIDE)
        assert live_ann == built_ann
        live_spec, built_spec = dict(t_live["spec"]), dict(t_built["spec"])
        for k in ("nodeSelector", "tolerations", "runtimeClassName"):  # chart-only scheduling knobs
            live_spec.pop(k, None)
        lc, bc = dict(live_spec.pop("containers")[0]), dict(built_spec.pop("containers")[0])
        lc.pop("imagePullPolicy", None)
        assert live_spec == built_spec
        # resources: the builder writes the requests and limits it knows; compare those
        assert lc.pop("resources")["requests"] == bc.pop("resources")["requests"]
        assert lc == bc
        for k in (kn.L_MODEL, kn.L_TIER, kn.L_VISIBILITY):
            assert ksvc["metadata"]["labels"][k] == built["metadata"]["labels"][k]
        assert ksvc["metadata"]["annotations"] == {**ksvc["metadata"]["annotations"], **built["metadata"]["annotations"]}


@pytest.mark.parametrize(("src", "docs"), SETS, ids=[s for s, _ in SETS])
def test_builder_config_entry_matches_configmap(src: str, docs: list[dict[str, Any]]) -> None:
    """The CLI writes the same model entry into the router config as the chart renders."""
    _, raw = _matrix_from(docs)
    by_backend = {m["backends"][0]["name"]: m for m in raw["models"]}
    for ksvc in _backends(docs):
        spec = kn.spec_from_ksvc(ksvc)
        live = by_backend[spec.name]
        spec = dataclasses.replace(spec, capability=live["capability"], cost=live["cost"],
                                      expected_latency_s=live["backends"][0]["expected_latency_s"])
        built = kn.config_model_entry(spec, "pickspin")
        assert built["scaling"] == {k: live["scaling"][k] for k in built["scaling"]}
        lb, bb = live["backends"][0], built["backends"][0]
        for k in ("name", "kind", "url", "served_model_name", "health_path"):
            assert lb[k] == bb[k], k


def test_metadata_model_sees_every_key_we_write() -> None:
    """Keys the builder writes are keys the scaler knows (KEDA also passes scalerAddress, ignored)."""
    spec = kn.BackendSpec(model="m", name="m-vllm", window_seconds=120, prometheus_address="http://prom:9090")
    md = kn.trigger_metadata(spec)
    known = {(f.alias or n) for n, f in ScalerMetadata.model_fields.items()} | {"scalerAddress"}
    assert set(md) <= known
    parsed = parse_metadata(md)
    assert parsed.window_seconds == 120 and parsed.prometheus_address == "http://prom:9090"
