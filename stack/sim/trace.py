"""Request arrival traces: real ones replayed as is, thinned or time-stretched, and synthetic ones.

A :class:`Trace` is arrival times (seconds from 0, sorted) with input/output token counts and a
stream label per request. Sources:

* ``azure-conv`` / ``azure-code`` / ``azure`` (both): the Azure LLM inference trace 2023
  (``../shared/data/traces/azure_llm_2023_*.csv``; Azure/AzurePublicDataset, CC-BY-4.0; Patel et al.,
  "Splitwise", ISCA 2024): real timestamps and token counts, one hour.
* a plain per-request CSV: ``timestamp, stream[, input_tokens, output_tokens]`` (timestamp in seconds
  or ISO 8601), replayed unchanged.
* ``servegen:<model>[:<client>]``: one Alibaba Bailian stream from ServeGen's per-10-minute aggregates
  (``../shared/data/traces/servegen_*.csv``), arrivals drawn inside each window from its fitted
  inter-arrival family as ServeGen's generator does (see :func:`load_servegen`).
* ``poisson``: constant-rate Poisson arrivals; ``diurnal``: a non-homogeneous Poisson day
  (rate x (1 + 0.8 cos(2 pi (h - 14) / 24)), so 1.8x at 14:00 and 0.2x at 02:00), token sizes
  resampled from the Azure conversation trace when it is present.

Everything random takes a seeded ``numpy.random.Generator``.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
AZURE_FILES = {"azure-conv": "azure_llm_2023_conv.csv", "azure-code": "azure_llm_2023_code.csv"}
DEFAULT_TOKENS = (1024, 128)  # when a CSV has no token columns and no Azure trace is present


class SharedDataMissing(RuntimeError):
    """../shared (the reference data beside the checkout) is not present."""


def shared_dir() -> Path:
    return Path(os.environ.get("PICKSPIN_SHARED", REPO.parent / "shared"))


def azure_path(kind: str) -> Path:
    p = shared_dir() / "data" / "traces" / AZURE_FILES[kind]
    if not p.is_file():
        raise SharedDataMissing(
            f"{p} not found: the Azure trace lives in ../shared beside the checkout (or set PICKSPIN_SHARED); "
            "a fresh clone does not have it. Use --trace diurnal or --trace poisson, or a CSV of your own.")
    return p


@dataclass
class Trace:
    name: str
    t: np.ndarray  # float64 seconds from 0, sorted
    in_tok: np.ndarray  # int64
    out_tok: np.ndarray  # int64
    stream: np.ndarray  # int64 index into streams
    streams: list[str]
    duration_s: float
    notes: list[str] = field(default_factory=list)
    measure_from: float = 0.0  # requests before this are warm-up: simulated, not measured

    def __len__(self) -> int:
        return int(self.t.shape[0])

    @property
    def rate_per_day(self) -> float:
        return len(self) / self.duration_s * 86400.0 if self.duration_s > 0 else 0.0

    @property
    def measured(self) -> np.ndarray:
        return self.t >= self.measure_from

    def summary(self) -> dict[str, object]:
        n = int(self.measured.sum())
        dur = self.duration_s - self.measure_from
        return {"name": self.name, "requests": n, "duration_s": round(dur, 1),
                "rate_per_day": round(n / dur * 86400.0, 1) if dur > 0 else 0.0,
                "warmup_s": self.measure_from, "warmup_requests": len(self) - n, "streams": self.streams,
                "mean_input_tokens": round(float(self.in_tok.mean()), 1) if len(self) else 0.0,
                "mean_output_tokens": round(float(self.out_tok.mean()), 1) if len(self) else 0.0,
                "notes": self.notes}


def _sorted(name: str, t: np.ndarray, i: np.ndarray, o: np.ndarray, s: np.ndarray, streams: list[str],
            duration: float, notes: list[str]) -> Trace:
    order = np.argsort(t, kind="stable")
    return Trace(name, t[order].astype(np.float64), i[order].astype(np.int64), o[order].astype(np.int64),
                 s[order].astype(np.int64), streams, float(duration), notes)


def _parse_ts(v: str) -> float:
    v = v.strip()
    try:
        return float(v)
    except ValueError:
        pass
    # Azure: "2023-11-16 18:15:46.6805900" (7 fractional digits; fromisoformat takes at most 6).
    date, _, frac = v.partition(".")
    base = datetime.fromisoformat(date).timestamp()
    return base + (float("0." + frac) if frac else 0.0)


def load_azure(kind: str) -> Trace:
    """One Azure trace (``azure-conv`` or ``azure-code``) as is; ``azure`` merges both as two streams."""
    if kind == "azure":
        a, b = load_azure("azure-conv"), load_azure("azure-code")
        t0 = 0.0
        return _sorted("azure", np.concatenate([a.t, b.t]) - t0, np.concatenate([a.in_tok, b.in_tok]),
                       np.concatenate([a.out_tok, b.out_tok]),
                       np.concatenate([np.zeros(len(a), np.int64), np.ones(len(b), np.int64)]),
                       ["conv", "code"], max(a.duration_s, b.duration_s), [])
    p = azure_path(kind)
    ts: list[float] = []
    ins: list[int] = []
    outs: list[int] = []
    with p.open(newline="") as f:
        for row in csv.DictReader(f):
            ts.append(_parse_ts(row["TIMESTAMP"]))
            ins.append(int(row["ContextTokens"]))
            outs.append(int(row["GeneratedTokens"]))
    t = np.asarray(ts)
    # Both Azure files start within the same minute; align to the hour the trace covers (18:15 -> 19:15).
    t = t - t.min()
    dur = float(t.max()) * (1.0 + 1.0 / max(1, len(t) - 1))  # the span plus one mean gap, so tiles abut
    return _sorted(kind, t, np.asarray(ins), np.asarray(outs), np.zeros(len(ts), np.int64),
                   [kind.removeprefix("azure-")], dur, [f"source: {p.name}"])


def load_csv(path: str | Path) -> Trace:
    """A plain per-request CSV: ``timestamp, stream[, input_tokens, output_tokens]``, replayed unchanged."""
    p = Path(path)
    ts: list[float] = []
    streams: list[str] = []
    ins: list[int] = []
    outs: list[int] = []
    with p.open(newline="") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        if not {"timestamp", "stream"} <= cols:
            raise ValueError(f"{p}: need columns timestamp, stream[, input_tokens, output_tokens]; have {sorted(cols)}")
        has_tok = {"input_tokens", "output_tokens"} <= cols
        for row in reader:
            ts.append(_parse_ts(row["timestamp"]))
            streams.append(row["stream"])
            ins.append(int(row["input_tokens"]) if has_tok else DEFAULT_TOKENS[0])
            outs.append(int(row["output_tokens"]) if has_tok else DEFAULT_TOKENS[1])
    if not ts:
        raise ValueError(f"{p}: no requests")
    names = sorted(set(streams))
    idx = {n: k for k, n in enumerate(names)}
    t = np.asarray(ts)
    t = t - t.min()
    notes = [f"source: {p}"] + ([] if has_tok else [f"no token columns: {DEFAULT_TOKENS} tokens each"])
    return _sorted(p.stem, t, np.asarray(ins), np.asarray(outs), np.asarray([idx[s] for s in streams]), names,
                   max(float(t.max()), 1.0), notes)


def _token_sampler(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    try:
        az = load_azure("azure-conv")
        return az.in_tok, az.out_tok, "token sizes resampled from the Azure conversation trace"
    except SharedDataMissing:
        return (np.asarray([DEFAULT_TOKENS[0]]), np.asarray([DEFAULT_TOKENS[1]]),
                f"Azure trace absent: {DEFAULT_TOKENS} tokens each")


def poisson(rate_per_s: float, hours: float, rng: np.random.Generator, *, in_tok: int | None = None,
            out_tok: int | None = None) -> Trace:
    """Constant-rate Poisson arrivals; fixed token counts if given, else resampled (see module doc)."""
    dur = hours * 3600.0
    n = int(rng.poisson(rate_per_s * dur))
    t = np.sort(rng.uniform(0.0, dur, size=n))
    if in_tok is not None and out_tok is not None:
        i, o, note = np.full(n, in_tok), np.full(n, out_tok), f"fixed {in_tok}/{out_tok} tokens"
    else:
        pi, po, note = _token_sampler(rng)
        k = rng.integers(0, len(pi), size=n)
        i, o = pi[k], po[k]
    return _sorted("poisson", t, i, o, np.zeros(n, np.int64), ["poisson"], dur,
                   [f"Poisson {rate_per_s:.4g} req/s", note])


def diurnal(rate_per_day: float, hours: float, rng: np.random.Generator, *, amplitude: float = 0.8,
            peak_hour: float = 14.0) -> Trace:
    """Non-homogeneous Poisson day by thinning: rate(t) = mean x (1 + a cos(2 pi (h - peak) / 24))."""
    dur = hours * 3600.0
    mean = rate_per_day / 86400.0
    lam_max = mean * (1.0 + amplitude)
    n = int(rng.poisson(lam_max * dur))
    t = np.sort(rng.uniform(0.0, dur, size=n))
    h = t / 3600.0
    keep = rng.uniform(size=n) * (1.0 + amplitude) < 1.0 + amplitude * np.cos(2 * math.pi * (h - peak_hour) / 24.0)
    t = t[keep]
    pi, po, note = _token_sampler(rng)
    k = rng.integers(0, len(pi), size=len(t))
    return _sorted("diurnal", t, pi[k], po[k], np.zeros(len(t), np.int64), ["diurnal"], dur,
                   [f"diurnal Poisson, mean {rate_per_day:.0f}/day, amplitude {amplitude}, peak {peak_hour}:00", note])


def rescale(tr: Trace, *, hours: float | None, rate_per_day: float | None, mode: str,
            rng: np.random.Generator) -> Trace:
    """Bring a trace to ``rate_per_day`` over ``hours``.

    ``stretch`` multiplies every inter-arrival time by rate/target (bursts keep their shape, idle gaps
    grow); ``thin`` keeps each request with probability target/rate (the burst pattern keeps its time
    scale). A trace shorter than ``hours`` is tiled (copies back to back, each thinned independently).
    """
    if rate_per_day is None and hours is None:
        return tr
    t, i, o, s = tr.t, tr.in_tok, tr.out_tok, tr.stream
    period = tr.duration_s
    notes = list(tr.notes)
    if rate_per_day is not None and mode == "stretch":
        k = tr.rate_per_day / rate_per_day
        t = t * k
        period = period * k
        notes.append(f"time-stretched x{k:.3g} to {rate_per_day:.0f} req/day")
    dur = hours * 3600.0 if hours is not None else period
    copies = max(1, math.ceil(dur / period - 1e-9))
    if copies > 1:
        t = np.concatenate([t + c * period for c in range(copies)])
        i, o, s = np.tile(i, copies), np.tile(o, copies), np.tile(s, copies)
        notes.append(f"tiled x{copies}")
    if rate_per_day is not None and mode == "thin":
        p = rate_per_day / tr.rate_per_day
        if p > 1.0:
            raise ValueError(f"cannot thin {tr.name} ({tr.rate_per_day:.0f}/day) up to {rate_per_day:.0f}/day; "
                             "use scale 'stretch'")
        keep = rng.uniform(size=len(t)) < p
        t, i, o, s = t[keep], i[keep], o[keep], s[keep]
        notes.append(f"thinned p={p:.4g} to {rate_per_day:.0f} req/day")
    m = t < dur
    name = tr.name + (f"@{rate_per_day:.0f}/day-{mode}" if rate_per_day is not None else "")
    return _sorted(name, t[m], i[m], o[m], s[m], tr.streams, dur, notes)


def with_warmup(tr: Trace, warmup_s: float) -> Trace:
    """Prepend the trace's own last ``warmup_s`` seconds as a warm-up, so the measured part is unchanged."""
    if warmup_s <= 0:
        return tr
    w = min(warmup_s, tr.duration_s)
    cut = tr.duration_s - w
    tail = tr.t >= cut
    t = np.concatenate([tr.t[tail] - cut, tr.t + w])
    idx = np.concatenate([np.flatnonzero(tail), np.arange(len(tr))])
    out = _sorted(tr.name, t, tr.in_tok[idx], tr.out_tok[idx], tr.stream[idx], tr.streams, tr.duration_s + w,
                  [*tr.notes, f"warm-up: the last {w:.0f} s replayed first, not measured"])
    out.measure_from = w
    return out


