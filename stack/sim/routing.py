"""Pick inside the simulator: the router's own ``rank`` over a snapshot built from simulated state.

Variants:

* ``keyword`` - the router's keyword classifier and the matrix's default profile;
* ``hybrid`` / ``semantic`` - the router's registry classifier of that name (onnxruntime scorer), if its
  artifact loads; estimates are computed once per distinct prompt and reused across policies;
* ``<classifier>@<profile>`` - the same with another operator profile of the matrix (e.g.
  ``hybrid@quality``: alpha 1, lambda 0.1, mu 0.1);
* ``quality-only`` - relevance alone (profile alpha=1, lambda=0, mu=0): every request goes to the most
  capable model, the way a single-big-model deployment behaves.
* ``<variant>+decay`` - the router's optional ``router.latency_half_life_s`` (off by default because of
  what this variant shows): a backend's latency EWMA relaxes back to its prior (half-life
  ``DECAY_HALF_LIFE_S``) while it gets no answers. The router's EWMA moves only
  when a backend answers, so a model that once looked slow (a cold start, an overload) and then gets no
  traffic keeps its stale latency for good; the variant measures what that costs.
* ``<variant>+aware`` - a what-if on top of ``+decay``: the snapshot's latency of a model with no ready
  replica adds the cold start still ahead of it (the router would need the scale state, e.g. from the
  scaler or the Knative API). It tests whether Pick should know what Spin is doing.

The snapshot is what the router would see on Kubernetes: each backend is a Knative URL (healthy; the
activator answers even at zero replicas), ``inflight`` = requests routed there and not answered, latency
= EWMA of answered requests (prior ``expected_latency_s``), error rate over the last N outcomes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from functions.router.classifiers.base import Estimate
from functions.router.scoring import Candidate, rank
from functions.router.telemetry import BackendStats
from pickspin.config import Profile, ServiceMatrix

from .cluster import ModelState

log = logging.getLogger("pickspin.sim.routing")

QUALITY_ONLY = Profile(alpha=1.0, **{"lambda": 0.0}, mu=0.0)
DECAY_HALF_LIFE_S = 120.0
BASE_VARIANTS = ("keyword", "hybrid", "semantic", "quality-only")


@dataclass(frozen=True)
class RoutingVariant:
    name: str
    classifier: str  # registry name of the classifier whose estimates are used
    profile: Profile
    decay_half_life_s: float | None = None  # what-if: stale latency relaxes to the prior
    cold_aware: bool = False  # what-if: add the cold start ahead of a model with no ready replica


SUFFIXES = ("+decay", "+aware")


def split_variant(name: str) -> tuple[str, str]:
    for suf in SUFFIXES:
        if name.endswith(suf):
            return name.removesuffix(suf), suf
    return name, ""


def is_variant(name: str) -> bool:
    return split_variant(name)[0].partition("@")[0] in BASE_VARIANTS


def variant(name: str, matrix: ServiceMatrix) -> RoutingVariant:
    """``<classifier>[@<profile>][+decay|+aware]`` or ``quality-only[...]``; the profile defaults to the
    matrix's ``routing.default_profile``."""
    base, suf = split_variant(name)
    base, _, prof = base.partition("@")
    if prof and prof not in matrix.profiles:
        raise ValueError(f"routing variant {name!r}: unknown profile {prof!r} (have {sorted(matrix.profiles)})")
    default = matrix.profiles[prof or matrix.routing.default_profile]
    decay = DECAY_HALF_LIFE_S if suf else None
    aware = suf == "+aware"
    if base == "quality-only":
        return RoutingVariant(name, "keyword", QUALITY_ONLY, decay, aware)
    if base in ("keyword", "hybrid", "semantic"):
        return RoutingVariant(name, base, default, decay, aware)
    raise ValueError(f"unknown routing variant {name!r}")


class SimRouter:
    """Chooses a model per request with ``functions.router.scoring.rank``."""

    def __init__(self, matrix: ServiceMatrix, v: RoutingVariant, models: Sequence[ModelState]) -> None:
        self.variant = v
        self.max_error_rate = matrix.router.max_error_rate
        self.candidates = [Candidate(m.model, b) for m in models for b in m.model.backends]
        self.models = list(models)
        self.by_backend = {b.name: ms.idx for ms in models for b in ms.model.backends}
        self._backend_of = [ms.model.backends[0].name for ms in models]

    def latency(self, ms: ModelState, now: float) -> float:
        hl = self.variant.decay_half_life_s
        lat = ms.ewma_latency
        if hl is not None and ms.last_observed is not None:
            prior = ms.model.backends[0].expected_latency_s
            lat = prior + (lat - prior) * math.exp(-math.log(2) * (now - ms.last_observed) / hl)
        if self.variant.cold_aware and not any(r.ready and not r.draining for r in ms.replicas):
            starting = [r.t_ready - now for r in ms.replicas if not r.ready and not r.draining]
            lat += min(starting) if starting else ms.cluster.cold_start_s
        return lat

    def snapshot(self, now: float = 0.0) -> dict[str, BackendStats]:
        return {
            self._backend_of[ms.idx]: BackendStats(True, ms.inflight, self.latency(ms, now), None, ms.error_rate,
                                                   ms.observations, 0.0)
            for ms in self.models
        }

    def choose(self, est: Estimate, now: float = 0.0) -> int | None:
        """Index of the chosen model, or None when no backend is eligible (the router answers 503)."""
        table = rank(self.candidates, self.snapshot(now), est, self.variant.profile,
                     max_error_rate=self.max_error_rate)
        top = table[0]
        if not top.eligible:
            return None
        return self.by_backend[top.backend]
