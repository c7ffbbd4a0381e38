"""Trace loading and reshaping: thinning, time-stretching, warm-up, plain CSVs, synthetic traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stack.sim import trace as T


def base(n: int = 2000, seconds: float = 3600.0, seed: int = 0) -> T.Trace:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, seconds, n))
    return T.Trace("b", t, np.arange(n), np.arange(n) + 1, np.zeros(n, np.int64), ["s"], seconds)


def test_stretch_keeps_order_and_scales_gaps() -> None:
    tr = base()
    out = T.rescale(tr, hours=None, rate_per_day=tr.rate_per_day / 4, mode="stretch", rng=np.random.default_rng(1))
    assert len(out) == len(tr)
    assert out.duration_s == pytest.approx(4 * tr.duration_s)
    assert np.allclose(np.diff(out.t), 4 * np.diff(tr.t))
    assert np.array_equal(out.in_tok, tr.in_tok)  # each request keeps its own token counts


def test_stretch_then_cut_to_hours() -> None:
    tr = base()
    out = T.rescale(tr, hours=2.0, rate_per_day=tr.rate_per_day / 4, mode="stretch", rng=np.random.default_rng(1))
    assert out.duration_s == 7200.0
    assert out.t.max() < 7200.0
    assert len(out) == pytest.approx(len(tr) / 2, rel=0.1)


def test_thin_to_rate_and_tile() -> None:
    tr = base(20000)
    target = tr.rate_per_day / 10
    out = T.rescale(tr, hours=5.0, rate_per_day=target, mode="thin", rng=np.random.default_rng(2))
    assert out.duration_s == 5 * 3600.0
    assert out.rate_per_day == pytest.approx(target, rel=0.05)
    assert np.all(np.diff(out.t) >= 0)
    with pytest.raises(ValueError, match="stretch"):
        T.rescale(tr, hours=1.0, rate_per_day=tr.rate_per_day * 2, mode="thin", rng=np.random.default_rng(2))


def test_warmup_prepends_the_tail_and_keeps_the_measured_part() -> None:
    tr = base()
    out = T.with_warmup(tr, 600.0)
    assert out.measure_from == 600.0
    assert out.duration_s == tr.duration_s + 600.0
    m = out.measured
    assert np.allclose(out.t[m] - 600.0, tr.t)
    assert np.array_equal(out.in_tok[m], tr.in_tok)
    assert int((~m).sum()) == int((tr.t >= tr.duration_s - 600.0).sum())
    assert out.summary()["requests"] == len(tr)


def test_plain_csv_is_replayed_unchanged(tmp_path: Path) -> None:
    p = tmp_path / "mine.csv"
    p.write_text("timestamp,stream,input_tokens,output_tokens\n10.5,a,100,5\n12,b,200,6\n11,a,300,7\n")
    tr = T.build_trace(str(p), hours=None, rate_per_day=None, scale="stretch", rng=np.random.default_rng(0))
    assert tr.t.tolist() == [0.0, 0.5, 1.5]
    assert tr.in_tok.tolist() == [100, 300, 200]
    assert [tr.streams[k] for k in tr.stream] == ["a", "a", "b"]
    q = tmp_path / "iso.csv"
    q.write_text("timestamp,stream\n2024-01-01 00:00:01.5,x\n2024-01-01 00:00:00,x\n")
    tr2 = T.load_csv(q)
    assert tr2.t.tolist() == [0.0, 1.5]
    assert tr2.in_tok.tolist() == [T.DEFAULT_TOKENS[0]] * 2
    bad = tmp_path / "bad.csv"
    bad.write_text("time,who\n1,a\n")
    with pytest.raises(ValueError, match="timestamp, stream"):
        T.load_csv(bad)


def test_diurnal_peaks_in_the_afternoon() -> None:
    tr = T.diurnal(20000, 24.0, np.random.default_rng(3))
    h = (tr.t // 3600).astype(int)
    counts = np.bincount(h, minlength=24)
    assert counts[13:16].mean() > 5 * counts[1:4].mean()
    assert len(tr) == pytest.approx(20000, rel=0.05)


def test_poisson_rate() -> None:
    tr = T.poisson(2.0, 1.0, np.random.default_rng(4), in_tok=10, out_tok=20)
    assert len(tr) == pytest.approx(7200, rel=0.05)
    assert set(tr.out_tok.tolist()) == {20}


def test_unknown_trace_is_reported() -> None:
    with pytest.raises(ValueError, match="not azure-conv"):
        T.build_trace("nope", hours=1.0, rate_per_day=None, scale="stretch", rng=np.random.default_rng(0))


def test_missing_shared_data_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PICKSPIN_SHARED", str(tmp_path))
    with pytest.raises(T.SharedDataMissing, match="shared"):
        T.load_azure("azure-conv")
