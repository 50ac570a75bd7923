"""Policy protocols (docs/contracts.md §7).

```
PlacementPolicy: name, family; place(instance, rng) -> PlacementResult
                 optional, churn: place_joining(server, count, view, rng) -> first block
RoutingPolicy:   name, family; route(request, view: ClusterView, rng) -> Route  (raises NoFeasibleChain)
SplitPolicy:     name; split(request, profile, sla_s) -> SplitPlan
EnvPolicy:       act(obs, info) -> int
```

``place`` receives the seed's :class:`~distllm_env.instance.Instance` (the scenario with its servers,
clients and RTTs drawn), which is what docs/contracts.md calls "scenario" in the signature: a placement
for a scenario whose servers are sampled per seed only makes sense for a drawn instance.  The
instance keeps a reference to its scenario (``instance.scenario``).

Families (docs/contracts.md §4) select the allocation delay a policy is charged in ``paper-*``
reproductions: ``petals``, ``proposed`` or ``default``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .chains import Route
    from .instance import Instance
    from .placement import PlacementResult
    from .view import ClusterView
    from .workload import Request


@runtime_checkable
class PlacementPolicy(Protocol):
    name: str
    family: str

    def place(self, instance: "Instance", rng: np.random.Generator) -> "PlacementResult": ...


@runtime_checkable
class RoutingPolicy(Protocol):
    name: str
    family: str

    def route(self, request: "Request", view: "ClusterView", rng: np.random.Generator) -> "Route": ...


@runtime_checkable
class SplitPolicy(Protocol):
    name: str

    def split(self, request: Any, profile: Any, sla_s: float) -> Any: ...


@runtime_checkable
class EnvPolicy(Protocol):
    def act(self, obs: Any, info: dict) -> int: ...


__all__ = ["EnvPolicy", "PlacementPolicy", "RoutingPolicy", "SplitPolicy"]
