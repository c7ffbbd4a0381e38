"""``pickspin sim``: replay traces through the router's Pick and each autoscaler's Spin; write bench/results/sim.*.

Without ``--trace`` the scenarios of the sim config run (``make sim``); with ``--trace`` one ad-hoc scenario.
Heavy imports (numpy, matplotlib, the router) happen inside the command.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "bench" / "results"


def _csv(v: str) -> list[str]:
    return [x.strip() for x in v.split(",") if x.strip()]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("sim", help="trace-driven simulation: static vs Knative KPA vs KEDA threshold vs PickSpin",
                       description=__doc__)
    p.add_argument("--config", help="sim config YAML (default config/sim.yaml)")
    p.add_argument("--trace", help="azure-conv | azure-code | azure | servegen:<model>[:<client>] | diurnal | poisson | a CSV "
                                   "(timestamp,stream[,input_tokens,output_tokens]); default: the config's scenarios")
    p.add_argument("--scenario", type=_csv, help="comma-separated scenario names from the config (default: all)")
    p.add_argument("--hours", type=float, help="simulated duration (trace tiled or cut)")
    p.add_argument("--rate-per-day", type=float, help="bring the trace to this many requests/day")
    p.add_argument("--scale", choices=["stretch", "thin"], default="stretch",
                   help="how --rate-per-day lowers a real trace: stretch time (default) or thin requests")
    p.add_argument("--warmup", type=float, default=0.0,
                   help="seconds replayed before the measured window (the trace's own tail), not measured")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--policies", type=_csv, help="comma-separated (default: static,knative-kpa,keda-threshold,pickspin,static-peak)")
    p.add_argument("--routing", type=_csv, help="comma-separated routing variants (default: the config's)")
    p.add_argument("--prompt-pool", type=int, default=2000, help="distinct prompts sampled from MMLU-Pro (default 2000)")
    p.add_argument("--synthetic-prompts", action="store_true", help="templated prompts, no outcomes (no shared data)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output directory (default bench/results)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from .config import DEFAULT_SIM_CONFIG, Scenario, load_sim_config
    from .policies import POLICIES
    from .prompts import build_pool
    from .report import POLICY_ORDER, write_all
    from .runner import DEFAULT_POLICIES, estimates_for, run_scenario
    from .trace import SharedDataMissing

    # The simulated router's telemetry (circuit transitions, backends up/down) would log on every event
    # of a day-long replay; the results count what matters.
    logging.getLogger("pickspin.telemetry").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    cfg = load_sim_config(args.config)
    policies = args.policies or list(DEFAULT_POLICIES)
    for p in policies:
        if p not in POLICIES:
            print(f"pickspin sim: unknown policy {p!r} (have {', '.join(POLICIES)})", file=sys.stderr)
            return 2
    routings = args.routing or list(cfg.routing_variants)
    if args.trace:
        name = Path(args.trace).stem if Path(args.trace).is_file() else args.trace
        if args.rate_per_day:
            name += f"-{args.rate_per_day:.0f}-per-day"
        if args.hours:
            name += f"-{args.hours:g}h"
        scenarios = [Scenario(name=name.lower().replace("_", "-"), trace=args.trace, hours=args.hours,
                              rate_per_day=args.rate_per_day, scale=args.scale, warmup_s=args.warmup,
                              description=f"--trace {args.trace}")]
        primary = scenarios[0].name
    else:
        scenarios = [s for s in cfg.scenarios if not args.scenario or s.name in args.scenario]
        if not scenarios:
            print("pickspin sim: no scenario selected (see --scenario and the config's scenarios)", file=sys.stderr)
            return 2
        names = [s.name for s in scenarios]
        primary = cfg.primary_scenario if cfg.primary_scenario in names else names[0]
    rng = np.random.default_rng(args.seed)
    pool = build_pool(cfg, args.prompt_pool, rng, synthetic=args.synthetic_prompts)
    est = estimates_for(cfg, pool, routings, progress=not args.quiet)
    notes = list(pool.notes)
    for clf, e in est.items():
        if e.per_prompt is None:
            notes.append(f"classifier {clf!r} unavailable, its routing variant was not run: {e.reason}")
        else:
            notes.append(f"classifier {clf!r}: {len(pool)} prompts classified once in {e.seconds:.1f} s, "
                         f"sources {e.sources}")
    results = []
    for sc in scenarios:
        try:
            # --routing overrides every scenario; else each scenario's own list, else the config's
            results.append(run_scenario(cfg, sc, pool, est, policies=policies, routings=args.routing, seed=args.seed,
                                        progress=not args.quiet))
        except SharedDataMissing as e:
            print(f"pickspin sim: scenario {sc.name} skipped: {e}", file=sys.stderr)
    if not results:
        print("pickspin sim: nothing ran", file=sys.stderr)
        return 1
    if primary not in {r.scenario.name for r in results}:
        primary = results[0].scenario.name
    runtime = time.perf_counter() - t0
    paths = write_all(cfg, results, primary, Path(args.out), seed=args.seed,
                      config_path=str(Path(args.config) if args.config else DEFAULT_SIM_CONFIG.relative_to(REPO)),
                      notes=notes, runtime_s=runtime, plots=not args.no_plots)
    for sr in results:
        print(f"{sr.scenario.name}: {sr.trace.summary()['requests']} requests measured, {len(sr.rows)} runs "
              f"in {sr.runtime_s:.1f} s")
        for k in POLICY_ORDER:
            r = sr.rows.get(k)
            if r:
                print(f"  {k:15s} success {r['success_rate']}  p50 {r['p50_latency_s']} s  p99 {r['p99_latency_s']} s  "
                      f"{r['gpu_seconds_per_query']} GPU-s/q  ${r['cost_per_query_usd']}/q  cold starts {r['cold_starts']}")
    print(f"wrote {', '.join(str(p) for p in paths)} ({runtime:.1f} s)")
    return 0
