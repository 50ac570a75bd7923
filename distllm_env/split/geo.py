"""Split inference inside the geo-distributed simulator: a client with a device runs the first blocks of
the chain itself (where SplitLLM meets PETALS; docs/model.md §10.7).

:class:`GeoSplitter` is the ``splitter`` of :func:`distllm_env.simulate`: before each routing decision
``plan(request, instance)`` returns a :class:`~distllm_env.simulator.ClientPart` — how many leading
blocks c the client runs and their times.  Routing then starts from a dummy source covering blocks
0 … c−1 (the core's ``ChainDAG(placement, c)``), and the simulator adds the client's times to the
session's service time.

Planning profile of a request (prompt n, g = l_out − 1 decode steps) on the catalog block model:

* client time of block l: a roofline max(FLOPs / effective FLOP/s, weight bytes / memory bandwidth)
  for the prompt pass and for each decode step (every step reads the block's weights once), for the
  blocks the client's memory can hold — c·(s_m + KV bytes per block of this request) ≤
  ``memory_fraction`` × device memory — and at most L − 1 blocks (the server chain needs one);
  ``inf`` beyond (the client cannot run them);
* server time of block l: the mean over servers of the calibrated τ^I_j(n) + g·τ_j, server work =
  the block's FLOPs;
* communication: a client → server transition costs one hop of the simulator's own cost model,
  the mean over servers of t^I_cj(n) + g·t_cj; server → client transitions cost 0.  A client prefix
  therefore adds no hop (the client → first server hop exists anyway), a client run in the middle of
  the chain adds one hop per token.

SLA = factor × the profile's server-only latency (factor from the constructor, else the scenario's
``split.sla.factor``, else 1.5).  The split policy minimises server work subject to the SLA; the
splitter keeps the leading client run of its placement (a prefix: the simulator supports only a
client prefix; with uniform blocks an optimal DP plan of least time is a prefix anyway).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ScenarioError
from ..instance import Instance
from ..simulator import ClientPart
from .models import layer_model_from_spec
from .profile import LayerProfile, SplitPlan

DEFAULT_SLA_FACTOR = 1.5


class GeoSplitter:
    """Turns a split policy and each client's device into a :class:`ClientPart` per request."""

    def __init__(self, policy: Any = "dp", sla_factor: float | None = None, sla_s: float | None = None,
                 memory_fraction: float = 1.0, budget_steps: int | None = None, record: bool = True):
        """``policy``: a split policy name, import path or object; ``sla_factor`` / ``sla_s``: the SLA
        (relative to server-only time, or seconds); ``memory_fraction``: the share of a device's memory
        the client may use.

        Raises:
            ScenarioError: ``sla_factor`` or ``sla_s`` not a finite number > 0, ``memory_fraction`` not in
                (0, 1], or a bad policy / option (:func:`~distllm_env.baselines.splitllm.make_split_policy`)."""
        from ..baselines.splitllm import make_split_policy

        if sla_factor is not None and not (float(sla_factor) > 0 and math.isfinite(float(sla_factor))):
            raise ScenarioError("sla_factor", f"expected a number > 0, got {sla_factor!r}")
        if sla_s is not None and not (float(sla_s) > 0 and math.isfinite(float(sla_s))):
            raise ScenarioError("sla_s", f"expected a number of seconds > 0, got {sla_s!r}")
        if not (0 < float(memory_fraction) <= 1):
            raise ScenarioError("memory_fraction", f"expected a fraction in (0, 1], got {memory_fraction!r}")
        self.policy = make_split_policy(policy, **({"budget_steps": budget_steps} if budget_steps and
                                                  isinstance(policy, str) else {}))
        self.name = f"geo-split({getattr(self.policy, 'name', type(self.policy).__name__)})"
        self.sla_factor = None if sla_factor is None else float(sla_factor)
        self.sla_s = None if sla_s is None else float(sla_s)
        self.memory_fraction = float(memory_fraction)
        self.record = record
        self.history: list[tuple[int, SplitPlan | None, ClientPart]] = []

    # -- planning ----------------------------------------------------------------------------------
    def max_client_blocks(self, request, instance: Instance) -> int:
        """Largest prefix c ≤ L − 1 whose weights + this request's KV fit in the client's memory."""
        dev = instance.clients[request.client].device
        if dev is None:
            return 0
        per_block = instance.block_bytes + instance.model.kv_bytes_per_block(request.prompt_tokens,
                                                                             request.output_tokens)
        return int(min(instance.num_blocks - 1, (self.memory_fraction * dev.memory_bytes) // per_block))

    def profile(self, request, instance: Instance) -> LayerProfile:
        """The planning profile of ``request`` (module docstring).

        Raises:
            ScenarioError: the request's client has no device (path ``clients.<c>.device``)."""
        dev = instance.clients[request.client].device
        if dev is None:
            raise ScenarioError(f"clients.{request.client}.device", "this client has no device to run blocks on")
        lm = layer_model_from_spec(instance.model)
        lc = lm.layer_costs(request.prompt_tokens, request.output_tokens)
        g = lc.decode_steps
        L = lc.num_layers
        c_max = self.max_client_blocks(request, instance)
        flops = lc.flops
        client = np.where(np.arange(L) < c_max, self._client_block_time_s(dev, lc, instance), np.inf)
        per_block_server = instance.tau_prefill_s(request.prompt_tokens) + g * instance.tau_decode_s
        c = request.client
        reach = np.isfinite(instance.rtt_s[c])
        hop = instance.prefill_comm_s(request.prompt_tokens)[c] + g * instance.token_cost_s[c]
        hop_s = float(np.mean(hop[reach]))
        server = np.full(L, float(np.mean(per_block_server)))
        return LayerProfile(client_time_s=client, server_time_s=server, server_work_flops=flops,
                            up_s=np.full(L + 1, hop_s), down_s=np.zeros(L + 1), layer_names=lc.layer_names,
                            info={"model": lm.name, "device": dev.name, "max_client_blocks": c_max,
                                  "prompt_tokens": lc.prompt_tokens, "output_tokens": lc.output_tokens})

    def sla_for(self, profile: LayerProfile, instance: Instance) -> float:
        if self.sla_s is not None:
            return self.sla_s
        factor = self.sla_factor
        spec = instance.scenario.split
        if factor is None and spec is not None and spec.sla_rule == "server_only_factor":
            factor = spec.sla_factor
        factor = DEFAULT_SLA_FACTOR if factor is None else factor
        return factor * profile.latency_s(np.zeros(profile.num_layers, np.int8))

    def client_part(self, request, instance: Instance, blocks: int) -> ClientPart:
        """The :class:`ClientPart` of running the first ``blocks`` blocks on the client's device: the
        prompt pass and the mean decode step, each a roofline over FLOPs and weight reads.

        Raises:
            ScenarioError: ``blocks`` is outside 0 … the client's capacity."""
        blocks = int(blocks)
        if blocks == 0:
            return ClientPart(0)
        cap = self.max_client_blocks(request, instance)
        if not 0 <= blocks <= cap:
            raise ScenarioError("blocks", f"client {request.client} can hold at most {cap} blocks "
                                          f"(memory or the L−1 limit), got {blocks}")
        dev = instance.clients[request.client].device
        lc = layer_model_from_spec(instance.model).layer_costs(request.prompt_tokens, request.output_tokens)
        g = lc.decode_steps
        prefill, decode = self._client_phase_times_s(dev, lc, instance)
        per_token = float(decode[:blocks].sum()) / g if g > 0 else 0.0
        return ClientPart(blocks=blocks, prefill_s=float(prefill[:blocks].sum()), per_token_s=per_token)

    @staticmethod
    def _client_phase_times_s(dev, lc, instance: Instance) -> tuple[np.ndarray, np.ndarray]:
        """Per block on the client's device: prompt pass and all g decode steps, each a roofline
        max(FLOPs / FLOP/s, bytes / memory bandwidth) — the prompt pass reads the block's weights once,
        every decode step reads them again (``DeviceSpec.compute_time_s``)."""
        w = float(instance.block_bytes)
        g = lc.decode_steps
        prefill = np.asarray(dev.compute_time_s(lc.prefill_flops, w), dtype=float)
        per_step = np.asarray(dev.compute_time_s(lc.decode_flops / g, w), dtype=float) if g > 0 else 0.0 * prefill
        return prefill, per_step * g

    def _client_block_time_s(self, dev, lc, instance: Instance) -> np.ndarray:
        prefill, decode = self._client_phase_times_s(dev, lc, instance)
        return prefill + decode

    def plan(self, request, instance: Instance) -> ClientPart:
        """Decide how many leading blocks the client of ``request`` runs (0 without a device)."""
        if instance.clients[request.client].device is None or self.max_client_blocks(request, instance) == 0:
            part = ClientPart(0)
            if self.record:
                self.history.append((request.id, None, part))
            return part
        profile = self.profile(request, instance)
        plan = self.policy.split(request, profile, self.sla_for(profile, instance))
        x = np.asarray(plan.x)
        blocks = int(np.argmin(x)) if np.any(x == 0) else int(x.size)
        part = self.client_part(request, instance, blocks)
        if self.record:
            self.history.append((request.id, plan, part))
        return part


__all__ = ["DEFAULT_SLA_FACTOR", "GeoSplitter"]
