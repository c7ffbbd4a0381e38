"""What would break on a real cluster (issue 12), asserted in the rendered manifests of every value set.

Progress deadline, router concurrency, PromQL namespace filter, the timeout chain, Pod Security
`restricted`, PDBs and anti-affinity, NetworkPolicies, RBAC for the CLI, backend probes, the models
PVC, router exposure, scaler flags, and the pins and paths the chart and the kind recipe name.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from stack.k8s import knative as kn

from .conftest import CHART, EXAMPLES, KIND_VALUES, ROOT, VALUE_SETS, render, run_helm

SETS = sorted(VALUE_SETS)


def _values(name: str) -> dict[str, Any]:
    """The chart's values merged (one level deep, as these files override) with the set's files."""
    v: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    for f in VALUE_SETS[name]:
        for k, val in yaml.safe_load(f.read_text()).items():
            if isinstance(val, dict) and isinstance(v.get(k), dict):
                v[k] = {**v[k], **val}
            else:
                v[k] = val
    return v


def _backends(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == "Service" and d["apiVersion"].startswith("serving.knative.dev")
            and kn.A_OVERRIDE in d["spec"]["template"]["metadata"].get("annotations", {})]


def _ksvc(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "Service" and d["apiVersion"].startswith("serving.knative.dev")
                and d["metadata"]["name"] == name)


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def _template_fails(*sets: str) -> str:
    args = ["template", "pickspin", str(CHART), "-n", "pickspin"]
    for s in sets:
        args += ["--set", s]
    p = run_helm(*args, check=False)
    assert p.returncode != 0, f"rendered with {sets}"
    return p.stderr


def _model_backend(values: dict[str, Any], backend_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    for m in values["models"]:
        if m["backend"]["name"] == backend_name:
            return m, {**values["backendDefaults"], **m["backend"]}
    raise AssertionError(backend_name)


# -- item 2: progress deadline; backends' startup and liveness probes -----------------------------------------

@pytest.mark.parametrize("name", SETS)
def test_progress_deadline_is_pull_plus_load_plus_margin(name: str) -> None:
    values = _values(name)
    for ksvc in _backends(render(name)):
        _, b = _model_backend(values, ksvc["metadata"]["name"])
        ann = ksvc["spec"]["template"]["metadata"]["annotations"]
        want = b["image_pull_seconds"] + b["load_seconds"] + b["progress_margin_seconds"]
        assert ann[kn.A_PROGRESS_DEADLINE] == f"{want}s"
    if name == "gpu-example":  # the 70B model: pull + 600 s load is past Knative's 600 s default
        big = _ksvc(render(name), "llama70b-vllm")
        assert int(big["spec"]["template"]["metadata"]["annotations"][kn.A_PROGRESS_DEADLINE][:-1]) > 600


@pytest.mark.parametrize("name", SETS)
def test_backends_have_startup_and_liveness_probes(name: str) -> None:
    values = _values(name)
    for ksvc in _backends(render(name)):
        _, b = _model_backend(values, ksvc["metadata"]["name"])
        c = ksvc["spec"]["template"]["spec"]["containers"][0]
        for probe in ("readinessProbe", "startupProbe", "livenessProbe"):
            assert c[probe]["httpGet"]["path"] == b["health_path"], probe
        sp = c["startupProbe"]
        # liveness must not kill a pod that is still loading its model
        assert sp["periodSeconds"] * sp["failureThreshold"] >= b["load_seconds"] + b["progress_margin_seconds"]


# -- item 5: the router's hard concurrency limit ------------------------------------------------------------------

@pytest.mark.parametrize("name", SETS)
def test_router_container_concurrency_fits_its_threads(name: str) -> None:
    v = _values(name)["router"]
    cc = _ksvc(render(name), "pickspin-router")["spec"]["template"]["spec"]["containerConcurrency"]
    assert 1 <= cc <= v["workers"] * v["threads"]
    assert cc == v["workers"] * (v["threads"] - 1)  # the default leaves one thread per worker for probes


@pytest.mark.parametrize("bad", ["0", "129"])
def test_router_container_concurrency_out_of_range_fails(bad: str) -> None:
    err = _template_fails(f"router.containerConcurrency={bad}")
    assert "router.containerConcurrency" in err  # 0: the schema; 129 > 2 x 64: the template's check
    assert bad == "0" or "workers x threads = 2 x 64 = 128" in err, err


# -- item 7: PromQL namespace filter --------------------------------------------------------------------------------

def test_triggers_and_scaler_filter_by_the_release_namespace() -> None:
    from pickspin_scaler.metadata import parse_metadata

    out = run_helm("template", "pickspin", str(CHART), "-n", "team-b").stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    for ksvc in _backends(docs):
        md = kn.trigger_metadata_of(ksvc) or {}
        assert md["metricsNamespace"] == "team-b"
        assert all('namespace="team-b"' in q for q in parse_metadata(md).queries().values())
    args = _one(docs, "Deployment", "pickspin-scaler")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--metrics-namespace=team-b" in args


# -- item 8: the timeout chain ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SETS)
def test_timeout_chain_holds(name: str) -> None:
    values = _values(name)
    docs = render(name)
    cm = _one(docs, "ConfigMap", "pickspin-config")
    fb = yaml.safe_load(cm["data"]["config.yaml"])["router"]["first_byte_timeout_s"]
    router = _ksvc(docs, "pickspin-router")["spec"]["template"]["spec"]
    for ksvc in _backends(docs):
        _, b = _model_backend(values, ksvc["metadata"]["name"])
        spec = ksvc["spec"]["template"]["spec"]
        cold = b["image_pull_seconds"] + b["load_seconds"]
        assert cold < fb < spec["responseStartTimeoutSeconds"] <= spec["timeoutSeconds"]
        assert spec["timeoutSeconds"] - cold >= b["min_generation_seconds"]
        assert router["timeoutSeconds"] >= spec["timeoutSeconds"]
        assert router["responseStartTimeoutSeconds"] >= fb


@pytest.mark.parametrize(("sets", "message"), [
    (["router.settings.first_byte_timeout_s=540"], "first_byte_timeout_s = 540 must be < response_start_timeout_seconds = 540"),
    (["router.settings.first_byte_timeout_s=100"], "must be < router.settings.first_byte_timeout_s = 100"),
    (["backendDefaults.timeout_seconds=500"], "response_start_timeout_seconds = 540 must be <= timeout_seconds = 500"),
    (["backendDefaults.min_generation_seconds=500"], "below min_generation_seconds = 500"),
    (["router.timeoutSeconds=300"], "router.timeoutSeconds = 300 must be >= the backend's timeout_seconds = 600"),
])
def test_broken_timeout_chain_fails_with_the_link_named(sets: list[str], message: str) -> None:
    err = _template_fails(*sets)
    assert "timeout chain" in err and message in err, err


# -- Pod Security "restricted" on every pod ---------------------------------------------------------------------------

def _pods(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for d in docs:
        if d["kind"] == "Deployment":
            out.append((f"Deployment/{d['metadata']['name']}", d["spec"]["template"]["spec"]))
        elif d["kind"] == "Pod":
            out.append((f"Pod/{d['metadata']['name']}", d["spec"]))
        elif d["kind"] == "Service" and d["apiVersion"].startswith("serving.knative.dev"):
            out.append((f"ksvc/{d['metadata']['name']}", d["spec"]["template"]["spec"]))
    return out


@pytest.mark.parametrize("name", SETS)
def test_every_pod_meets_pod_security_restricted(name: str) -> None:
    pods = _pods(render(name))
    assert len(pods) >= 5
    for where, pod in pods:
        psc = pod.get("securityContext") or {}
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), where
        assert not any("hostPath" in v for v in pod.get("volumes", [])), where
        for c in pod["containers"] + pod.get("initContainers", []):
            csc = c.get("securityContext") or {}
            at = f"{where}/{c['name']}"
            assert csc.get("allowPrivilegeEscalation") is False, at
            assert csc.get("capabilities", {}).get("drop") == ["ALL"], at
            assert not csc.get("capabilities", {}).get("add"), at
            assert not csc.get("privileged"), at
            assert csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, at
            assert csc.get("runAsUser", psc.get("runAsUser", 1)) != 0, at
            seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            assert seccomp in ("RuntimeDefault", "Localhost"), at


# -- item 4: scaler replicas, PDBs, anti-affinity; fallback data kept longer -------------------------------------------

@pytest.mark.parametrize("name", SETS)
def test_pdbs_and_anti_affinity_for_router_and_scaler(name: str) -> None:
    docs = render(name)
    dep = _one(docs, "Deployment", "pickspin-scaler")
    assert dep["spec"]["replicas"] >= 2
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    pdb = _one(docs, "PodDisruptionBudget", "pickspin-scaler")
    assert pdb["spec"]["minAvailable"] >= 1
    assert pdb["spec"]["minAvailable"] < dep["spec"]["replicas"], "a PDB that never allows an eviction blocks drains"
    assert all(pod_labels[k] == v for k, v in pdb["spec"]["selector"]["matchLabels"].items())
    term = dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert all(pod_labels[k] == v for k, v in term["labelSelector"]["matchLabels"].items())
    router = _ksvc(docs, "pickspin-router")["spec"]["template"]
    rpdb = _one(docs, "PodDisruptionBudget", "pickspin-router")
    assert rpdb["spec"]["maxUnavailable"] == 1
    assert all(router["metadata"]["labels"][k] == v for k, v in rpdb["spec"]["selector"]["matchLabels"].items())
    # router anti-affinity needs a Knative feature flag: only where the values turn it on
    assert ("affinity" in router["spec"]) == bool(_values(name)["router"].get("antiAffinity"))


def test_single_scaler_replica_gets_no_blocking_pdb() -> None:
    out = run_helm("template", "pickspin", str(CHART), "--set", "scaler.replicas=1").stdout
    assert not any(d and d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] == "pickspin-scaler"
                   for d in yaml.safe_load_all(out))


def test_scaler_serves_last_values_for_minutes_and_alerts_exist() -> None:
    args = _one(render("default"), "Deployment", "pickspin-scaler")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--max-staleness=300" in args
    rule = _one(render("gpu-example"), "PrometheusRule", "pickspin-scaler")
    names = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert names == {"PickSpinScalerUnavailable", "PickSpinScalerStale", "PickSpinScalerDown"}


# -- item 11 (chart side): scaler bind address and Prometheus allow-list ----------------------------------------------

def test_scaler_binds_pod_ip_and_passes_the_allow_list() -> None:
    out = run_helm("template", "pickspin", str(CHART), "--set",
                   "scaler.allowedPrometheusUrls={http://thanos.monitoring:9090}").stdout
    dep = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert "--allow-prometheus=http://thanos.monitoring:9090" in c["args"]
    host = next(e for e in c["env"] if e["name"] == "PICKSPIN_SCALER_HOST")
    assert host["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert not any(a.startswith("--host=0.0.0.0") for a in c["args"])


# -- NetworkPolicies --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SETS)
def test_network_policies_select_the_pods_and_admit_only_known_peers(name: str) -> None:
    docs = render(name)
    pols = {d["metadata"]["name"]: d for d in docs if d["kind"] == "NetworkPolicy"}
    assert {"pickspin-router", "pickspin-scorer", "pickspin-scaler", "pickspin-backends"} <= set(pols)

    def ns_of(peer: dict[str, Any]) -> str | None:
        return (peer.get("namespaceSelector") or {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")

    # scaler: gRPC from KEDA's namespace (and this release's helm test pods), metrics from Prometheus only
    sc = pols["pickspin-scaler"]["spec"]
    grpc_rule = next(r for r in sc["ingress"] if r["ports"][0]["port"] == 6000)
    assert {ns_of(p) for p in grpc_rule["from"]} == {"keda", None}
    metrics_rule = next(r for r in sc["ingress"] if r["ports"][0]["port"] == 9102)
    assert [ns_of(p) for p in metrics_rule["from"]] == ["monitoring"]
    dep = _one(docs, "Deployment", "pickspin-scaler")
    assert all(dep["spec"]["template"]["metadata"]["labels"][k] == v
               for k, v in sc["podSelector"]["matchLabels"].items())
    # router, scorer, backends: Knative's data plane and Prometheus only
    for pol, ksvcs in (("pickspin-router", [_ksvc(docs, "pickspin-router")]),
                       ("pickspin-scorer", [_ksvc(docs, "pickspin-scorer")]),
                       ("pickspin-backends", _backends(docs))):
        spec = pols[pol]["spec"]
        assert spec["policyTypes"] == ["Ingress"]
        assert {ns_of(p) for r in spec["ingress"] for p in r["from"]} == {"knative-serving", "kourier-system",
                                                                             "monitoring"}
        for k in ksvcs:
            labels = k["spec"]["template"]["metadata"]["labels"]
            sel = spec["podSelector"]
            assert all(labels.get(a) == b for a, b in sel.get("matchLabels", {}).items()), pol
            assert all(e["key"] in labels for e in sel.get("matchExpressions", [])), pol
    # the backends' selector must not catch the router (it is not a model backend)
    assert "pickspin.dev/model" not in _ksvc(docs, "pickspin-router")["spec"]["template"]["metadata"]["labels"]


# -- RBAC for `pickspin backends` ----------------------------------------------------------------------------------------

def test_cli_role_covers_what_the_cli_calls_and_binds_given_subjects() -> None:
    docs = render("default")
    role = _one(docs, "Role", "pickspin-backends-cli")
    allowed = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    for need in [("serving.knative.dev", "services", v) for v in ("get", "list", "create", "update", "delete")] + [
            ("", "configmaps", "get"), ("", "configmaps", "update"), ("keda.sh", "scaledobjects", "get"),
            ("apps", "deployments", "get"), ("", "events", "list")]:
        assert need in allowed, need
    cm_rule = next(r for r in role["rules"] if "configmaps" in r["resources"])
    assert cm_rule["resourceNames"] == ["pickspin-config"]  # not every ConfigMap in the namespace
    assert not any(d["kind"] == "RoleBinding" and d["metadata"]["name"] == "pickspin-backends-cli" for d in docs)
    out = run_helm("template", "pickspin", str(CHART), "--set", "rbac.cli.subjects[0].kind=Group",
                   "--set", "rbac.cli.subjects[0].name=ml-platform",
                   "--set", "rbac.cli.subjects[0].apiGroup=rbac.authorization.k8s.io").stdout
    rb = next(d for d in yaml.safe_load_all(out)
              if d and d["kind"] == "RoleBinding" and d["metadata"]["name"] == "pickspin-backends-cli")
    assert rb["roleRef"]["name"] == "pickspin-backends-cli" and rb["subjects"][0]["name"] == "ml-platform"


# -- the models PVC the GPU example references ------------------------------------------------------------------------

def test_every_claim_a_backend_mounts_is_rendered() -> None:
    docs = render("gpu-example")
    pvcs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PersistentVolumeClaim"}
    claims = {v["persistentVolumeClaim"]["claimName"] for k in _backends(docs)
              for v in k["spec"]["template"]["spec"].get("volumes", []) if "persistentVolumeClaim" in v}
    assert claims == {"pickspin-models"} and claims <= set(pvcs)
    pvc = pvcs["pickspin-models"]
    assert pvc["spec"]["accessModes"] == ["ReadOnlyMany"]  # many backends mount it at once, read-only
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert not any(d["kind"] == "PersistentVolumeClaim" for d in render("default"))


# -- the router is not exposed without an API key ------------------------------------------------------------------------

def test_router_is_cluster_local_by_default_and_external_needs_a_key() -> None:
    router = _ksvc(render("default"), "pickspin-router")
    assert router["metadata"]["labels"][kn.L_VISIBILITY] == "cluster-local"
    err = _template_fails("router.visibility=external")
    assert "apiKeysSecret" in err and "allowUnauthenticatedExternal" in err
    gpu = _ksvc(render("gpu-example"), "pickspin-router")
    assert kn.L_VISIBILITY not in gpu["metadata"]["labels"]  # external, with the API-key Secret:
    env = {e["name"]: e for e in gpu["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PICKSPIN_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "pickspin-api-keys"
    plain = next(d for _, d in __import__("tests.k8s.conftest", fromlist=["knative_docs"]).knative_docs()
                 if d["kind"] == "Service" and d["metadata"]["name"] == "pickspin-router")
    assert plain["metadata"]["labels"][kn.L_VISIBILITY] == "cluster-local"  # knative/10-router.yaml too


# -- item 6: scrape interval ------------------------------------------------------------------------------------------------

def test_router_is_scraped_every_5s_or_faster() -> None:
    v = yaml.safe_load((CHART / "values.yaml").read_text())
    assert v["monitoring"]["podMonitor"]["interval"] == "5s"
    prom = yaml.safe_load((ROOT / "deploy" / "kind" / "prometheus-values.yaml").read_text())
    assert re.search(r"scrape_interval: ([1-5])s", yaml.safe_dump(prom))


# -- item 9 and item 1: pins, paths, config-gc -------------------------------------------------------------------------------

#: autoscaler-keda release tags seen upstream (knative-extensions/autoscaler-keda @c6a15e3, 2026-06-16): the
#: newest knative-v* tag is knative-v1.22.1; no knative-v1.23.x exists. Update with the pin.
AUTOSCALER_KEDA_TAGS = {"knative-v1.20.0", "knative-v1.21.0", "knative-v1.22.0", "knative-v1.22.1"}


def test_autoscaler_keda_pin_is_a_real_release_everywhere() -> None:
    kind_sh = (ROOT / "deploy" / "kind" / "kind.sh").read_text()
    pin = re.search(r'AUTOSCALER_KEDA_VERSION="\$\{AUTOSCALER_KEDA_VERSION:-([^}]+)\}"', kind_sh)
    assert pin and pin.group(1) in AUTOSCALER_KEDA_TAGS
    docs = (ROOT / "docs" / "deploy.md").read_text()
    urls = re.findall(r"autoscaler-keda/releases/download/([^/]+)/", docs)
    assert urls and set(urls) == {pin.group(1)}
    assert pin.group(1) in (CHART / "Chart.yaml").read_text()


def test_paths_named_by_chart_yaml_exist() -> None:
    text = (CHART / "Chart.yaml").read_text()
    paths = re.findall(r"\b((?:deploy|helm|docs|knative)/[\w./-]+\.\w+)", text)
    assert paths, "Chart.yaml names the install recipe"
    for p in paths:
        assert (ROOT / p).is_file(), f"Chart.yaml points at {p}, which does not exist"


def test_kind_recipe_ships_config_gc() -> None:
    kind_sh = (ROOT / "deploy" / "kind" / "kind.sh").read_text()
    m = re.search(r"configmap/config-gc .*?-p '([^']+)'", kind_sh, re.S)
    assert m, "kind.sh patches config-gc"
    data = yaml.safe_load(m.group(1))["data"]
    assert int(data["max-non-active-revisions"]) <= 2 and data["min-non-active-revisions"] == "0"


def test_examples_and_kind_values_are_rendered_by_the_tests() -> None:
    assert {str(f) for fs in VALUE_SETS.values() for f in fs} == {str(EXAMPLES / "gpu-values.yaml"), str(KIND_VALUES)}


# -- item 1: old revisions report 0 / inactive (the scaler reads PodAutoscalers, least privilege) --------------------------

@pytest.mark.parametrize("name", SETS)
def test_scaler_reads_podautoscalers_with_a_namespaced_read_only_role(name: str) -> None:
    docs = render(name)
    dep = _one(docs, "Deployment", "pickspin-scaler")["spec"]["template"]["spec"]
    assert "--revision-reachability" in dep["containers"][0]["args"]
    assert dep["automountServiceAccountToken"] is True
    role = _one(docs, "Role", "pickspin-scaler")
    assert role["metadata"]["namespace"] == "pickspin"
    assert role["rules"] == [{"apiGroups": ["autoscaling.internal.knative.dev"], "resources": ["podautoscalers"],
                              "verbs": ["get", "list", "watch"]}]
    rb = _one(docs, "RoleBinding", "pickspin-scaler")
    assert rb["roleRef"]["name"] == "pickspin-scaler"
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": dep["serviceAccountName"], "namespace": "pickspin"}]
    assert not any(d["kind"] in ("ClusterRole", "ClusterRoleBinding") for d in docs)


def test_reachability_off_mounts_no_token_and_grants_nothing() -> None:
    out = run_helm("template", "pickspin", str(CHART), "--set", "scaler.revisionReachability=false").stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    dep = _one(docs, "Deployment", "pickspin-scaler")["spec"]["template"]["spec"]
    assert dep["automountServiceAccountToken"] is False and "--revision-reachability" not in dep["containers"][0]["args"]
    assert not any(d["kind"] == "Role" and d["metadata"]["name"] == "pickspin-scaler" for d in docs)


# -- item 11: TLS between KEDA and the scaler ------------------------------------------------------------------------

def test_scaler_tls_wires_server_probes_keda_and_helm_test() -> None:
    from .conftest import validate_cr

    out = run_helm("template", "pickspin", str(CHART), "-n", "pickspin", "--set", "scaler.tls.secretName=scaler-tls",
                   "--set", "scaler.tls.clientAuth=true").stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    c = _one(docs, "Deployment", "pickspin-scaler")["spec"]["template"]["spec"]["containers"][0]
    for flag in ("--tls-cert=/etc/pickspin/tls/tls.crt", "--tls-key=/etc/pickspin/tls/tls.key",
                 "--tls-client-ca=/etc/pickspin/tls/ca.crt"):
        assert flag in c["args"]
    # kubelet's gRPC probe cannot do TLS
    assert c["readinessProbe"] == {"tcpSocket": {"port": 6000}, "periodSeconds": 5}
    ta = _one(docs, "TriggerAuthentication", "pickspin-scaler-tls")
    validate_cr(ta)
    assert {p["parameter"] for p in ta["spec"]["secretTargetRef"]} == {"caCert", "tlsClientCert", "tlsClientKey"}
    for ksvc in _backends(docs):
        so = kn.autoscaler_keda_scaled_object(ksvc, f"{ksvc['metadata']['name']}-00001", "pickspin")
        validate_cr(so)
        assert so["spec"]["triggers"][0]["authenticationRef"] == {"name": "pickspin-scaler-tls"}
        assert kn.override_of(ksvc) == kn.scaled_object_override(kn.spec_from_ksvc(ksvc))  # the builder agrees
    test_pod = _one(docs, "Pod", "pickspin-test-scaler-health")
    script = test_pod["spec"]["containers"][0]["args"][0]
    compile(script, "scaler-health", "exec")
    assert "grpc.secure_channel" in script and "certificate_chain" in script
    plain = _one(render("default"), "Pod", "pickspin-test-scaler-health")["spec"]["containers"][0]["args"][0]
    compile(plain, "scaler-health", "exec")
    assert "grpc.insecure_channel" in plain


# -- item 3: roll out by tag (pin the serving revision, smoke-test the new one at 0 %, promote) ---------------------

def test_rollout_pins_the_serving_revision_and_tags_the_new_one(tmp_path: Any) -> None:
    from .conftest import validate_cr

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    values["models"][0]["backend"]["rollout"] = {"pin_revision": "smollm2-llamacpp-00001"}
    f = tmp_path / "rollout.yaml"
    f.write_text(yaml.safe_dump({"models": values["models"]}))
    out = run_helm("template", "pickspin", str(CHART), "-n", "pickspin", "-f", str(f)).stdout
    ksvc = _ksvc([d for d in yaml.safe_load_all(out) if d], "smollm2-llamacpp")
    validate_cr(ksvc)
    assert ksvc["spec"]["traffic"] == [{"revisionName": "smollm2-llamacpp-00001", "percent": 100},
                                       {"latestRevision": True, "percent": 0, "tag": "candidate"}]
    assert "traffic" not in _ksvc(render("default"), "smollm2-llamacpp")["spec"]  # promoted: latest serves
    values["models"][0]["backend"]["rollout"] = {"pin_revision": "Bad_Name"}
    f.write_text(yaml.safe_dump({"models": values["models"]}))
    p = run_helm("template", "pickspin", str(CHART), "-f", str(f), check=False)
    assert p.returncode != 0 and "pin_revision" in p.stderr