SERVEGEN_RATES = "servegen_client_rates_10min.csv"
SERVEGEN_TOKENS = "servegen_client_tokens_6h.csv"
_WINDOW_S = 600.0


def _servegen_file(name: str) -> Path:
    p = shared_dir() / "data" / "traces" / name
    if not p.is_file():
        raise SharedDataMissing(f"{p} not found: the ServeGen aggregates live in ../shared beside the checkout "
                                "(or set PICKSPIN_SHARED)")
    return p


def _lognormal(rng: np.random.Generator, mean: float, p50: float, n: int) -> np.ndarray:
    """Lognormal with the given median and mean (sigma^2 = 2 ln(mean / median)), at least 1 token."""
    p50 = max(p50, 1.0)
    sigma = math.sqrt(max(0.0, 2.0 * math.log(max(mean, p50) / p50)))
    return np.maximum(1, np.rint(rng.lognormal(math.log(p50), sigma, size=n))).astype(np.int64)


def load_servegen(spec: str, hours: float | None, rng: np.random.Generator) -> Trace:
    """One ServeGen stream (Alibaba Bailian; alibaba/ServeGen, Apache-2.0; Xiang et al., arXiv:2505.09999).

    ``servegen:<model>[:<client_id>|:median]`` (default ``median``: the client whose 14-day total is the
    median of that model's clients). Per 10-minute window the recorded count of requests is placed with
    inter-arrival times drawn from the window's fitted family (G = Gamma, W = Weibull) with its shape
    ``iat_p1``, scaled so the window holds exactly that count (the burstiness of the fit, the count of
    the data). Token counts per request are lognormal with the stream's 6-hour median and mean.
    """
    parts = spec.split(":")
    if len(parts) not in (2, 3) or parts[0] != "servegen":
        raise ValueError(f"--trace {spec!r}: use servegen:<model>[:<client_id>|:median]")
    model, who = parts[1], (parts[2] if len(parts) == 3 else "median")
    rows: dict[str, list[tuple[int, int, str, float]]] = {}
    with _servegen_file(SERVEGEN_RATES).open(newline="") as f:
        for r in csv.DictReader(f):
            if r["model"] == model:
                rows.setdefault(r["client_id"], []).append(
                    (int(r["window"]), int(r["requests_in_10min"]), r["iat_family"], float(r["iat_p1"] or 1.0)))
    if not rows:
        raise ValueError(f"--trace {spec!r}: no ServeGen stream for model {model!r}")
    if who == "median":
        ranked = sorted(rows, key=lambda c: (sum(n for _, n, _, _ in rows[c]), c))
        who = ranked[len(ranked) // 2]
    if who not in rows:
        raise ValueError(f"--trace {spec!r}: model {model!r} has no client {who!r}")
    last = max(w for w, _, _, _ in rows[who])
    dur = hours * 3600.0 if hours is not None else (last + 1) * _WINDOW_S
    ts: list[np.ndarray] = []
    win_of: list[np.ndarray] = []
    for w, n, fam, shape in sorted(rows[who]):
        if n <= 0 or w * _WINDOW_S >= dur:
            continue
        shape = max(shape, 0.05)
        iat = rng.gamma(shape, 1.0, size=n + 1) if fam == "G" else rng.weibull(shape, size=n + 1)
        cum = np.cumsum(iat)
        ts.append(w * _WINDOW_S + cum[:n] / cum[n] * _WINDOW_S)
        win_of.append(np.full(n, w))
    t = np.concatenate(ts) if ts else np.zeros(0)
    win = np.concatenate(win_of) if win_of else np.zeros(0, np.int64)
    tok: dict[int, tuple[float, float, float, float]] = {}
    with _servegen_file(SERVEGEN_TOKENS).open(newline="") as f:
        for r in csv.DictReader(f):
            if r["model"] == model and r["client_id"] == who:
                tok[int(float(r["window_start_s"]) // 21600)] = (
                    float(r["in_mean"] or 0), float(r["in_p50"] or 1), float(r["out_mean"] or 0), float(r["out_p50"] or 1))
    i = np.empty(len(t), np.int64)
    o = np.empty(len(t), np.int64)
    six_h = (win * _WINDOW_S // 21600).astype(np.int64)
    for k in np.unique(six_h):
        m = six_h == k
        default = (float(DEFAULT_TOKENS[0]), float(DEFAULT_TOKENS[0]), float(DEFAULT_TOKENS[1]), float(DEFAULT_TOKENS[1]))
        im, ip, om, op = tok.get(int(k), default)
        i[m] = _lognormal(rng, im, ip, int(m.sum()))
        o[m] = _lognormal(rng, om, op, int(m.sum()))
    keep = t < dur
    return _sorted(f"servegen-{model}-{who}", t[keep], i[keep], o[keep], np.zeros(int(keep.sum()), np.int64),
                   [f"{model}/{who}"], dur,
                   [f"source: {SERVEGEN_RATES} ({model}, client {who}); arrivals drawn per 10-min window from "
                    "the fitted inter-arrival family, tokens lognormal from the 6-h stats",
                    "ServeGen records windows with < 10 requests as 0 (see ../shared/README.md)"])


def build_trace(spec: str, *, hours: float | None, rate_per_day: float | None, scale: str,
                rng: np.random.Generator) -> Trace:
    """``spec``: azure-conv | azure-code | azure | servegen:<model>[:<client>] | diurnal | poisson | a CSV path."""
    if spec in ("azure-conv", "azure-code", "azure"):
        return rescale(load_azure(spec), hours=hours, rate_per_day=rate_per_day, mode=scale, rng=rng)
    if spec.startswith("servegen:"):
        return rescale(load_servegen(spec, hours, rng), hours=hours, rate_per_day=rate_per_day, mode=scale, rng=rng)
    if spec == "diurnal":
        return diurnal(rate_per_day or 10_000.0, hours or 24.0, rng)
    if spec == "poisson":
        return poisson((rate_per_day or 10_000.0) / 86400.0, hours or 1.0, rng)
    p = Path(spec)
    if p.is_file():
        return rescale(load_csv(p), hours=hours, rate_per_day=rate_per_day, mode=scale, rng=rng)
    raise ValueError(f"--trace: {spec!r} is not azure-conv, azure-code, azure, servegen:<model>[:<client>], "
                     "diurnal, poisson or a CSV file")
