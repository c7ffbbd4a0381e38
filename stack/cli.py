"""The ``pickspin`` command. Each subcommand lives with its component and registers itself here.

A component module exposes ``add_parser(subparsers)`` which adds its subcommand and sets
``func`` on it. Modules are imported when the CLI starts, so they must keep heavy imports
(onnxruntime, grpc, torch) inside their command functions.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from pickspin import __version__
from pickspin.config import ConfigError

# Order = order in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "functions.router.cli",  # router, route
    "functions.scorer.cli",  # scorer
    "pickspin_scaler.cli",  # scaler
    "stack.localstack",  # up
    "stack.simbackend",  # sim-backend
    "stack.llamacpp",  # llm-backend
    "stack.k8s.cli",  # backends
    "stack.sim.cli",  # sim
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pickspin", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"pickspin {__version__}")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMAND_MODULES:
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name and (mod.startswith(e.name) or e.name.startswith(mod.split(".")[0])):
                continue  # component not present in this build
            raise
        m.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except ConfigError as e:
        print(f"pickspin: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
