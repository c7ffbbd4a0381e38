"""``pickspin backends``: manage model backends on a cluster (Knative Services scaled by KEDA).

Talks to the cluster with the Kubernetes Python client: Knative Services through
``CustomObjectsApi`` on ``serving.knative.dev/v1``, the router's service matrix through the
``pickspin-config`` ConfigMap, and (for ``status``) the revision's Deployment, its ScaledObject
and recent events. Every change prints the equivalent ``kn service create|update`` command;
``--dry-run`` prints what would be sent and changes nothing (no API call at all).

After a change to the service matrix the router gets a new revision (annotation
``pickspin.dev/config-sha256`` on its template), because the router reads its config at start.
If the release is managed by Helm, prefer changing the chart's values: ``helm upgrade`` restores
the chart's view of backends and config.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

import yaml

from . import knative as kn

CONFIG_KEY = "config.yaml"
A_CONFIG_SHA = "pickspin.dev/config-sha256"
BACKEND_SELECTOR = f"{kn.L_PART_OF}=pickspin,{kn.L_COMPONENT}=backend"


class CliError(Exception):
    """A user-facing error; exit code 1 (2 for bad input)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# -- argument parsing ----------------------------------------------------------------------
def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("cluster")
    g.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"), help="kubeconfig file (default $KUBECONFIG)")
    g.add_argument("--context", default=None, help="kubeconfig context")
    g.add_argument("-n", "--namespace", default=os.environ.get("PICKSPIN_NAMESPACE", "pickspin"),
                   help="namespace (default $PICKSPIN_NAMESPACE or pickspin)")
    g.add_argument("--configmap", default="pickspin-config", help="ConfigMap with the service matrix")
    g.add_argument("--router", default="pickspin-router", help="the router's Knative Service")
    return p


