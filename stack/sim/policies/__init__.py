"""Autoscaling strategies, one file each; ``build_policy(name, cfg)`` makes one for a run."""

from __future__ import annotations

from ..config import SimConfig
from .base import Policy
from .keda_threshold import KedaThresholdPolicy
from .knative_kpa import KnativeKPAPolicy
from .pickspin import PickSpinAdaptivePolicy, PickSpinPolicy
from .static import StaticPeakPolicy, StaticPolicy

POLICIES: dict[str, type[Policy]] = {
    "static": StaticPolicy,
    "static-peak": StaticPeakPolicy,
    "knative-kpa": KnativeKPAPolicy,
    "keda-threshold": KedaThresholdPolicy,
    "pickspin": PickSpinPolicy,
    "pickspin-adaptive": PickSpinAdaptivePolicy,
}


def build_policy(name: str, cfg: SimConfig, *, static_replicas: dict[str, int] | None = None) -> Policy:
    """A policy for one run; ``static_replicas`` fixes the replicas of ``static`` / ``static-peak``."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r} (have {sorted(POLICIES)})") from None
    if issubclass(cls, StaticPolicy):
        return cls(cfg, static_replicas)
    return cls(cfg)


__all__ = ["POLICIES", "Policy", "build_policy"]
