"""Shared fixtures for the Kubernetes artefacts: helm rendering and the real CRD schemas.

The CRD schemas live in ../shared/k8s/crds (reference material beside the checkout). A fresh
clone has no ../shared: tests that need it skip and say so. helm comes from `make install`
(.venv/bin/helm); without it the helm tests skip with the reason.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "pickspin"
EXAMPLES = ROOT / "helm" / "examples"
KIND_VALUES = ROOT / "deploy" / "kind" / "values.yaml"
KNATIVE_DIR = ROOT / "knative"
BAD_VALUES = Path(__file__).resolve().parent / "bad_values"
SHARED = Path(os.environ.get("PICKSPIN_SHARED", ROOT.parent / "shared"))
CRDS = SHARED / "k8s" / "crds"
K8S_VERSION = "1.33.0"  # kind node v1.33 (deploy/kind/kind.sh)

#: (name, values files) rendered by the tests: the chart's defaults, the full GPU example, kind.
VALUE_SETS: dict[str, list[Path]] = {
    "default": [],
    "gpu-example": [EXAMPLES / "gpu-values.yaml"],
    "kind": [KIND_VALUES],
}


def helm_bin() -> str | None:
    venv = Path(sys.executable).parent / "helm"
    if venv.exists():
        return str(venv)
    return shutil.which("helm")


def need_helm() -> str:
    h = helm_bin()
    if not h:
        pytest.skip("helm not found (run `make install`, which puts helm v3.17.3 into .venv/bin)")
    return h


def need_crds() -> Path:
    if not CRDS.is_dir():
        msg = f"skipping: {CRDS} is absent (the CRD schemas live in ../shared/k8s/crds beside the checkout)"
        print(msg)
        pytest.skip(msg)
    return CRDS


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    h = need_helm()
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/pickspin-helm/cache", "HELM_CONFIG_HOME": "/tmp/pickspin-helm/config",
           "HELM_DATA_HOME": "/tmp/pickspin-helm/data", "KUBECONFIG": "/dev/null"}
    p = subprocess.run([h, *args], capture_output=True, text=True, timeout=60, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


@cache
def _render(name: str, namespace: str = "pickspin", release: str = "pickspin") -> tuple[dict[str, Any], ...]:
    args = ["template", release, str(CHART), "-n", namespace, "--kube-version", K8S_VERSION]
    for f in VALUE_SETS[name]:
        args += ["-f", str(f)]
    out = run_helm(*args).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def render(name: str) -> list[dict[str, Any]]:
    """The chart rendered with value set ``name`` (deep copies: tests may mutate)."""
    return copy.deepcopy(list(_render(name)))


def knative_docs() -> list[tuple[str, dict[str, Any]]]:
    """Every object in knative/*.yaml (and knative/alternatives/), with its file name."""
    out = []
    for f in sorted(KNATIVE_DIR.rglob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if d:
                out.append((str(f.relative_to(ROOT)), d))
    return out


# -- CRD schemas -> strict JSON Schema -------------------------------------------------------
def _strict(node: Any) -> Any:
    """openAPIV3Schema -> JSON Schema that rejects unknown fields.

    Objects with ``properties`` get ``additionalProperties: false`` unless the CRD marks them
    ``x-kubernetes-preserve-unknown-fields`` (then unknown fields are allowed, as the API server
    does). ``x-kubernetes-int-or-string`` becomes an integer-or-string type.
    """
    if isinstance(node, dict):
        n = {k: _strict(v) for k, v in node.items()}
        if n.get("x-kubernetes-int-or-string"):
            n.pop("type", None)
            n.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
        if (n.get("type") == "object" and "properties" in n and "additionalProperties" not in n
                and not n.get("x-kubernetes-preserve-unknown-fields")):
            n["additionalProperties"] = False
        return n
    if isinstance(node, list):
        return [_strict(x) for x in node]
    return node


@cache
def crd_schema(kind: str) -> dict[str, Any]:
    files = {
        ("serving.knative.dev", "Service"): "knative-serving-service.yaml",
        ("serving.knative.dev", "Revision"): "knative-serving-revision.yaml",
        ("serving.knative.dev", "Configuration"): "knative-serving-configuration.yaml",
        ("serving.knative.dev", "Route"): "knative-serving-route.yaml",
        ("keda.sh", "ScaledObject"): "keda.sh_scaledobjects.yaml",
        ("keda.sh", "TriggerAuthentication"): "keda.sh_triggerauthentications.yaml",
    }
    group, k = kind.split("/")
    path = need_crds() / files[(group, k)]
    crd = yaml.safe_load(path.read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    schema = _strict(version["schema"]["openAPIV3Schema"])
    # metadata is type: object without properties in CRDs; check the fields we use strictly.
    schema["properties"]["metadata"] = {
        "type": "object", "additionalProperties": False, "required": ["name"],
        "properties": {"name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
                       "namespace": {"type": "string"}, "generateName": {"type": "string"},
                       "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
                       "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                       "resourceVersion": {"type": "string"}, "uid": {"type": "string"},
                       "generation": {"type": "integer"}, "creationTimestamp": {}, "ownerReferences": {},
                       "finalizers": {"type": "array"}, "managedFields": {}}}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
    return schema


def validate_cr(obj: dict[str, Any]) -> None:
    """Validate a custom resource against its CRD's schema (strict); raises jsonschema.ValidationError."""
    import jsonschema

    group = obj["apiVersion"].split("/")[0]
    schema = crd_schema(f"{group}/{obj['kind']}")
    jsonschema.Draft7Validator(schema).validate(obj)


def validate_builtin(obj: dict[str, Any]) -> None:
    """Validate a built-in kind with kubernetes-validate (strict: unknown fields rejected)."""
    import kubernetes_validate

    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.fixture
def tmp_chart(tmp_path: Path) -> Iterator[Path]:
    dst = tmp_path / "pickspin"
    shutil.copytree(CHART, dst)
    yield dst
