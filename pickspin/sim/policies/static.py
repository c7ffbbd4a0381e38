"""The paper's baseline: every model always on with a fixed number of replicas (no autoscaler)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Policy

if TYPE_CHECKING:
    from ..engine import Simulation


class StaticPolicy(Policy):
    name = "static"

    def attach(self, sim: Simulation) -> None:
        for ms in sim.models:
            sim.scale(ms, ms.cluster.static_replicas, 0.0, warm=True)
