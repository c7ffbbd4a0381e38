"""Small, deterministic simulator setups for the tests (no shared data needed)."""

from __future__ import annotations

from typing import Any

import numpy as np

from functions.router.classifiers.base import Estimate, peaked
from stack.sim.config import Scenario, SimConfig, parse_sim_config
from stack.sim.engine import RunResult, Simulation, Workload
from stack.sim.policies import build_policy
from stack.sim.routing import variant
from stack.sim.trace import Trace

REFS = {"test": "test fixture"}
__all__ = ["Scenario", "SimConfig", "Trace"]


def model(name: str, tier: str, cap: tuple[float, float, float], cost: float, *, concurrency: int = 8,
          max_replicas: int = 8, idle_seconds: float = 300.0, warm_pool: int | None = None) -> dict[str, Any]:
    scaling: dict[str, Any] = {"concurrency": concurrency, "max_replicas": max_replicas, "idle_seconds": idle_seconds}
    if warm_pool is not None:
        scaling["warm_pool"] = warm_pool
    return {"name": name, "tier": tier, "capability": dict(zip(("low", "medium", "high"), cap, strict=True)),
            "cost": {"per_1k_tokens": cost}, "scaling": scaling,
            "backends": [{"name": f"{name}-b", "kind": "vllm", "url": f"http://{name}.test",
                          "served_model_name": name, "max_concurrency": 100000, "expected_latency_s": 1.0}]}


def cluster(*, gpus: int = 1, cold_start_s: float = 0.0, tpot_s: float = 0.01, max_batch: int = 256,
            static_replicas: int = 1, slope: float = 0.0) -> dict[str, Any]:
    return {"gpus": gpus, "cold_start_s": cold_start_s, "ttft_base_s": 0.02, "prefill_s_per_token": 0.0001,
            "tpot_s": tpot_s, "batch_knee": 8, "batch_slope": slope, "max_batch": max_batch,
            "static_replicas": static_replicas, "sources": {"gpus": "test"}}


def config(models: list[dict[str, Any]], clusters: dict[str, dict[str, Any]], **policies: Any) -> SimConfig:
    pol: dict[str, Any] = {"initial_replicas": 0}
    pol.update(policies)
    return parse_sim_config({
        "references": REFS,
        "matrix": {"models": models},
        "cluster": {"gpu": {"name": "test-gpu", "usd_per_gpu_hour": 3.6, "source": "test"},
                    "request_timeout_s": 300, "models": clusters},
        "policies": pol,
        "routing_variants": ["keyword", "quality-only"],
    })


def one_model(**kw: Any) -> SimConfig:
    c = {k: kw.pop(k) for k in list(kw) if k in ("gpus", "cold_start_s", "tpot_s", "max_batch", "static_replicas",
                                                 "slope")}
    m = model("m", "medium", (0.9, 0.8, 0.7), 0.01, **{k: kw.pop(k) for k in list(kw)
                                                       if k in ("concurrency", "max_replicas", "idle_seconds",
                                                                "warm_pool")})
    return config([m], {"m": cluster(**c)}, **kw)


def poisson_trace(rate: float, seconds: float, *, in_tok: int = 100, out_tok: int = 200, seed: int = 1,
                  warmup_s: float = 0.0) -> Trace:
    rng = np.random.default_rng(seed)
    n = int(rng.poisson(rate * seconds))
    t = np.sort(rng.uniform(0.0, seconds, size=n))
    tr = Trace("poisson", t, np.full(n, in_tok), np.full(n, out_tok), np.zeros(n, np.int64), ["p"], seconds)
    tr.measure_from = warmup_s
    return tr


def trace_at(times: list[float], seconds: float, *, in_tok: int = 100, out_tok: int = 200) -> Trace:
    t = np.asarray(sorted(times), dtype=float)
    n = len(t)
    return Trace("fixed", t, np.full(n, in_tok), np.full(n, out_tok), np.zeros(n, np.int64), ["f"], seconds)


def run(cfg: SimConfig, tr: Trace, policy: str, routing: str = "keyword", label: str = "medium") -> RunResult:
    est = Estimate(label, peaked(label, 0.85), 0.85, "keyword")
    work = Workload(tr, np.zeros(len(tr), np.int64), [est], None)
    return Simulation(cfg, work, variant(routing, cfg.matrix), build_policy(policy, cfg)).run()


def service_time(cfg: SimConfig, name: str, in_tok: int, out_tok: int) -> float:
    mc = cfg.cluster.models[name]
    return mc.ttft_base_s + mc.prefill_s_per_token * in_tok + out_tok * mc.tpot_s


def steady_mode(res: RunResult, model_idx: int = 0) -> int:
    """The most common replica count over the measured window (time-weighted: samples are periodic)."""
    keep = res.timeline_t >= res.measure_from
    vals = res.timeline_replicas[keep, model_idx].astype(int)
    return int(np.bincount(vals).argmax())
