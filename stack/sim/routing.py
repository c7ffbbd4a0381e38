"""Pick inside the simulator: the router's own code on simulated time.

Each run builds the router's ``RouterState`` (its ``Telemetry`` on the simulation's clock, its
candidates) and asks the router's ``decide`` for every arrival, with the prompt's precomputed
estimate. The engine reports each request's start and outcome to that telemetry, as the router's
proxy does, so EWMA latency, error window, decay and cold marking are the router's.

Variants:

* ``keyword`` - the router's keyword classifier and the matrix's default profile;
* ``hybrid`` / ``semantic`` - the router's registry classifier of that name (onnxruntime scorer), if its
  artifact loads; estimates are computed once per distinct prompt and reused across policies;
* ``<classifier>@<profile>`` - the same with another operator profile of the matrix (e.g.
  ``hybrid@quality``: alpha 1, lambda 0.1, mu 0.1);
* ``quality-only`` - relevance alone (profile alpha=1, lambda=0, mu=0): every request goes to the most
  capable model, the way a single-big-model deployment behaves.
* ``<variant>+decay`` - the router's optional ``router.latency_half_life_s`` (``DECAY_HALF_LIFE_S``; off by
  default because of what this variant shows): a backend's latency EWMA relaxes back to its prior while
  it gets no answers. Without it a model that once looked slow (a cold start, an overload) and then gets
  no traffic keeps its stale latency for good; the variant measures what that costs.
* ``<variant>+aware`` - ``+decay`` plus the true readiness: the router is told which backends are at zero,
  as the local activator's ``X-PickSpin-Backend-State`` header tells it (a model with a replica starting
  counts as waking, not cold). Without it the router guesses, as it does on Kubernetes.

Every variant runs the router as the Helm chart configures it: each backend's ``cold_start_s`` is its
model's load time, paid in T while the router believes the backend is at zero.

The router's view is what it has on Kubernetes: each backend is a Knative URL (healthy; the activator
answers even at zero replicas), in flight = requests routed there and not answered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from functions.router.app import RouterState, decide
from functions.router.classifiers.base import Estimate
from functions.router.classifiers.keyword import KeywordClassifier
from pickspin.config import Profile, ServiceMatrix

from .cluster import ModelState

log = logging.getLogger("pickspin.sim.routing")

QUALITY_ONLY = Profile(alpha=1.0, **{"lambda": 0.0}, mu=0.0)
QUALITY_ONLY_PROFILE = "quality-only"
DECAY_HALF_LIFE_S = 120.0
BASE_VARIANTS = ("keyword", "hybrid", "semantic", "quality-only")


@dataclass(frozen=True)
class RoutingVariant:
    name: str
    classifier: str  # registry name of the classifier whose estimates are used
    profile_name: str
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
    pname = prof or matrix.routing.default_profile
    decay = DECAY_HALF_LIFE_S if suf else None
    aware = suf == "+aware"
    if base == "quality-only":
        return RoutingVariant(name, "keyword", QUALITY_ONLY_PROFILE, QUALITY_ONLY, decay, aware)
    if base in ("keyword", "hybrid", "semantic"):
        return RoutingVariant(name, base, pname, matrix.profiles[pname], decay, aware)
    raise ValueError(f"unknown routing variant {name!r}")



def router_matrix(matrix: ServiceMatrix, v: RoutingVariant, models: Sequence[ModelState]) -> ServiceMatrix:
    """The service matrix the simulated router runs with: the variant's profile and what-if settings."""
    router = matrix.router.model_copy(update={"latency_half_life_s": v.decay_half_life_s})
    out = matrix.model_copy(update={"router": router, "profiles": {**matrix.profiles, v.profile_name: v.profile}})
    # As the Helm chart deploys it: every backend's cold_start_s is its model's load time, which the router
    # adds to T while it believes the backend is at zero (its own guess; +aware tells it the truth).
    cold = {ms.model.name: ms.cluster.cold_start_s for ms in models}
    return out.model_copy(update={"models": [
        m.model_copy(update={"backends": [b.model_copy(update={"cold_start_s": cold[m.name]})
                                          for b in m.backends]}) for m in out.models]})


class SimRouter:
    """Chooses a model per request with the router's ``decide`` over the router's telemetry."""

    def __init__(self, matrix: ServiceMatrix, v: RoutingVariant, models: Sequence[ModelState],
                 clock: Callable[[], float] = lambda: 0.0) -> None:
        self.variant = v
        m = router_matrix(matrix, v, models)
        # Estimates come precomputed with each prompt; the keyword classifier is never asked.
        self.state = RouterState.build(m, KeywordClassifier.from_config(m), clock=clock)
        self.telemetry = self.state.telemetry
        self._clock = clock
        self._tick_every = self.telemetry.tick_interval_s()
        self._next_tick = float("-inf")
        self.models = list(models)
        self.by_backend = {b.name: ms.idx for ms in models for b in ms.model.backends}
        self._backend_of = [ms.model.backends[0].name for ms in models]

    # -- what the router's proxy reports, per request --------------------------------------------
    def begin(self, ms: ModelState) -> None:
        self.telemetry.begin(self._backend_of[ms.idx])

    def end(self, ms: ModelState, ok: bool, latency_s: float) -> None:
        self.telemetry.end(self._backend_of[ms.idx], ok=ok, latency_s=latency_s if ok else None)

    def choose(self, est: Estimate) -> int | None:
        """Index of the chosen model, or None when no backend is eligible (the router answers 503)."""
        if self.variant.cold_aware:
            for ms in self.models:  # what the activator's state header would say
                waking = any(not r.draining for r in ms.replicas)
                self.telemetry.set_cold(self._backend_of[ms.idx], not waking)
        now = self._clock()
        if now >= self._next_tick:  # the prober thread's passive work, on its schedule in simulated time
            self.telemetry.tick()
            self._next_tick = now + self._tick_every
        d = decide(self.state, "", self.variant.profile_name, estimate=est)
        best = d.eligible
        return self.by_backend[best[0].backend] if best else None
