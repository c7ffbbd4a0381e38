"""Pick: rank (model, backend) candidates by Eq. 2 of the paper, as a pure function.

    f(x) = w_R * R_hat(x) + w_T * T_hat(x) + w_C * C_hat(x)

* R_hat(x) = sum_k p_k * capability[x][k]: expected fitness of model x for the prompt's complexity
  distribution p (in [0, 1] because capabilities are).
* T_hat(x) = 1 - norm(T(x)), T(x) = EWMA latency * (1 + inflight / max_concurrency): expected latency
  under the backend's current load, plus the backend's cold_start_s when it is believed to be at zero.
* C_hat(x) = 1 - norm(C(x)): price per 1K tokens, or price per GPU-second times expected latency.
* norm(v) = (v - min) / (max - min) over the eligible candidates; 0 when they are all equal
  (including the single-candidate case), so an unopposed candidate gets the full weight.
* (w_R, w_T, w_C) = (alpha, lambda, mu) / (alpha + lambda + mu) from the operator profile.

Only healthy backends with free capacity whose circuit admits traffic are eligible (an open circuit
whose cooldown is over at ``now`` is eligible: its next request is the trial). ``max_error_rate``
additionally excludes on the raw error rate (the simulator's model; the router leaves it to the
circuit breaker, which needs a minimum sample count and recovers). Ties are
broken deterministically: lower cost, then lower latency, then model name, then backend name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from pickspin.config import Backend, Model, Profile, ServiceMatrix

from .classifiers.base import Estimate
from .telemetry import BackendStats


@dataclass(frozen=True)
class Candidate:
    model: Model
    backend: Backend


def candidates_of(matrix: ServiceMatrix) -> list[Candidate]:
    """Every (model, backend) pair of the service matrix, in config order."""
    return [Candidate(m, b) for m in matrix.models for b in m.backends]


class Scored(NamedTuple):
    """One row of the score table (immutable; a NamedTuple because rank builds one per candidate per
    request, and a frozen dataclass's constructor was a third of rank's time at 32 candidates)."""

    model: str
    backend: str
    eligible: bool
    reason: str | None
    relevance: float
    latency_s: float
    cost: float
    latency_hat: float
    cost_hat: float
    score: float | None

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "backend": self.backend,
            "eligible": self.eligible,
            "reason": self.reason,
            "R_hat": round(self.relevance, 4),
            "T_s": round(self.latency_s, 4),
            "T_hat": round(self.latency_hat, 4),
            "C": round(self.cost, 6),
            "C_hat": round(self.cost_hat, 4),
            "score": None if self.score is None else round(self.score, 4),
        }


def relevance(model: Model, probs: Mapping[str, float]) -> float:
    return sum(float(p) * model.capability.of(k) for k, p in probs.items())


def expected_latency(backend: Backend, stats: BackendStats) -> float:
    """EWMA latency under the current load, plus the wait for the backend to be ready: the ETA its
    activator reports when known, else its cold_start_s while it is believed to be at zero."""
    warm = stats.latency_s * (1.0 + stats.inflight / backend.max_concurrency)
    if stats.eta_s is not None:
        return warm + stats.eta_s
    return warm + (backend.cold_start_s if stats.cold else 0.0)


def unit_cost(model: Model, latency_s: float) -> float:
    c = model.cost
    if c.per_1k_tokens is not None:
        return c.per_1k_tokens
    return (c.per_gpu_second or 0.0) * latency_s


def _norm(v: float, lo: float, hi: float) -> float:
    return 0.0 if hi - lo <= 1e-12 else (v - lo) / (hi - lo)


def capacity(backend: Backend, stats: BackendStats, max_held: int = 0) -> int:
    """Requests the backend may have in flight: its max_concurrency, plus up to ``max_held`` more while
    it is cold or waking (they wait in its activator for the one start, rather than 503 here)."""
    waiting = stats.cold or bool(stats.eta_s)
    return backend.max_concurrency + (max_held if waiting else 0)


def ineligible_reason(backend: Backend, stats: BackendStats | None, max_error_rate: float | None,
                      now: float | None = None, half_open_requests: int = 1, max_held: int = 0) -> str | None:
    if stats is None:
        return "no telemetry"
    if not stats.healthy:
        return "unhealthy"
    if stats.circuit == "open" and (now is None or now < stats.retry_at):
        return "circuit open"
    if stats.circuit == "half_open" and stats.trials >= half_open_requests:
        return "circuit half-open (trial in flight)"
    if stats.inflight >= capacity(backend, stats, max_held):
        return "at capacity" if stats.inflight <= backend.max_concurrency else f"{stats.inflight} held, at the cap"
    if max_error_rate is not None and stats.error_rate > max_error_rate:
        return f"error rate {stats.error_rate:.2f}"
    return None


def rank(
    candidates: Sequence[Candidate],
    snapshot: Mapping[str, BackendStats],
    estimate: Estimate,
    profile: Profile,
    *,
    max_error_rate: float | None = 0.5,
    now: float | None = None,
    half_open_requests: int = 1,
    max_held: int = 0,
) -> list[Scored]:
    """Score every candidate; eligible ones first, best first. Pure: no I/O, no clock, no state
    (``now`` is the caller's clock reading, for circuits whose cooldown may be over)."""
    w_r, w_t, w_c = profile.weights()
    probs = estimate.probs
    # per model, not per backend: relevance and price (a model's backends share them)
    per_model: dict[int, tuple[float, float | None, float]] = {}
    rows: list[tuple[Candidate, str | None, float, float, float]] = []
    for cand in candidates:
        b, m = cand.backend, cand.model
        st = snapshot.get(b.name)
        if st is None:
            reason: str | None = "no telemetry"
            lat = b.expected_latency_s
        else:
            # the common case (healthy, closed, free) without the call; the rest names its reason
            if st.healthy and st.circuit == "closed" and st.inflight < b.max_concurrency and (
                    max_error_rate is None or st.error_rate <= max_error_rate):
                reason = None
            else:
                reason = ineligible_reason(b, st, max_error_rate, now, half_open_requests, max_held)
            lat = expected_latency(b, st)
        pm = per_model.get(id(m))
        if pm is None:
            pm = per_model[id(m)] = (relevance(m, probs), m.cost.per_1k_tokens, m.cost.per_gpu_second or 0.0)
        rel, per_1k, per_gpu = pm
        rows.append((cand, reason, rel, lat, per_1k if per_1k is not None else per_gpu * lat))

    ok = [r for r in rows if r[1] is None]
    t_lo, t_hi = (min(r[3] for r in ok), max(r[3] for r in ok)) if ok else (0.0, 0.0)
    c_lo, c_hi = (min(r[4] for r in ok), max(r[4] for r in ok)) if ok else (0.0, 0.0)

    out: list[Scored] = []
    for cand, reason, rel, lat, cost in rows:
        if reason is None:
            t_hat = 1.0 - _norm(lat, t_lo, t_hi)
            c_hat = 1.0 - _norm(cost, c_lo, c_hi)
            score: float | None = w_r * rel + w_t * t_hat + w_c * c_hat
        else:
            t_hat = c_hat = 0.0
            score = None
        out.append(Scored(cand.model.name, cand.backend.name, reason is None, reason, rel, lat, cost, t_hat, c_hat,
                          score))
    out.sort(key=lambda s: (not s.eligible, -round(s.score or 0.0, 9), s.cost, s.latency_s, s.model, s.backend))
    return out
