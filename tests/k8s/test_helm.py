"""The umbrella chart with the real helm (v3.17.3 from `make install`): lint, template, schema."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import BAD_VALUES, CHART, EXAMPLES, KIND_VALUES, ROOT, VALUE_SETS, render, run_helm


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_strict(name: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    for f in VALUE_SETS[name]:
        args += ["-f", str(f)]
    p = run_helm(*args, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "0 chart(s) failed" in p.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_template_renders_expected_objects(name: str) -> None:
    docs = render(name)
    kinds = [(d["apiVersion"], d["kind"], d["metadata"]["name"]) for d in docs]
    names = {n for _, _, n in kinds}
    assert ("serving.knative.dev/v1", "Service", "pickspin-router") in kinds
    assert ("apps/v1", "Deployment", "pickspin-scaler") in kinds
    assert ("v1", "Service", "pickspin-scaler") in kinds
    assert ("v1", "ConfigMap", "pickspin-config") in kinds
    for sa in ("pickspin-router", "pickspin-scaler"):
        assert ("v1", "ServiceAccount", sa) in kinds
    values: dict = yaml.safe_load((CHART / "values.yaml").read_text())
    for f in VALUE_SETS[name]:
        values.update(yaml.safe_load(f.read_text()))
    for m in values["models"]:
        assert m["backend"]["name"] in names, f"no Knative Service for {m['name']}"
    # helm test hooks: router /healthz, scaler gRPC health, one completion
    hooks = {d["metadata"]["name"] for d in docs if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"}
    assert hooks == {"pickspin-test-router-healthz", "pickspin-test-scaler-health", "pickspin-test-completion"}


def test_scaler_service_listens_on_6000() -> None:
    docs = render("default")
    svc = next(d for d in docs if d["kind"] == "Service" and d["apiVersion"] == "v1" and d["metadata"]["name"] == "pickspin-scaler")
    ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    assert ports["grpc"] == 6000
    dep = next(d for d in docs if d["kind"] == "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert "--port=6000" in c["args"] and "--config=/etc/pickspin/config.yaml" in c["args"]
    assert c["readinessProbe"]["grpc"]["port"] == 6000
    # the selector must match the pod labels, or the Service has no endpoints
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items())
    assert all(pod_labels.get(k) == v for k, v in dep["spec"]["selector"]["matchLabels"].items())


def test_router_knative_service_settings() -> None:
    router = next(d for d in render("default") if d["kind"] == "Service" and d["metadata"]["name"] == "pickspin-router")
    tmpl = router["spec"]["template"]
    ann = tmpl["metadata"]["annotations"]
    assert ann["autoscaling.knative.dev/class"] == "kpa.autoscaling.knative.dev"
    assert ann["autoscaling.knative.dev/min-scale"] == "1"
    assert ann["prometheus.io/port"] == "8080" and ann["prometheus.io/path"] == "/metrics"
    c = tmpl["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["ports"] == [{"name": "http1", "containerPort": 8080}]
    assert "--port" not in c["args"], "the router must listen on Knative's $PORT"
    assert {"name": "PICKSPIN_CONFIG", "value": "/etc/pickspin/config.yaml"} in c["env"]
    # the config hash on the template changes with the config (a new revision loads it)
    other = run_helm("template", "pickspin", str(CHART), "-n", "pickspin", "--set", "routing.mode=keyword").stdout
    r2 = next(d for d in yaml.safe_load_all(other) if d and d["kind"] == "Service" and d["metadata"]["name"] == "pickspin-router")
    assert r2["spec"]["template"]["metadata"]["annotations"]["pickspin.dev/config-sha256"] != ann["pickspin.dev/config-sha256"]


def test_scorer_scales_to_zero_with_small_requests() -> None:
    scorer = next(d for d in render("default") if d["kind"] == "Service" and d["metadata"]["name"] == "pickspin-scorer")
    ann = scorer["spec"]["template"]["metadata"]["annotations"]
    assert ann["autoscaling.knative.dev/class"] == "kpa.autoscaling.knative.dev"
    assert ann["autoscaling.knative.dev/min-scale"] == "0"
    req = scorer["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert req["cpu"] == "100m" and req["memory"].endswith("Mi")
    assert scorer["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"


def test_gpu_example_backends() -> None:
    docs = render("gpu-example")
    backends = [d for d in docs if d["kind"] == "Service" and d["metadata"]["labels"].get("app.kubernetes.io/component") == "backend"]
    assert len(backends) == 3
    for b in backends:
        spec = b["spec"]["template"]["spec"]
        c = spec["containers"][0]
        assert int(c["resources"]["limits"]["nvidia.com/gpu"]) >= 1
        assert c["readinessProbe"]["httpGet"]["path"] == "/health"
        assert c["ports"][0]["containerPort"] == 8000
        assert {"name": "models", "persistentVolumeClaim": {"claimName": "pickspin-models", "readOnly": True}} in spec["volumes"]
        assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
        assert spec["responseStartTimeoutSeconds"] <= spec["timeoutSeconds"]
    kinds = {d["kind"] for d in docs}
    assert {"PodMonitor", "ServiceMonitor"} <= kinds
    dash = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "pickspin-dashboard")
    panels = json.loads(dash["data"]["pickspin.json"])["panels"]
    assert any("pickspin_requests_total" in p["targets"][0]["expr"] for p in panels)


def test_monitoring_objects_are_off_by_default() -> None:
    kinds = {d["kind"] for d in render("default")}
    assert not kinds & {"PodMonitor", "ServiceMonitor"}


def _expected_message(f: Path) -> str:
    first = f.read_text().splitlines()[0]
    m = re.match(r"#\s*expect:\s*(.+)", first)
    assert m, f"{f.name}: first line must be '# expect: <message>'"
    return m.group(1).strip()


@pytest.mark.parametrize("bad", sorted(BAD_VALUES.glob("*.yaml")), ids=lambda p: p.stem)
def test_schema_rejects_bad_values(bad: Path) -> None:
    p = run_helm("template", "pickspin", str(CHART), "-f", str(bad), check=False)
    assert p.returncode != 0, f"{bad.name} was accepted"
    assert "values don't meet the specifications of the schema" in p.stderr
    assert _expected_message(bad) in p.stderr, p.stderr


def test_schema_file_is_generated_from_tool() -> None:
    """values.schema.json is written by helm/tools/make_schema.py; a hand edit would drift."""
    p = subprocess.run([sys.executable, str(ROOT / "helm" / "tools" / "make_schema.py"), "--check"], capture_output=True)
    assert p.returncode == 0, "values.schema.json is stale: run python helm/tools/make_schema.py"


def test_every_default_value_is_in_the_schema() -> None:
    """additionalProperties: false everywhere means a key missing from the schema would break installs."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    for f in [CHART / "values.yaml", EXAMPLES / "gpu-values.yaml", KIND_VALUES]:
        import jsonschema

        jsonschema.Draft7Validator(schema).validate(yaml.safe_load(f.read_text()))