def _spec_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", required=required, help="model name (as clients request it)")
    g.add_argument("--tier", choices=["small", "medium", "large"], default=None if not required else "small")
    g.add_argument("--capability", metavar="LOW,MEDIUM,HIGH",
                   help="share of each complexity class handled well, e.g. 0.9,0.6,0.2")
    cost = g.add_mutually_exclusive_group()
    cost.add_argument("--cost-per-1k", type=float, help="price per 1K tokens")
    cost.add_argument("--cost-per-gpu-second", type=float, help="price per GPU-second")
    g.add_argument("--kind", choices=["vllm", "tgi", "trtllm", "openai"])
    g.add_argument("--served-model-name")
    g.add_argument("--expected-latency", type=float, help="latency prior, s")
    s = p.add_argument_group("spin")
    s.add_argument("--concurrency", type=int, help="c: containerConcurrency and the scaler's target")
    s.add_argument("--warm-pool", type=int, help="replicas kept warm")
    s.add_argument("--max-replicas", type=int, help="max-scale")
    s.add_argument("--idle-seconds", type=float, help="tau: idle time before scale to zero")
    s.add_argument("--load-seconds", type=int, help="model load time (KEDA initialCooldownPeriod)")
    s.add_argument("--scaler-address", help="host:port of the PickSpin scaler (default pickspin-scaler.<ns>:6000)")
    c = p.add_argument_group("pod")
    c.add_argument("--image", required=required)
    c.add_argument("--arg", action="append", dest="args", metavar="ARG", help="container arg (repeat)")
    c.add_argument("--env", action="append", metavar="K=V", help="environment variable (repeat)")
    c.add_argument("--port", type=int)
    c.add_argument("--health-path")
    c.add_argument("--cpu", help="CPU request, e.g. 4")
    c.add_argument("--memory", help="memory request, e.g. 24Gi")
    c.add_argument("--memory-limit")
    c.add_argument("--gpus", type=int, help="nvidia.com/gpu limit")
    c.add_argument("--model-pvc", help="PersistentVolumeClaim with the weights (mounted read-only)")
    c.add_argument("--model-mount", help="mount path of the weights (default /models)")
    c.add_argument("--shm-size", help="memory-backed /dev/shm size (vLLM)")
    c.add_argument("--timeout", type=int, help="timeoutSeconds")
    c.add_argument("--response-start-timeout", type=int, help="responseStartTimeoutSeconds")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    common = _common()
    p: argparse.ArgumentParser = subparsers.add_parser(
        "backends", help="manage model backends on Kubernetes (Knative Services + KEDA)",
        description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = p.add_subparsers(dest="backends_command", metavar="ACTION")

    ls = sub.add_parser("list", parents=[common], help="list the backends and their scaling settings")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    add = sub.add_parser("add", parents=[common], help="create a backend's Knative Service and add it to the router")
    add.add_argument("name", help="Knative Service name = backend name in the router config")
    _spec_options(add, required=True)
    add.add_argument("--no-config", action="store_true", help="leave the router's config alone")
    add.add_argument("--dry-run", action="store_true", help="print the objects and the kn command; change nothing")
    add.set_defaults(func=cmd_add)

    up = sub.add_parser("update", parents=[common], help="change a backend (image, args, scaling, resources, ...)")
    up.add_argument("name")
    _spec_options(up, required=False)
    up.add_argument("--no-config", action="store_true", help="leave the router's config alone")
    up.add_argument("--dry-run", action="store_true")
    up.set_defaults(func=cmd_update)

    rm = sub.add_parser("remove", parents=[common], help="delete a backend and drop it from the router")
    rm.add_argument("name")
    rm.add_argument("--keep-config", action="store_true", help="leave the router's config alone")
    rm.add_argument("--dry-run", action="store_true")
    rm.set_defaults(func=cmd_remove)

    st = sub.add_parser("status", parents=[common], help="replicas, readiness, ScaledObject state, last scale events")
    st.add_argument("name", nargs="?")
    st.add_argument("--events", type=int, default=5, help="scale events per backend (default 5)")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    def _help(_: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=_help)
    return p


# -- the Kubernetes API --------------------------------------------------------------------
class Cluster:
    """Thin wrapper over the Kubernetes client (imported lazily)."""

    def __init__(self, args: argparse.Namespace) -> None:
        from kubernetes import client, config

        self.ns: str = args.namespace
        try:
            if args.kubeconfig or os.path.exists(os.path.expanduser("~/.kube/config")):
                self.api = config.new_client_from_config(config_file=args.kubeconfig, context=args.context)
            else:
                config.load_incluster_config()
                self.api = client.ApiClient()
        except Exception as e:  # kubeconfig missing or malformed
            raise CliError(f"cannot load Kubernetes credentials: {e}") from None
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)

    # Knative Services
    def list_ksvc(self, selector: str | None = None) -> list[dict[str, Any]]:
        out: dict[str, Any] = self.custom.list_namespaced_custom_object(
            kn.KSVC_GROUP, kn.KSVC_VERSION, self.ns, kn.KSVC_PLURAL, label_selector=selector or "")  # type: ignore[assignment]
        return list(out.get("items", []))

    def get_ksvc(self, name: str) -> dict[str, Any] | None:
        return self._get(lambda: self.custom.get_namespaced_custom_object(
            kn.KSVC_GROUP, kn.KSVC_VERSION, self.ns, kn.KSVC_PLURAL, name))

    def create_ksvc(self, obj: dict[str, Any]) -> dict[str, Any]:
        res: dict[str, Any] = self.custom.create_namespaced_custom_object(  # type: ignore[assignment]
            kn.KSVC_GROUP, kn.KSVC_VERSION, self.ns, kn.KSVC_PLURAL, obj)
        return res

    def replace_ksvc(self, obj: dict[str, Any]) -> dict[str, Any]:
        res: dict[str, Any] = self.custom.replace_namespaced_custom_object(  # type: ignore[assignment]
            kn.KSVC_GROUP, kn.KSVC_VERSION, self.ns, kn.KSVC_PLURAL, obj["metadata"]["name"], obj)
        return res

    def delete_ksvc(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(kn.KSVC_GROUP, kn.KSVC_VERSION, self.ns, kn.KSVC_PLURAL, name)

    def get_scaled_object(self, name: str) -> dict[str, Any] | None:
        return self._get(lambda: self.custom.get_namespaced_custom_object(
            kn.KEDA_GROUP, kn.KEDA_VERSION, self.ns, "scaledobjects", name))

    # ConfigMap
    def get_configmap(self, name: str) -> Any:
        return self._get(lambda: self.core.read_namespaced_config_map(name, self.ns))

    def replace_configmap(self, cm: Any) -> None:
        self.core.replace_namespaced_config_map(cm.metadata.name, self.ns, cm)

    # status
    def get_deployment(self, name: str) -> Any:
        return self._get(lambda: self.apps.read_namespaced_deployment(name, self.ns))

    def events_for(self, name: str) -> list[Any]:
        return list(self.core.list_namespaced_event(self.ns, field_selector=f"involvedObject.name={name}").items)

    @staticmethod
    def _get(fn: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return fn()
        except ApiException as e:
            if e.status == 404:
                return None
            raise


def _api_error(e: Exception) -> str:
    status = getattr(e, "status", None)
    body = getattr(e, "body", None)
    msg = ""
    if body:
        try:
            msg = json.loads(body).get("message", "")
        except (ValueError, AttributeError):
            msg = str(body)[:300]
    return f"Kubernetes API error {status} {getattr(e, 'reason', '')}: {msg}".strip()


# -- spec from arguments -------------------------------------------------------------------
def _parse_capability(v: str) -> dict[str, float]:
    parts = [p.strip() for p in v.split(",")]
    if len(parts) != 3:
        raise CliError("--capability: give three numbers LOW,MEDIUM,HIGH in [0, 1]", 2)
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise CliError("--capability: not a number", 2) from None
    if not all(0 <= x <= 1 for x in vals):
        raise CliError("--capability: each value must be in [0, 1]", 2)
    return dict(zip(("low", "medium", "high"), vals, strict=True))


def _parse_env(items: list[str] | None) -> dict[str, str] | None:
    if items is None:
        return None
    env: dict[str, str] = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not k:
            raise CliError(f"--env {it!r}: expected NAME=VALUE", 2)
        env[k] = v
    return env


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """BackendSpec fields given on the command line (None = not given)."""
    o: dict[str, Any] = {
        "model": args.model, "tier": args.tier, "kind": args.kind, "served_model_name": args.served_model_name,
        "expected_latency_s": args.expected_latency, "concurrency": args.concurrency, "warm_pool": args.warm_pool,
        "max_replicas": args.max_replicas, "idle_seconds": args.idle_seconds, "load_seconds": args.load_seconds,
        "scaler_address": args.scaler_address, "image": args.image,
        "args": tuple(args.args) if args.args is not None else None, "env": _parse_env(args.env), "port": args.port,
        "health_path": args.health_path, "cpu": args.cpu, "memory": args.memory, "memory_limit": args.memory_limit,
        "gpus": args.gpus, "model_claim": args.model_pvc, "model_mount": args.model_mount, "shm_size": args.shm_size,
        "timeout_seconds": args.timeout, "response_start_timeout_seconds": args.response_start_timeout,
    }
    if args.capability:
        o["capability"] = _parse_capability(args.capability)
    if args.cost_per_1k is not None:
        o["cost"] = {"per_1k_tokens": args.cost_per_1k}
    elif args.cost_per_gpu_second is not None:
        o["cost"] = {"per_gpu_second": args.cost_per_gpu_second}
    return {k: v for k, v in o.items() if v is not None}


def _check(spec: kn.BackendSpec) -> None:
    errs = kn.check_spec(spec)
    if errs:
        raise CliError("invalid backend:\n  " + "\n  ".join(errs), 2)


# -- the router's config -------------------------------------------------------------------
def _load_matrix(cm: Any, source: str) -> dict[str, Any]:
    from pickspin.config import parse_config

    text = (cm.data or {}).get(CONFIG_KEY) if cm is not None else None
    if not text:
        raise CliError(f"{source}: no {CONFIG_KEY} key")
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise CliError(f"{source}: {CONFIG_KEY} is not a mapping")
    parse_config(raw, source)  # the current config must be valid before we touch it
    return raw


def _validated_yaml(raw: dict[str, Any], source: str) -> str:
    from pickspin.config import parse_config

    parse_config(raw, source)
    return yaml.safe_dump(raw, sort_keys=False, default_flow_style=False)


def upsert_model(raw: dict[str, Any], spec: kn.BackendSpec, namespace: str) -> dict[str, Any]:
    """Add or update ``spec``'s model and backend in a raw service matrix (returns a copy)."""
    out = copy.deepcopy(raw)
    entry = kn.config_model_entry(spec, namespace)
    models: list[dict[str, Any]] = out.setdefault("models", [])
    for m in models:
        if m.get("name") == spec.model:
            for k in ("tier", "capability", "cost", "scaling"):
                m[k] = entry[k]
            backends = m.setdefault("backends", [])
            for i, b in enumerate(backends):
                if b.get("name") == spec.name:
                    backends[i] = {**b, **entry["backends"][0]}
                    break
            else:
                backends.append(entry["backends"][0])
            return out
    models.append(entry)
    return out


def drop_backend(raw: dict[str, Any], name: str) -> tuple[dict[str, Any], bool]:
    """Remove backend ``name`` (and its model if it was the model's only backend)."""
    out = copy.deepcopy(raw)
    found = False
    keep = []
    for m in out.get("models", []):
        bs = [b for b in m.get("backends", []) if b.get("name") != name]
        if len(bs) != len(m.get("backends", [])):
            found = True
        if bs:
            m["backends"] = bs
            keep.append(m)
    out["models"] = keep
    return out, found


def _model_in_matrix(raw: Mapping[str, Any], backend: str) -> dict[str, Any] | None:
    for m in raw.get("models", []):
        for b in m.get("backends", []):
            if b.get("name") == backend:
                return dict(m)
    return None


def _write_config(cl: Cluster, cm: Any, new_raw: dict[str, Any], args: argparse.Namespace) -> None:
    text = "# Managed by `pickspin backends` (and the Helm chart, if installed with it).\n" + _validated_yaml(
        new_raw, f"configmap {args.namespace}/{args.configmap}")
    cm.data = {**(cm.data or {}), CONFIG_KEY: text}
    cl.replace_configmap(cm)
    print(f"configmap/{args.configmap}: router config updated")
    router = cl.get_ksvc(args.router)
    if router is None:
        print(f"warning: router Knative Service {args.router!r} not found; restart the router to load the config",
              file=sys.stderr)
        return
    anns = router["spec"]["template"].setdefault("metadata", {}).setdefault("annotations", {})
    anns[A_CONFIG_SHA] = hashlib.sha256(text.encode()).hexdigest()
    cl.replace_ksvc(router)
    print(f"ksvc/{args.router}: new revision to load the config ({A_CONFIG_SHA}={anns[A_CONFIG_SHA][:12]}...)")


# -- commands ------------------------------------------------------------------------------
def _run(fn: Any, args: argparse.Namespace) -> int:
    try:
        return int(fn(args) or 0)
    except CliError as e:
        print(f"pickspin backends: {e}", file=sys.stderr)
        return e.code
    except Exception as e:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        if isinstance(e, ApiException):
            print(f"pickspin backends: {_api_error(e)}", file=sys.stderr)
            return 1
        if isinstance(e, (urllib3.exceptions.HTTPError, ConnectionError)):
            print(f"pickspin backends: cannot reach the Kubernetes API: {e}", file=sys.stderr)
            return 1
        raise


def _print_kn(spec: kn.BackendSpec, ns: str, action: str) -> None:
    print("# kn equivalent:")
    print(kn.kn_command_str(spec, ns, action=action))
    for gap in kn.kn_gaps(spec):
        print(f"# not expressible with kn, set with kubectl (or use this command): {gap}")


def cmd_add(args: argparse.Namespace) -> int:
    return _run(_add, args)


def _default_scaler(ns: str) -> str:
    return f"pickspin-scaler.{ns}.svc.cluster.local:6000"


def _add(args: argparse.Namespace) -> int:
    ov = _overrides(args)
    ov.setdefault("scaler_address", _default_scaler(args.namespace))
    ov.setdefault("metrics_namespace", args.namespace)  # the scaler's PromQL filter, as the chart sets it
    spec = kn.BackendSpec(name=args.name, **ov)
    _check(spec)
    obj = kn.knative_service(spec, args.namespace)
    if args.dry_run:
        print("# Knative Service (dry run, nothing sent):")
        print(yaml.safe_dump(obj, sort_keys=False), end="")
        if not args.no_config:
            print("# model entry for the router's config:")
            print(yaml.safe_dump([kn.config_model_entry(spec, args.namespace)], sort_keys=False), end="")
        _print_kn(spec, args.namespace, "create")
        return 0
    cl = Cluster(args)
    cm = None
    raw: dict[str, Any] = {}
    if not args.no_config:
        cm = cl.get_configmap(args.configmap)
        if cm is None:
            raise CliError(f"configmap {args.namespace}/{args.configmap} not found (use --no-config to skip)")
        raw = _load_matrix(cm, f"configmap {args.namespace}/{args.configmap}")
        if _model_in_matrix(raw, spec.name):
            raise CliError(f"backend {spec.name!r} is already in the router config; use update")
        raw = upsert_model(raw, spec, args.namespace)
        _validated_yaml(raw, "new router config")  # fail before creating anything
    if cl.get_ksvc(spec.name) is not None:
        raise CliError(f"ksvc {args.namespace}/{spec.name} already exists; use update")
    cl.create_ksvc(obj)
    print(f"ksvc/{spec.name} created (model {spec.model}, c={spec.concurrency}, max {spec.max_replicas}, "
          f"warm {spec.warm_pool}, tau {spec.idle_seconds:g}s)")
    if cm is not None:
        _write_config(cl, cm, raw, args)
    _print_kn(spec, args.namespace, "create")
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    return _run(_update, args)


def _merge_ksvc(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """Desired labels/annotations/template over the live object, keeping metadata the server owns."""
    out = copy.deepcopy(current)
    meta = out["metadata"]
    meta.setdefault("labels", {}).update(desired["metadata"]["labels"])
    meta.setdefault("annotations", {}).update(desired["metadata"]["annotations"])
    tmpl = out.setdefault("spec", {}).setdefault("template", {})
    tmeta = tmpl.setdefault("metadata", {})
    tmeta.pop("name", None)  # a pinned revision name would clash with the new revision
    tmeta.setdefault("labels", {}).update(desired["spec"]["template"]["metadata"]["labels"])
    tmeta.setdefault("annotations", {}).update(desired["spec"]["template"]["metadata"]["annotations"])
    tmpl["spec"] = desired["spec"]["template"]["spec"]
    out.pop("status", None)
    return out


def _update(args: argparse.Namespace) -> int:
    cl = Cluster(args)
    current = cl.get_ksvc(args.name)
    if current is None:
        raise CliError(f"ksvc {args.namespace}/{args.name} not found (use add)")
    base = kn.spec_from_ksvc(current)
    cm = None
    raw: dict[str, Any] = {}
    if not args.no_config:
        cm = cl.get_configmap(args.configmap)
        if cm is not None:
            raw = _load_matrix(cm, f"configmap {args.namespace}/{args.configmap}")
            m = _model_in_matrix(raw, args.name)
            if m is not None:
                b = next(b for b in m["backends"] if b.get("name") == args.name)
                base = dataclasses.replace(base, capability=m["capability"], cost=m["cost"],
                                           expected_latency_s=float(b.get("expected_latency_s", 1.0)),
                                           simulated=bool(b.get("simulated", False)))
    ov = _overrides(args)
    if not ov:
        raise CliError("nothing to update: give at least one option (e.g. --image, --concurrency)", 2)
    spec = dataclasses.replace(base, **ov)
    _check(spec)
    desired = _merge_ksvc(current, kn.knative_service(spec, args.namespace))
    if cm is not None:
        if spec.model != base.model and _model_in_matrix(raw, args.name):
            raw, _ = drop_backend(raw, args.name)
        raw = upsert_model(raw, spec, args.namespace)
        _validated_yaml(raw, "new router config")
    if args.dry_run:
        print("# Knative Service after update (dry run, nothing sent):")
        print(yaml.safe_dump(desired, sort_keys=False), end="")
        _print_kn(spec, args.namespace, "update")
        return 0
    cl.replace_ksvc(desired)
    print(f"ksvc/{spec.name} updated: {', '.join(sorted(ov))}")
    if cm is not None:
        _write_config(cl, cm, raw, args)
    _print_kn(spec, args.namespace, "update")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    return _run(_remove, args)


def _remove(args: argparse.Namespace) -> int:
    if args.dry_run:
        print(f"# would delete ksvc {args.namespace}/{args.name}"
              + ("" if args.keep_config else f" and drop it from configmap {args.configmap}"))
        print(f"# kn equivalent:\nkn service delete {args.name} --namespace {args.namespace}")
        return 0
    cl = Cluster(args)
    cm = None
    raw: dict[str, Any] = {}
    found = False
    if not args.keep_config:
        cm = cl.get_configmap(args.configmap)
        if cm is not None:
            raw, found = drop_backend(_load_matrix(cm, f"configmap {args.namespace}/{args.configmap}"), args.name)
            if found and not raw["models"]:
                raise CliError(f"{args.name!r} is the router's last backend; the config needs at least one model "
                               "(add another first, or use --keep-config)")
            if found:
                _validated_yaml(raw, "new router config")
    if cl.get_ksvc(args.name) is None:
        if not found:
            raise CliError(f"ksvc {args.namespace}/{args.name} not found")
        print(f"ksvc/{args.name} not found; removing it from the router config only")
    else:
        cl.delete_ksvc(args.name)
        print(f"ksvc/{args.name} deleted")
    if cm is not None and found:
        _write_config(cl, cm, raw, args)
    print(f"# kn equivalent:\nkn service delete {args.name} --namespace {args.namespace}")
    return 0


def _ready(obj: Mapping[str, Any] | None) -> str:
    if not obj:
        return "-"
    for c in obj.get("status", {}).get("conditions", []) or []:
        if c.get("type") == "Ready":
            return str(c.get("status", "Unknown"))
    return "Unknown"


def _rows(items: list[dict[str, Any]], matrix: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    rows = []
    for it in sorted(items, key=lambda o: o["metadata"]["name"]):
        try:
            spec = kn.spec_from_ksvc(it)
        except (KeyError, IndexError, ValueError):
            continue
        rows.append({
            "name": spec.name, "model": spec.model, "tier": spec.tier, "kind": spec.kind,
            "concurrency": spec.concurrency, "warm_pool": spec.warm_pool, "max_replicas": spec.max_replicas,
            "idle_seconds": spec.idle_seconds, "gpus": spec.gpus, "image": spec.image, "ready": _ready(it),
            "url": it.get("status", {}).get("url", ""),
            "in_config": None if matrix is None else _model_in_matrix(matrix, spec.name) is not None,
        })
    return rows


def cmd_list(args: argparse.Namespace) -> int:
    return _run(_list, args)


def _list(args: argparse.Namespace) -> int:
    cl = Cluster(args)
    items = cl.list_ksvc(BACKEND_SELECTOR)
    cm = cl.get_configmap(args.configmap)
    matrix = _load_matrix(cm, f"configmap {args.configmap}") if cm is not None else None
    rows = _rows(items, matrix)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    hdr = f"{'NAME':<22} {'MODEL':<22} {'TIER':<7} {'KIND':<7} {'C':>3} {'WARM':>4} {'MAX':>4} {'TAU':>6} {'READY':<7} CONFIG"
    print(hdr)
    for r in rows:
        cfg = "-" if r["in_config"] is None else ("yes" if r["in_config"] else "MISSING")
        print(f"{r['name']:<22} {r['model']:<22} {r['tier']:<7} {r['kind']:<7} {r['concurrency']:>3} "
              f"{r['warm_pool']:>4} {r['max_replicas']:>4} {r['idle_seconds']:>5g}s {r['ready']:<7} {cfg}")
    if matrix is not None:
        names = {r["name"] for r in rows}
        for m in matrix.get("models", []):
            for b in m.get("backends", []):
                if b.get("name") not in names:
                    print(f"note: {b.get('name')} (model {m.get('name')}) is in the router config but has no "
                          "Knative Service here", file=sys.stderr)
    return 0


def _event_time(e: Any) -> str:
    for attr in ("last_timestamp", "event_time", "first_timestamp"):
        t = getattr(e, attr, None)
        if t:
            return t.isoformat() if hasattr(t, "isoformat") else str(t)
    return ""


def cmd_status(args: argparse.Namespace) -> int:
    return _run(_status, args)


def _status(args: argparse.Namespace) -> int:
    cl = Cluster(args)
    if args.name:
        one = cl.get_ksvc(args.name)
        if one is None:
            raise CliError(f"ksvc {args.namespace}/{args.name} not found")
        items = [one]
    else:
        items = cl.list_ksvc(BACKEND_SELECTOR)
    out = []
    for it in sorted(items, key=lambda o: o["metadata"]["name"]):
        st = it.get("status", {}) or {}
        rev = st.get("latestReadyRevisionName") or st.get("latestCreatedRevisionName")
        row: dict[str, Any] = {"name": it["metadata"]["name"], "ready": _ready(it), "url": st.get("url", ""),
                               "revision": rev, "replicas": None, "ready_replicas": None,
                               "scaled_object": None, "events": []}
        if rev:
            dep_name = f"{rev}-deployment"
            dep = cl.get_deployment(dep_name)
            if dep is not None:
                row["replicas"] = int(dep.spec.replicas or 0)
                row["ready_replicas"] = int(dep.status.ready_replicas or 0)
            so = cl.get_scaled_object(rev)
            if so is not None:
                conds = {c.get("type"): c.get("status") for c in so.get("status", {}).get("conditions", []) or []}
                row["scaled_object"] = {"name": rev, "ready": conds.get("Ready"), "active": conds.get("Active"),
                                        "fallback": conds.get("Fallback")}
            evs = cl.events_for(dep_name) + cl.events_for(rev)
            evs.sort(key=_event_time)
            row["events"] = [{"time": _event_time(e), "reason": e.reason, "object": e.involved_object.name,
                              "message": e.message} for e in evs[-args.events:]]
        out.append(row)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for r in out:
        so = r["scaled_object"]
        so_txt = ("no ScaledObject yet" if so is None else
                  f"ScaledObject {so['name']}: ready={so['ready']} active={so['active']} fallback={so['fallback']}")
        reps = "-" if r["replicas"] is None else f"{r['ready_replicas']}/{r['replicas']}"
        print(f"{r['name']}: ready={r['ready']} revision={r['revision'] or '-'} replicas(ready/desired)={reps}")
        print(f"  {so_txt}")
        if r["url"]:
            print(f"  url: {r['url']}")
        for e in r["events"]:
            print(f"  {e['time']}  {e['reason']:<28} {e['object']}: {e['message']}")
    return 0
