"""Write the results: ``sim.json``, a Markdown table, and plots (replicas over time; cost-latency frontier)."""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import SimConfig
from .runner import ScenarioResult, run_key

PAPER = {"success_rate": 0.216, "mean_latency_s": -0.30, "cost_per_query_usd": -0.33}
POLICY_ORDER = ("static", "static-peak", "knative-kpa", "keda-threshold", "pickspin", "pickspin-adaptive")


def _fmt(x: Any, nd: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f}%"


def _ordered(keys: Sequence[str]) -> list[str]:
    """Default routing first, then each variant (alphabetical), policies in POLICY_ORDER within each."""
    def k(name: str) -> tuple[str, int, str]:
        base, _, routing = name.partition("/")
        return (routing, POLICY_ORDER.index(base) if base in POLICY_ORDER else 99, name)
    return sorted(keys, key=k)


def scenario_json(sr: ScenarioResult) -> dict[str, Any]:
    return {
        "description": sr.scenario.description,
        "trace": sr.trace.summary(),
        "policies": {k: sr.rows[k] for k in _ordered(list(sr.rows))},
        "relative_to_static": {k: sr.relative_to_static[k] for k in _ordered(list(sr.relative_to_static))},
        "skipped_routing": sr.skipped,
        "runtime_s": round(sr.runtime_s, 2),
    }


def build_json(cfg: SimConfig, results: Sequence[ScenarioResult], primary: str, *, seed: int, config_path: str,
               notes: Sequence[str], runtime_s: float) -> dict[str, Any]:
    by_name = {sr.scenario.name: sr for sr in results}
    prim = scenario_json(by_name[primary])
    return {
        "generated_by": "pickspin sim",
        "config": config_path,
        "seed": seed,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "runtime_s": round(runtime_s, 2),
        "default_routing": cfg.default_routing,
        "scenario": primary,
        "trace": prim["trace"],
        "policies": prim["policies"],
        "relative_to_static": prim["relative_to_static"],
        "paper_claims_vs_static": PAPER,
        "scenarios": {sr.scenario.name: scenario_json(sr) for sr in results},
        "notes": list(notes),
    }


def markdown(cfg: SimConfig, results: Sequence[ScenarioResult], primary: str, *, seed: int, runtime_s: float,
             notes: Sequence[str]) -> str:
    out = ["# PickSpin simulation results", "",
           f"`pickspin sim` (seed {seed}, {runtime_s:.1f} s wall). Policies x routing on the same trace; "
           f"default routing `{cfg.default_routing}`. Success = answered within the "
           f"{cfg.cluster.request_timeout_s:.0f} s request timeout; correct = answered and right (MMLU-Pro outcome "
           f"of the serving model); SLO = TTFT <= {cfg.cluster.slo.ttft_s:g} s and TPOT <= {cfg.cluster.slo.tpot_s:g} s. "
           "Costs at $" + f"{cfg.cluster.gpu.usd_per_gpu_hour:.3f}/GPU-h ({cfg.cluster.gpu.name}).", ""]
    ordered = sorted(results, key=lambda sr: sr.scenario.name != primary)
    for sr in ordered:
        tr = sr.trace.summary()
        star = " (primary)" if sr.scenario.name == primary else ""
        out += [f"## {sr.scenario.name}{star}", "", f"{sr.scenario.description}  ",
                f"{tr['requests']} requests over {float(tr['duration_s']) / 3600:.1f} h "  # type: ignore[arg-type]
                f"({tr['rate_per_day']}/day); simulated in {sr.runtime_s:.1f} s.", ""]
        out += ["| policy | success | correct | mean lat s | p50 | p95 | p99 | mean TTFT s | p95 TTFT | SLO | "
                "GPU-s/query | $/query | cold starts | cold-start reqs | idle GPU-s |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for k in _ordered(list(sr.rows)):
            r = sr.rows[k]
            out.append(
                f"| {k} | {_fmt(r['success_rate'], 4)} | {_fmt(r['correct_rate'], 4)} | {_fmt(r['mean_latency_s'], 2)} | "
                f"{_fmt(r['p50_latency_s'], 2)} | {_fmt(r['p95_latency_s'], 2)} | {_fmt(r['p99_latency_s'], 2)} | "
                f"{_fmt(r['mean_ttft_s'], 2)} | {_fmt(r['p95_ttft_s'], 2)} | {_fmt(r['slo_attainment'], 4)} | "
                f"{_fmt(r['gpu_seconds_per_query'], 2)} | {_fmt(r['cost_per_query_usd'], 5)} | {r['cold_starts']} | "
                f"{r['cold_start_requests']} | {_fmt(r['idle_gpu_seconds'], 0)} |")
        out += ["", "Relative change against `static` with the same routing (paper: success +21.6 %, latency "
                "-30 %, GPU cost per query -33 %):", "",
                "| policy | success | correct | mean latency | p95 latency | $/query | SLO |", "|---|---|---|---|---|---|---|"]
        for k in _ordered(list(sr.relative_to_static)):
            if k.split("/", 1)[0] == "static":
                continue
            d = sr.relative_to_static[k]
            out.append(f"| {k} | {_pct(d['success_rate'])} | {_pct(d['correct_rate'])} | {_pct(d['mean_latency_s'])} | "
                       f"{_pct(d['p95_latency_s'])} | {_pct(d['cost_per_query_usd'])} | {_pct(d['slo_attainment'])} |")
        bounds = {k: b for k, r in sr.rows.items() if "/" not in k and (b := r.get("clairvoyant_gpu_s_per_query"))}
        if bounds:
            out += ["", "Clairvoyant bound at SLO 1.0 for each run's own routed requests (one replica per model "
                    "that knows every arrival: warm through a gap or reloaded just in time, whichever is cheaper; "
                    "not a policy), default routing: " + ", ".join(f"{k} {b:.2f}" for k, b in bounds.items())
                    + " GPU-s/query."]
        if sr.skipped:
            out += ["", "Routing variants not run: " + "; ".join(f"`{k}`: {v}" for k, v in sr.skipped.items())]
        out.append("")
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)