def test_notes_render(tmp_chart: Path) -> None:
    """NOTES.txt renders (helm only renders it on install; render a copy as a template)."""
    (tmp_chart / "templates" / "NOTES.txt").rename(tmp_chart / "templates" / "notes-render.txt")
    # not YAML, so helm's YAML check complains after rendering; the rendered text is in --debug output
    p = run_helm("template", "pickspin", str(tmp_chart), "-n", "pickspin", "-f", str(EXAMPLES / "gpu-values.yaml"),
                 "--show-only", "templates/notes-render.txt", "--debug", check=False)
    text = p.stdout + p.stderr
    assert "helm test pickspin -n pickspin" in text
    assert "llama70b-vllm  model=llama-3.1-70b tier=large" in text
    assert "kubernetes.podspec-persistent-volume-claim" in text


def test_semantic_routing_without_a_scorer_fails_with_a_message() -> None:
    p = run_helm("template", "pickspin", str(CHART), "--set", "scorer.enabled=false", check=False)
    assert p.returncode != 0
    assert 'routing.mode "hybrid" needs the scorer' in p.stderr
    ok = run_helm("template", "pickspin", str(CHART), "--set", "scorer.enabled=false", "--set", "routing.mode=keyword")
    assert "pickspin-scorer" not in ok.stdout


def test_router_pushes_demand_to_every_scaler_replica() -> None:
    """The router's config names the scaler's headless push Service; the scaler listens on that port; only
    the router may reach it."""
    docs = render("default")
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("config"))
    url = yaml.safe_load(cm["data"]["config.yaml"])["router"]["scaler_push_url"]
    push = next(d for d in docs if d["kind"] == "Service" and d["apiVersion"] == "v1"
                and d["metadata"]["name"].endswith("-scaler-push"))
    assert push["spec"]["clusterIP"] == "None"  # resolves to every replica
    port = push["spec"]["ports"][0]["port"]
    assert url == f"http://{push['metadata']['name']}.{push['metadata']['namespace']}.svc.cluster.local:{port}"
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-scaler"))
    assert f"--push-port={port}" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    np = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("-scaler"))
    rule = next(r for r in np["spec"]["ingress"] if r["ports"] == [{"protocol": "TCP", "port": port}])
    assert rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "router"
