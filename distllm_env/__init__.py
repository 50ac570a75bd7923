"""distllm-env: Gymnasium environments and reference baselines for geo-distributed LLM inference.

Python entry points::

    import distllm_env
    sc = distllm_env.load_scenario("paper-clustered")
    res = distllm_env.simulate(sc, placement="even", routing="shortest", seed=0)
    res.summary["mean_per_token_time_s"]
"""

from ._version import __version__
from .api import SimulationResult, simulate
from .catalog import Calibration, Catalog, DeviceSpec, GpuSpec, ModelSpec, default_catalog
from .chains import ChainDAG, Hop, HopCost, Route, route_from_chain
from .errors import (DistLLMError, NoFeasibleChain, PlacementError, PolicyLoadError, RouteError, ScenarioError,
                     SolverTimeout)
from .instance import Instance, build_instance
from .placement import CachePolicy, Placement, PlacementResult
from .scenario import Scenario, list_presets, load_scenario
from .simulator import RequestRecord, Simulation
from .workload import Request, generate_requests
from .replay import EpisodeRecord, replay
from .compare import compare
from .testing import assert_beats
from .envs import register_envs as _register_envs

_register_envs()

__all__ = [
    "CachePolicy", "Calibration", "Catalog", "ChainDAG", "DeviceSpec", "DistLLMError", "GpuSpec", "Hop", "HopCost",
    "Instance", "ModelSpec", "NoFeasibleChain", "Placement", "PlacementError", "PlacementResult", "PolicyLoadError",
    "Request", "RequestRecord", "Route", "RouteError", "Scenario", "ScenarioError", "Simulation",
    "SimulationResult", "SolverTimeout", "__version__", "build_instance", "default_catalog",
    "generate_requests", "list_presets", "load_scenario", "route_from_chain", "simulate", "replay", "EpisodeRecord",
    "compare", "assert_beats",
]
