"""``pickspin scaler``: run the KEDA external scaler (gRPC, default port 6000).

Import is cheap: grpc and the server load inside the command function.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

DEFAULT_PROMETHEUS = "http://127.0.0.1:9090"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "scaler", help="run the KEDA external scaler (Spin) over Prometheus",
        description="KEDA external scaler: Little's law with warm-pool floors and scale-to-zero, fed by Prometheus.")
    p.add_argument("--host", default=os.environ.get("PICKSPIN_SCALER_HOST") or "127.0.0.1",
                   help="gRPC bind address (default $PICKSPIN_SCALER_HOST or 127.0.0.1; in a pod, the pod IP)")
    p.add_argument("--metrics-host", default=os.environ.get("PICKSPIN_SCALER_METRICS_HOST") or None,
                   help="bind address of /metrics (default: the same as --host)")
    p.add_argument("--port", type=int, default=int(os.environ.get("PICKSPIN_SCALER_PORT", "6000")),
                   help="gRPC port (default 6000)")
    p.add_argument("--metrics-port", type=int, default=int(os.environ.get("PICKSPIN_SCALER_METRICS_PORT", "9102")),
                   help="HTTP port of the scaler's own /metrics (default 9102; -1 disables)")
    p.add_argument("--push-port", type=int, default=int(os.environ.get("PICKSPIN_SCALER_PUSH_PORT", "-1")),
                   help="HTTP port for the router's demand push, POST /v1/demand (default -1: off)")
    p.add_argument("--prometheus", default=os.environ.get("PICKSPIN_PROMETHEUS_URL", DEFAULT_PROMETHEUS),
                   help="Prometheus base URL when the trigger has no prometheusAddress "
                        f"(default $PICKSPIN_PROMETHEUS_URL or {DEFAULT_PROMETHEUS})")
    p.add_argument("--poll-interval", type=float, default=2.0, help="seconds between Prometheus polls (default 2)")
    p.add_argument("--max-staleness", type=float, default=60.0,
                   help="serve the last good values this long when Prometheus is unreachable, then UNAVAILABLE "
                        "(default 60)")
    p.add_argument("--query-timeout", type=float, default=2.0, help="Prometheus query timeout, s (default 2)")
    p.add_argument("--prometheus-bearer-token-file", default=os.environ.get("PICKSPIN_PROMETHEUS_TOKEN_FILE"),
                   help="send 'Authorization: Bearer <token>' read from this file (re-read when it changes); "
                        "only ever sent to --prometheus and the --allow-prometheus addresses")
    p.add_argument("--allow-prometheus", action="append", default=_env_list("PICKSPIN_PROMETHEUS_ALLOW"),
                   metavar="URL", help="another Prometheus a trigger's prometheusAddress may name (repeatable; "
                   "$PICKSPIN_PROMETHEUS_ALLOW, comma-separated). Any other address is INVALID_ARGUMENT")
    p.add_argument("--poll-timeout", type=float, default=None,
                   help="bound on one poll cycle, s (default: query timeout x 5 + 1)")
    p.add_argument("--tls-cert", default=os.environ.get("PICKSPIN_SCALER_TLS_CERT"),
                   help="PEM certificate for the gRPC port (with --tls-key; default plaintext)")
    p.add_argument("--tls-key", default=os.environ.get("PICKSPIN_SCALER_TLS_KEY"), help="PEM private key")
    p.add_argument("--tls-client-ca", default=os.environ.get("PICKSPIN_SCALER_TLS_CLIENT_CA"),
                   help="PEM CA: require client certificates signed by it (mutual TLS)")
    p.add_argument("--grace", type=float, default=5.0, help="graceful-shutdown period, s (default 5)")
    p.add_argument("--metrics-namespace", default=os.environ.get("PICKSPIN_METRICS_NAMESPACE") or None,
                   help="namespace label of the router's series for the --config models (as the chart's "
                        "triggers set metricsNamespace), so pre-poll and triggers ask the same queries")
    p.add_argument("--revision-reachability", action="store_true",
                   default=os.environ.get("PICKSPIN_REVISION_REACHABILITY", "") in ("1", "true"),
                   help="answer 0 / inactive for Knative revisions whose PodAutoscaler is Unreachable (old "
                        "revisions); reads podautoscalers in --reachability-namespace (RBAC: get/list)")
    p.add_argument("--reachability-namespace", action="append", default=None,
                   help="namespace whose PodAutoscalers are read (repeatable; default --metrics-namespace)")
    p.add_argument("--kube-api", default=None,
                   help="Kubernetes API URL for --revision-reachability (default: in-cluster service account)")
    p.add_argument("--config", default=None,
                   help="service matrix YAML: poll its models from the start (optional; triggers add more)")
    p.set_defaults(func=run)
    return p


def _env_list(name: str) -> list[str]:
    return [x.strip() for x in os.environ.get(name, "").split(",") if x.strip()]


def configs(args: argparse.Namespace) -> tuple[Any, Any]:
    """(PollerConfig, ServerConfig) from the parsed arguments; SystemExit naming a bad flag."""
    from .metadata import normalize_address
    from .prom import PollerConfig
    from .server import ServerConfig

    for name in ("poll_interval", "max_staleness", "query_timeout", "poll_timeout"):
        v = getattr(args, name)
        if v is not None and v <= 0:
            raise SystemExit(f"pickspin scaler: --{name.replace('_', '-')} must be > 0")
    try:
        default = normalize_address(args.prometheus)
        allowed = tuple(normalize_address(a) for a in args.allow_prometheus)
    except ValueError as e:
        raise SystemExit(f"pickspin scaler: bad Prometheus URL: {e}") from None
    pconf = PollerConfig(default_address=default, interval_s=args.poll_interval,
                         max_staleness_s=args.max_staleness, query_timeout_s=args.query_timeout,
                         bearer_token_file=args.prometheus_bearer_token_file, allowed_addresses=allowed,
                         poll_timeout_s=args.poll_timeout)
    sconf = ServerConfig(host=args.host, port=args.port, metrics_host=args.metrics_host, grace_s=args.grace,
                         metrics_port=None if args.metrics_port < 0 else args.metrics_port,
                         push_port=None if args.push_port < 0 else args.push_port,
                         tls_cert_file=args.tls_cert, tls_key_file=args.tls_key,
                         tls_client_ca_file=args.tls_client_ca)
    return pconf, sconf


def run(args: argparse.Namespace) -> int:
    import asyncio

    from .prom import Poller, ScalerMetrics
    from .server import ScalerServer, tune_process

    pconf, sconf = configs(args)
    metrics = ScalerMetrics()
    poller = Poller(pconf, metrics=metrics)
    if args.config:
        for md in metadata_from_config(args.config, namespace=args.metrics_namespace):
            poller.subscribe(md, pinned=True)
    tune_process()
    asyncio.run(ScalerServer(sconf, poller=poller, metrics=metrics,
                             reachability=reachability_from_args(args)).serve_until_signal())
    return 0


def reachability_from_args(args: argparse.Namespace) -> Any:
    """A :class:`~pickspin_scaler.reachability.Reachability` when --revision-reachability is on, else None."""
    if not args.revision_reachability:
        return None
    from .reachability import Reachability, ReachabilityConfig

    namespaces = tuple(args.reachability_namespace or ([args.metrics_namespace] if args.metrics_namespace else []))
    if not namespaces:
        raise SystemExit("pickspin scaler: --revision-reachability needs --reachability-namespace "
                         "(or --metrics-namespace)")
    if args.kube_api:
        return Reachability(ReachabilityConfig(api_url=args.kube_api, namespaces=namespaces))
    try:
        return Reachability(ReachabilityConfig.in_cluster(namespaces))
    except RuntimeError as e:
        raise SystemExit(f"pickspin scaler: {e}") from None


def metadata_from_config(path: str | None, namespace: str | None = None) -> list[Any]:
    """One :class:`ScalerMetadata` per model of the service matrix (same values as the Helm chart's triggers)."""
    from pickspin.config import load_config
    from pickspin.contract import trigger_metadata

    from .metadata import parse_metadata

    matrix = load_config(path)
    return [parse_metadata(trigger_metadata(matrix, m, metrics_namespace=namespace)) for m in matrix.models]
