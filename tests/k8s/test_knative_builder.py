"""stack.k8s.knative: the builder shared by the chart's tests, knative/ and the CLI."""

from __future__ import annotations

import dataclasses
import json
import shlex

import pytest

from stack.k8s import knative as kn

SPEC = kn.BackendSpec(model="llama-3.1-8b", name="llama8b-vllm", tier="medium", kind="vllm",
                      image="vllm/vllm-openai:v0.10.1.1", args=("--model=/models/x", "--port=8000"),
                      concurrency=16, warm_pool=1, max_replicas=4, idle_seconds=600, gpus=1,
                      model_claim="pickspin-models", shm_size="2Gi", load_seconds=240)


def test_trigger_metadata_strings_and_keys() -> None:
    md = kn.trigger_metadata(SPEC)
    assert md == {"scalerAddress": kn.DEFAULT_SCALER_ADDRESS, "model": "llama-3.1-8b", "tier": "medium",
                  "concurrency": "16", "warmPool": "1", "idleSeconds": "600"}
    assert kn.trigger_metadata(dataclasses.replace(SPEC, idle_seconds=90.5))["idleSeconds"] == "90.5"


def test_override_has_what_autoscaler_keda_needs() -> None:
    so = kn.scaled_object_override(SPEC)
    s = so["spec"]
    assert s["minReplicaCount"] == 0 and s["maxReplicaCount"] == 4
    assert s["initialCooldownPeriod"] == 240
    assert "horizontalPodAutoscalerConfig" in s["advanced"]  # autoscaler-keda sets its name unchecked
    assert s["fallback"] == {"failureThreshold": 3, "replicas": 1}
    assert json.loads(kn.override_json(SPEC)) == so


def test_fallback_never_exceeds_max_replicas() -> None:
    spec = dataclasses.replace(SPEC, max_replicas=1, keda=kn.KedaSettings(fallback_replicas=3))
    assert kn.scaled_object_override(spec)["spec"]["fallback"]["replicas"] == 1


def test_autoscaler_keda_derivation() -> None:
    ksvc = kn.knative_service(SPEC, "ns1")
    so = kn.autoscaler_keda_scaled_object(ksvc, "llama8b-vllm-00003", "ns1")
    assert so["metadata"]["name"] == "llama8b-vllm-00003"
    assert so["spec"]["scaleTargetRef"]["name"] == "llama8b-vllm-00003-deployment"
    assert so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["name"] == "llama8b-vllm-00003"
    # max-scale wins over the override's maxReplicaCount, as in autoscaler-keda
    ksvc["spec"]["template"]["metadata"]["annotations"][kn.A_MAX] = "7"
    assert kn.autoscaler_keda_scaled_object(ksvc, "r", "ns1")["spec"]["maxReplicaCount"] == 7


def test_autoscaler_keda_derivation_refuses_advanced_without_hpa_config() -> None:
    ksvc = kn.knative_service(SPEC, "ns1")
    so = kn.scaled_object_override(SPEC)
    so["spec"]["advanced"] = {"scalingModifiers": {}}
    ksvc["spec"]["template"]["metadata"]["annotations"][kn.A_OVERRIDE] = json.dumps(so)
    with pytest.raises(ValueError, match="horizontalPodAutoscalerConfig"):
        kn.autoscaler_keda_scaled_object(ksvc, "r", "ns1")


def test_round_trip() -> None:
    ksvc = kn.knative_service(SPEC, "ns1")
    back = kn.spec_from_ksvc(ksvc)
    assert kn.knative_service(back, "ns1") == ksvc
    assert (back.model, back.concurrency, back.warm_pool, back.max_replicas, back.idle_seconds, back.gpus,
            back.model_claim, back.shm_size, back.load_seconds) == (
        SPEC.model, SPEC.concurrency, SPEC.warm_pool, SPEC.max_replicas, SPEC.idle_seconds, SPEC.gpus,
        SPEC.model_claim, SPEC.shm_size, SPEC.load_seconds)


def test_kn_command() -> None:
    cmd = kn.kn_command(SPEC, "ns1")
    assert cmd[:4] == ["kn", "service", "create", "llama8b-vllm"]
    assert "--arg=--model=/models/x" in cmd, "args starting with - must be passed as --arg=VALUE"
    assert cmd[cmd.index("--concurrency-limit") + 1] == "16"
    assert cmd[cmd.index("--limit") + 1] == "memory=2Gi,nvidia.com/gpu=1"
    ann = [cmd[i + 1] for i, c in enumerate(cmd) if c == "--annotation-revision"]
    over = next(a for a in ann if a.startswith(kn.A_OVERRIDE + "="))
    assert json.loads(over.split("=", 1)[1]) == kn.scaled_object_override(SPEC)
    assert shlex.split(kn.kn_command_str(SPEC, "ns1")) == cmd
    upd = kn.kn_command(SPEC, "ns1", action="update")
    assert upd[2] == "update" and "--cluster-local" not in upd
    gaps = " ".join(kn.kn_gaps(SPEC))
    assert "responseStartTimeoutSeconds=540" in gaps and "/dev/shm" in gaps and "read-only" in gaps
    with pytest.raises(ValueError):
        kn.kn_command(SPEC, "ns1", action="delete")


@pytest.mark.parametrize(("change", "message"), [
    ({"name": "Upper"}, "name: must be a DNS-1035 label"),
    ({"name": "x" * 55}, "name: must be a DNS-1035 label"),
    ({"image": ""}, "image: required"),
    ({"warm_pool": 5}, "warm_pool: must be <= max_replicas"),
    ({"response_start_timeout_seconds": 1000}, "response_start_timeout_seconds: must be <= timeout_seconds"),
    ({"tier": "xl"}, "tier: must be small, medium or large"),
    ({"idle_seconds": float("nan")}, "idle_seconds: must be a finite number"),
    ({"model": "a b"}, "model: must be a valid label value"),
])
def test_check_spec(change: dict, message: str) -> None:
    assert kn.check_spec(SPEC) == []
    errs = kn.check_spec(dataclasses.replace(SPEC, **change))
    assert any(e.startswith(message) for e in errs), errs
