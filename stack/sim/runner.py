"""Run scenarios: every policy x routing variant on the same trace, same prompts, same seed."""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from .config import Scenario, SimConfig
from .engine import RunResult, Simulation, Workload
from .metrics import relative, summarize
from .policies import build_policy
from .prompts import Estimates, PromptPool, estimate_pool
from .routing import variant
from .trace import Trace, build_trace, with_warmup

log = logging.getLogger("pickspin.sim")

DEFAULT_POLICIES = ("static", "knative-kpa", "keda-threshold", "pickspin", "pickspin-adaptive", "static-peak")


def run_key(policy: str, routing: str, default_routing: str) -> str:
    """``pickspin`` for the default routing, ``pickspin/hybrid`` for another variant."""
    return policy if routing == default_routing else f"{policy}/{routing}"


@dataclass
class ScenarioResult:
    scenario: Scenario
    trace: Trace
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: dict[str, RunResult] = field(default_factory=dict)
    relative_to_static: dict[str, dict[str, float | None]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    runtime_s: float = 0.0



def estimates_for(cfg: SimConfig, pool: PromptPool, routings: Sequence[str], *, progress: bool = True
                  ) -> dict[str, Estimates]:
    """Classify the pool once per classifier the routing variants need."""
    out: dict[str, Estimates] = {}
    for r in routings:
        clf = variant(r, cfg.matrix).classifier
        if clf not in out:
            out[clf] = estimate_pool(cfg.matrix, pool.texts, clf, progress=progress)
            e = out[clf]
            if e.per_prompt is None:
                log.warning("routing variant %r unavailable: %s", r, e.reason)
            else:
                log.info("classified %d prompts with %s in %.1fs (%s)", len(pool), clf, e.seconds, e.sources)
    return out


def run_scenario(cfg: SimConfig, sc: Scenario, pool: PromptPool, estimates: dict[str, Estimates], *,
                 policies: Sequence[str] = DEFAULT_POLICIES, routings: Sequence[str] | None = None,
                 seed: int = 0, progress: bool = True) -> ScenarioResult:
    t0 = time.perf_counter()
    routings = list(routings or sc.routings or cfg.routing_variants)
    rng = np.random.default_rng([seed, zlib.crc32(sc.name.encode())])
    trace = with_warmup(build_trace(sc.trace, hours=sc.hours, rate_per_day=sc.rate_per_day, scale=sc.scale, rng=rng),
                        sc.warmup_s)
    prompt_of = rng.integers(0, len(pool), size=len(trace))
    out = ScenarioResult(sc, trace)
    runs: list[tuple[str, str]] = []
    # static-peak needs PickSpin's peak replicas on the same routing: run it last.
    ordered = sorted(policies, key=lambda p: p == "static-peak")
    for r in routings:
        e = estimates[variant(r, cfg.matrix).classifier]
        if e.per_prompt is None:
            out.skipped[r] = e.reason or "unavailable"
            continue
        runs += [(p, r) for p in ordered]
    bar = tqdm(total=len(trace) * len(runs), desc=f"sim {sc.name}", unit="req", disable=not progress,
               mininterval=0.5)
    for pol, r in runs:
        v = variant(r, cfg.matrix)
        est = estimates[v.classifier].per_prompt
        assert est is not None
        work = Workload(trace, prompt_of, est, pool.correct)
        peak = None
        if pol == "static-peak" and (ps := out.results.get(run_key("pickspin", r, cfg.default_routing))) is not None:
            peak = {m: round(v["max_replicas"]) for m, v in ps.per_model.items()}
        sim = Simulation(cfg, work, v, build_policy(pol, cfg, static_replicas=peak))
        bar.set_postfix_str(f"{pol}/{r}")
        res = sim.run(progress=bar.update)
        key = run_key(pol, r, cfg.default_routing)
        out.results[key] = res
        out.rows[key] = summarize(res, cfg)

    bar.close()
    for key, row in out.rows.items():
        base = out.rows.get(run_key("static", row["routing"], cfg.default_routing))
        if base is not None:
            out.relative_to_static[key] = relative(row, base)
    out.runtime_s = time.perf_counter() - t0
    return out
