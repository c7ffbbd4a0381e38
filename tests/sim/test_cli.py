"""`pickspin sim` end to end on a synthetic trace (no shared data), and the config's citations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stack.cli import main
from stack.sim.config import load_sim_config, reference_keys

REQUIRED = ("success_rate", "p50_latency_s", "p99_latency_s", "gpu_seconds_per_query", "cost_per_query_usd",
            "cold_starts")


def test_sim_cli_writes_json_markdown_and_plots(tmp_path: Path) -> None:
    rc = main(["--log-level", "WARNING", "sim", "--trace", "diurnal", "--rate-per-day", "3000", "--hours", "3",
               "--warmup", "600", "--synthetic-prompts", "--prompt-pool", "60", "--routing", "keyword,quality-only",
               "--out", str(tmp_path), "--quiet", "--seed", "3"])
    assert rc == 0
    doc = json.loads((tmp_path / "sim.json").read_text())
    for name in ("static", "knative-kpa", "keda-threshold", "pickspin"):
        row = doc["policies"][name]
        for k in REQUIRED:
            assert k in row, (name, k)
        assert 0.0 <= row["success_rate"] <= 1.0
        assert row["correct_rate"] is None  # synthetic prompts carry no outcomes
    assert "pickspin/quality-only" in doc["policies"]
    assert doc["policies"]["static"]["cold_starts"] == 0
    # Static keeps all three models (13 GPUs) up; the others do not.
    assert doc["policies"]["pickspin"]["gpu_seconds_per_query"] < doc["policies"]["static"]["gpu_seconds_per_query"]
    rel = doc["relative_to_static"]["pickspin"]["cost_per_query_usd"]
    assert rel is not None and rel < 0
    assert doc["trace"]["warmup_s"] == 600.0
    md = (tmp_path / "sim.md").read_text()
    assert "| pickspin |" in md and "Relative change" in md
    pngs = sorted(p.name for p in tmp_path.glob("sim_*.png"))
    assert len(pngs) == 3 and all(p.stat().st_size > 10_000 for p in tmp_path.glob("sim_*.png"))
    assert any(n.startswith("sim_pareto_") for n in pngs)  # GPU-s/query against SLO attainment


def test_sim_cli_rejects_unknown_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["sim", "--trace", "poisson", "--policies", "static,magic", "--out", str(tmp_path), "--quiet"])
    assert rc == 2
    assert "magic" in capsys.readouterr().err


def test_every_cluster_number_cites_a_reference() -> None:
    cfg = load_sim_config()
    numbers = ("gpus", "cold_start_s", "ttft_base_s", "prefill_s_per_token", "tpot_s", "batch_knee", "batch_slope",
               "max_batch", "static_replicas")
    for name, mc in cfg.cluster.models.items():
        for k in numbers:
            assert k in mc.sources, (name, k)
            assert all(r in cfg.references for r in reference_keys(mc.sources[k]))
    assert cfg.cluster.gpu.usd_per_gpu_hour == pytest.approx(32.77 / 8, rel=1e-3)


def test_slo_frontier_keeps_points_nothing_cheaper_beats() -> None:
    from stack.sim.report import slo_frontier

    rows = [{"gpu_seconds_per_query": x, "slo_attainment": y} for x, y in
            [(3.0, 0.84), (4.2, 0.85), (4.0, 0.80), (10.4, 1.0), (12.0, 0.99), (2.0, None)]]
    assert slo_frontier(rows) == [(3.0, 0.84), (4.2, 0.85), (10.4, 1.0)]
