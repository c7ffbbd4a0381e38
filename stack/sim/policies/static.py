"""The paper's baseline: every model always on with a fixed number of replicas (no autoscaler).

``static`` uses each model's ``static_replicas`` (one always-on replica per model by default).
``static-peak`` provisions every model for the peak the autoscaled run needed: the most replicas
PickSpin held for it in the measured window on the same trace and routing (the runner passes them;
without a PickSpin run, the model's ``max_replicas``). It never queues for capacity PickSpin had, so it
isolates what always-on costs at equal peak capacity.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..config import SimConfig
from .base import Policy

if TYPE_CHECKING:
    from ..engine import Simulation


class StaticPolicy(Policy):
    name = "static"

    def __init__(self, cfg: SimConfig, replicas: Mapping[str, int] | None = None) -> None:
        super().__init__(cfg)
        self.replicas = dict(replicas or {})

    def count(self, sim: Simulation, name: str) -> int:
        return self.replicas.get(name, sim.cfg.cluster.models[name].static_replicas)

    def attach(self, sim: Simulation) -> None:
        for ms in sim.models:
            sim.scale(ms, self.count(sim, ms.name), 0.0, warm=True)


class StaticPeakPolicy(StaticPolicy):
    name = "static-peak"

    def count(self, sim: Simulation, name: str) -> int:
        m = sim.cfg.matrix.model(name)
        assert m is not None
        return max(1, self.replicas.get(name, m.scaling.max_replicas))
