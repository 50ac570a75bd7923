"""The live engine: sessions whose times emerge from events (server contention, unknown output
lengths).  docs/architecture.md "How the core grows"; docs/simulator.md "The live engine".

:class:`~distllm_env.live.engine.LiveSimulation` exposes the stepping API of
:class:`~distllm_env.simulator.Simulation`; :func:`distllm_env.simulator.new_simulation` picks the
engine from the scenario.  The simulator core never imports gymnasium.
"""

from .engine import LiveSimulation

__all__ = ["LiveSimulation"]