MARKERS = {"static": "s", "static-peak": "D", "knative-kpa": "^", "keda-threshold": "v", "pickspin": "o",
           "pickspin-adaptive": "P"}


def _frontier_and_legend(ax: Any, sr: ScenarioResult, colors: dict[str, str], front: list[tuple[float, float]],
                         label: str) -> None:
    """The frontier as a dashed step line, and legend entries for routings (colour) and policies (marker)."""
    if len(front) > 1:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="0.5", ls="--", lw=1,
                label=label)
    for r, c in colors.items():
        ax.scatter([], [], color=c, label=f"routing: {r}")
    for pol, mk in MARKERS.items():
        if any(r["policy"] == pol for r in sr.rows.values()):
            ax.scatter([], [], color="0.3", marker=mk, label=pol)


def slo_frontier(rows: Sequence[dict[str, Any]]) -> list[tuple[float, float]]:
    """Points (GPU-s/query, SLO attainment) not beaten on both by another: cheaper and at least as good."""
    pts = sorted({(r["gpu_seconds_per_query"], r["slo_attainment"]) for r in rows
                  if r.get("gpu_seconds_per_query") is not None and r.get("slo_attainment") is not None},
                 key=lambda p: (p[0], -p[1]))
    front: list[tuple[float, float]] = []
    for x, y in pts:
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def plot_slo_pareto(sr: ScenarioResult, out_dir: Path) -> Path:
    """GPU-seconds per query against SLO attainment, one point per policy x routing, correct rate labelled."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    routings = sorted({r["routing"] for r in sr.rows.values()})
    colors = {r: f"C{i}" for i, r in enumerate(routings)}
    front = slo_frontier(list(sr.rows.values()))
    for k, r in sr.rows.items():
        x, y = r["gpu_seconds_per_query"], r["slo_attainment"]
        if x is None or y is None:
            continue
        on = (x, y) in front
        ax.scatter([x], [y], marker=MARKERS.get(r["policy"], "x"), color=colors[r["routing"]], s=80 if on else 45,
                   edgecolors="k" if on else "none", alpha=0.85)
        if on or "/" not in k:
            correct = r.get("correct_rate")
            ax.annotate(f"{k}" + (f" ({correct:.3f} correct)" if correct is not None else ""), (x, y), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
    for r in sr.rows.values():  # the bound for PickSpin's own routed requests, per routing
        if r["policy"] == "pickspin" and (b := r.get("clairvoyant_gpu_s_per_query")):
            ax.scatter([b], [1.0], marker="*", s=160, color=colors[r["routing"]], edgecolors="k")
            ax.annotate(f"clairvoyant bound ({r['routing']})", (b, 1.0), fontsize=7, xytext=(4, -10),
                        textcoords="offset points")
    _frontier_and_legend(ax, sr, colors, front, "Pareto frontier (cheaper and better SLO)")
    ax.set_xscale("log")
    ax.set_xlabel("GPU-seconds per query (log)")
    ax.set_ylabel("SLO attainment (TTFT and TPOT within SLO)")
    ax.set_title(f"Cost-SLO frontier - {sr.scenario.name}", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    p = out_dir / f"sim_pareto_{sr.scenario.name}.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def plot(cfg: SimConfig, sr: ScenarioResult, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: list[Path] = []
    keys = [k for k in ("static", "knative-kpa", "keda-threshold", "pickspin")
            if run_key(k, cfg.default_routing, cfg.default_routing) in sr.results]
    if keys:
        fig, axes = plt.subplots(len(keys), 1, figsize=(11, 2.3 * len(keys) + 0.6), sharex=True, squeeze=False)
        for ax, k in zip(axes[:, 0], keys, strict=True):
            res = sr.results[k]
            t = res.timeline_t / 3600.0
            dt = np.diff(res.timeline_t, prepend=0.0)
            dt[dt <= 0] = np.nan
            load = res.timeline_arrivals.sum(axis=1) / dt * 60.0
            ax2 = ax.twinx()
            ax2.fill_between(t, np.nan_to_num(load), step="pre", color="0.85", label="requests/min (all models)")
            ax2.set_ylabel("req/min", color="0.4")
            ax.set_zorder(ax2.get_zorder() + 1)
            ax.patch.set_visible(False)
            if res.measure_from > 0:
                ax.axvspan(0, res.measure_from / 3600.0, color="0.6", alpha=0.15, lw=0)
            for j, m in enumerate(res.models):
                ax.step(t, res.timeline_replicas[:, j], where="post", lw=3.2 - 1.0 * j,
                        label=f"{m} ({cfg.cluster.models[m].gpus} GPU)")
            row = sr.rows[k]
            ax.set_title(f"{k}: {row['gpu_seconds_per_query']:.2f} GPU-s/query, p95 {row['p95_latency_s']} s, "
                         f"{row['cold_starts']} cold starts", fontsize=9)
            ax.set_ylabel("replicas")
            ax.set_ylim(bottom=0)
        axes[0, 0].legend(loc="upper left", fontsize=7, ncol=3)
        axes[-1, 0].set_xlabel("hours (shaded: warm-up, not measured)")
        fig.suptitle(f"Replicas per model against the load - {sr.scenario.name}", fontsize=10)
        fig.tight_layout()
        p = out_dir / f"sim_replicas_{sr.scenario.name}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)

    fig, ax = plt.subplots(figsize=(9, 6))
    routings = sorted({r["routing"] for r in sr.rows.values()})
    colors = {r: f"C{i}" for i, r in enumerate(routings)}
    pts = sorted((r["cost_per_query_usd"], r["p95_latency_s"]) for r in sr.rows.values()
                 if r["cost_per_query_usd"] is not None and r["p95_latency_s"] is not None)
    front: list[tuple[float, float]] = []
    for x, y in pts:
        if not front or y < front[-1][1]:
            front.append((x, y))
    labelled: list[tuple[float, float]] = []
    # Default-routing rows first, so they win the label where points coincide.
    for k, r in sorted(sr.rows.items(), key=lambda kv: ("/" in kv[0], kv[0])):
        x, y = r["cost_per_query_usd"], r["p95_latency_s"]
        if x is None or y is None:
            continue
        ax.scatter([x], [y], marker=MARKERS.get(r["policy"], "x"), color=colors[r["routing"]], s=60, alpha=0.85)
        near = any(abs(math.log(x / lx)) < 0.08 and abs(math.log(y / ly)) < 0.08 for lx, ly in labelled)
        if ("/" not in k or (x, y) in front) and not near:
            ax.annotate(k, (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
            labelled.append((x, y))
    _frontier_and_legend(ax, sr, colors, front, "Pareto frontier")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("GPU cost per query (USD, log)")
    ax.set_ylabel("p95 latency (s, log)")
    ax.set_title(f"Cost-latency frontier - {sr.scenario.name} (labels: default routing and frontier points)",
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    p = out_dir / f"sim_frontier_{sr.scenario.name}.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    paths.append(plot_slo_pareto(sr, out_dir))
    return paths


def write_all(cfg: SimConfig, results: Sequence[ScenarioResult], primary: str, out_dir: Path, *, seed: int,
              config_path: str, notes: Sequence[str], runtime_s: float, plots: bool = True) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = build_json(cfg, results, primary, seed=seed, config_path=config_path, notes=notes, runtime_s=runtime_s)
    pj = out_dir / "sim.json"
    pj.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    pm = out_dir / "sim.md"
    pm.write_text(markdown(cfg, results, primary, seed=seed, runtime_s=runtime_s, notes=notes))
    paths = [pj, pm]
    if plots:
        for sr in results:
            paths += plot(cfg, sr, out_dir)
    return paths
