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
    p.add_argument("--host", default=os.environ.get("PICKSPIN_SCALER_HOST", "0.0.0.0"),
                   help="gRPC bind address (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=int(os.environ.get("PICKSPIN_SCALER_PORT", "6000")),
                   help="gRPC port (default 6000)")
    p.add_argument("--metrics-port", type=int, default=int(os.environ.get("PICKSPIN_SCALER_METRICS_PORT", "9102")),
                   help="HTTP port of the scaler's own /metrics (default 9102; -1 disables)")
    p.add_argument("--prometheus", default=os.environ.get("PICKSPIN_PROMETHEUS_URL", DEFAULT_PROMETHEUS),
                   help="Prometheus base URL when the trigger has no prometheusAddress "
                        f"(default $PICKSPIN_PROMETHEUS_URL or {DEFAULT_PROMETHEUS})")
    p.add_argument("--poll-interval", type=float, default=2.0, help="seconds between Prometheus polls (default 2)")
    p.add_argument("--max-staleness", type=float, default=60.0,
                   help="serve the last good values this long when Prometheus is unreachable, then UNAVAILABLE "
                        "(default 60)")
    p.add_argument("--query-timeout", type=float, default=2.0, help="Prometheus query timeout, s (default 2)")
    p.add_argument("--prometheus-bearer-token-file", default=os.environ.get("PICKSPIN_PROMETHEUS_TOKEN_FILE"),
                   help="send 'Authorization: Bearer <token>' read from this file (re-read when it changes)")
    p.add_argument("--grace", type=float, default=5.0, help="graceful-shutdown period, s (default 5)")
    p.add_argument("--config", default=None,
                   help="service matrix YAML: poll its models from the start (optional; triggers add more)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import asyncio

    from .prom import Poller, PollerConfig, ScalerMetrics
    from .server import ScalerServer, ServerConfig, tune_process

    for name in ("poll_interval", "max_staleness", "query_timeout"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"pickspin scaler: --{name.replace('_', '-')} must be > 0")
    pconf = PollerConfig(default_address=args.prometheus.rstrip("/"), interval_s=args.poll_interval,
                         max_staleness_s=args.max_staleness, query_timeout_s=args.query_timeout,
                         bearer_token_file=args.prometheus_bearer_token_file)
    metrics = ScalerMetrics()
    poller = Poller(pconf, metrics=metrics)
    if args.config:
        for md in metadata_from_config(args.config):
            poller.subscribe(md, pinned=True)
    sconf = ServerConfig(host=args.host, port=args.port, grace_s=args.grace,
                         metrics_port=None if args.metrics_port < 0 else args.metrics_port)
    tune_process()
    asyncio.run(ScalerServer(sconf, poller=poller, metrics=metrics).serve_until_signal())
    return 0


def metadata_from_config(path: str | None) -> list[Any]:
    """One :class:`ScalerMetadata` per model of the service matrix (same values as the Helm chart's triggers)."""
    from pickspin.config import load_config
    from pickspin.contract import trigger_metadata

    from .metadata import parse_metadata

    matrix = load_config(path)
    return [parse_metadata(trigger_metadata(matrix, m)) for m in matrix.models]
