"""Pick inside the simulator: the router's own ``rank`` over a snapshot built from simulated state.

Variants:

* ``keyword`` - the router's keyword classifier and the matrix's default profile;
* ``hybrid`` / ``semantic`` - the router's registry classifier of that name (onnxruntime scorer), if its
  artifact loads; estimates are computed once per distinct prompt and reused across policies;
* ``quality-only`` - relevance alone (profile alpha=1, lambda=0, mu=0): every request goes to the most
  capable model, the way a single-big-model deployment behaves.

The snapshot is what the router would see on Kubernetes: each backend is a Knative URL (healthy; the
activator answers even at zero replicas), ``inflight`` = requests routed there and not answered, latency
= EWMA of answered requests (prior ``expected_latency_s``), error rate over the last N outcomes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from functions.router.classifiers.base import Estimate
from functions.router.scoring import Candidate, rank
from functions.router.telemetry import BackendStats
from pickspin.config import Profile, ServiceMatrix

from .cluster import ModelState

log = logging.getLogger("pickspin.sim.routing")

QUALITY_ONLY = Profile(alpha=1.0, **{"lambda": 0.0}, mu=0.0)


@dataclass(frozen=True)
class RoutingVariant:
    name: str
    classifier: str  # registry name of the classifier whose estimates are used
    profile: Profile


def variant(name: str, matrix: ServiceMatrix) -> RoutingVariant:
    default = matrix.profiles[matrix.routing.default_profile]
    if name == "quality-only":
        return RoutingVariant(name, "keyword", QUALITY_ONLY)
    if name in ("keyword", "hybrid", "semantic"):
        return RoutingVariant(name, name, default)
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

    def snapshot(self) -> dict[str, BackendStats]:
        return {
            self._backend_of[ms.idx]: BackendStats(True, ms.inflight, ms.ewma_latency, None, ms.error_rate,
                                                   ms.observations, 0.0)
            for ms in self.models
        }

    def choose(self, est: Estimate) -> int | None:
        """Index of the chosen model, or None when no backend is eligible (the router answers 503)."""
        table = rank(self.candidates, self.snapshot(), est, self.variant.profile, max_error_rate=self.max_error_rate)
        top = table[0]
        if not top.eligible:
            return None
        return self.by_backend[top.backend]
