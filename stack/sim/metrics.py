"""Per-run summary in the shape of the paper's tables, and relative change against the static baseline."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .config import SimConfig
from .engine import OK, REJECTED, TIMEOUT, RunResult

# The keys issue 6 fixes for sim.json, plus the rest of the table.
HEADLINE = ("success_rate", "p50_latency_s", "p99_latency_s", "gpu_seconds_per_query", "cost_per_query_usd",
            "cold_starts")
# metric -> True when higher is better (for the relative-change table).
COMPARED = {"success_rate": True, "correct_rate": True, "mean_latency_s": False, "p95_latency_s": False,
            "mean_ttft_s": False, "cost_per_query_usd": False, "gpu_seconds_per_query": False,
            "slo_attainment": True}


def _pct(a: np.ndarray, q: float) -> float | None:
    return float(np.percentile(a, q)) if a.size else None


def _r(x: float | None, nd: int = 4) -> float | None:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), nd)


def summarize(res: RunResult, cfg: SimConfig) -> dict[str, Any]:
    n = int(res.status.size)
    ok = res.status == OK
    lat = res.latency[ok]
    ttft = res.ttft[ok]
    tpot = res.tpot[ok]
    slo = cfg.cluster.slo
    within = ok & (np.nan_to_num(res.ttft, nan=np.inf) <= slo.ttft_s) & (np.nan_to_num(res.tpot, nan=np.inf) <= slo.tpot_s)
    gpu_s = sum(m["gpu_seconds"] for m in res.per_model.values())
    usd = gpu_s * cfg.cluster.gpu.usd_per_gpu_second
    completed = int(ok.sum())
    out: dict[str, Any] = {
        "policy": res.policy,
        "routing": res.routing,
        "requests": n,
        "completed": completed,
        "timeouts": int((res.status == TIMEOUT).sum()),
        "rejected": int((res.status == REJECTED).sum()),
        "success_rate": _r(completed / n if n else None),
        "correct_rate": None,
        "mean_latency_s": _r(float(lat.mean()) if lat.size else None, 3),
        "p50_latency_s": _r(_pct(lat, 50), 3),
        "p95_latency_s": _r(_pct(lat, 95), 3),
        "p99_latency_s": _r(_pct(lat, 99), 3),
        "mean_ttft_s": _r(float(ttft.mean()) if ttft.size else None, 3),
        "p50_ttft_s": _r(_pct(ttft, 50), 3),
        "p95_ttft_s": _r(_pct(ttft, 95), 3),
        "p99_ttft_s": _r(_pct(ttft, 99), 3),
        "mean_tpot_s": _r(float(tpot.mean()) if tpot.size else None, 4),
        "slo_attainment": _r(float(within.sum()) / n if n else None),
        "clairvoyant_gpu_s_per_query": _r(clairvoyant_gpu_s_per_query(res, cfg), 3),
        "gpu_seconds": _r(gpu_s, 1),
        "gpu_seconds_per_query": _r(gpu_s / n if n else None, 3),
        "cost_usd": _r(usd, 2),
        "cost_per_query_usd": _r(usd / n if n else None, 6),
        "cost_per_success_usd": _r(usd / completed if completed else None, 6),
        "cold_starts": int(sum(m["cold_starts"] for m in res.per_model.values())),
        "cold_start_requests": int(res.cold.sum()),
        "cold_start_gpu_seconds": _r(sum(m["cold_start_gpu_seconds"] for m in res.per_model.values()), 1),
        "idle_gpu_seconds": _r(sum(m["idle_gpu_seconds"] for m in res.per_model.values()), 1),
        "idle_gpu_share": _r(sum(m["idle_gpu_seconds"] for m in res.per_model.values()) / gpu_s if gpu_s else None),
        "per_model": {k: {kk: _r(vv, 3) if isinstance(vv, float) else vv for kk, vv in v.items()}
                      for k, v in res.per_model.items()},
        "wall_s": _r(res.wall_s, 2),
    }
    if res.correct is not None:
        known = res.correct >= 0
        out["correct_rate"] = _r(float((ok & (res.correct == 1)).sum()) / n if n else None)
        out["accuracy_of_completed"] = _r(float((ok & (res.correct == 1)).sum()) / max(1, int((ok & known).sum())))
    return out


def relative(row: dict[str, Any], base: dict[str, Any]) -> dict[str, float | None]:
    """Relative change of each compared metric against ``base`` (+0.216 = 21.6 % higher)."""
    out: dict[str, float | None] = {}
    for k in COMPARED:
        a, b = row.get(k), base.get(k)
        out[k] = None if a is None or b is None or b == 0 else round((a - b) / b, 4)
    return out


def clairvoyant_gpu_s_per_query(res: RunResult, cfg: SimConfig) -> float | None:
    """A lower bound on GPU-seconds per query at SLO attainment 1.0 for the requests of ``res`` as it routed
    them: per model, one replica that knows every future arrival, busy over the union of [arrival, arrival +
    service time] of its answered requests (a request that waited for a cold start counts its TTFT as the
    model's median warm TTFT) and, over each idle gap g between, either staying warm (g) or going to zero and
    loading again just in time (the load time: the GPUs are held while loading), whichever is less, plus the
    first load. No policy can do better on the same routing; it is not a policy."""
    n = int(res.status.size)
    if n == 0 or res.arrival is None:
        return None
    ok = res.status == OK
    total = 0.0
    for idx, name in enumerate(res.models):
        sel = ok & (res.model_of == idx)
        if not sel.any():
            continue
        warm = sel & ~res.cold
        ttft0 = float(np.median(res.ttft[warm])) if warm.any() else 0.0
        service = np.where(res.cold[sel], res.latency[sel] - res.ttft[sel] + ttft0, res.latency[sel])
        a = res.arrival[sel]
        order = np.argsort(a)
        start, end = a[order], (a + service)[order]
        reach = np.maximum.accumulate(end)  # busy until, over everything that started so far
        gaps = np.clip(start[1:] - reach[:-1], 0, None)
        busy = float(reach[-1] - start[0] - gaps.sum())
        mc = cfg.cluster.models[name]
        load = float(mc.cold_start_s)
        total += mc.gpus * (busy + float(np.minimum(gaps, load).sum()) + load)
    return total / n
