"""The SplitLLM single-server setting of a scenario's ``split:`` section (docs/split.md).

:class:`SplitSetting` turns a scenario (realised for one seed, so that sampled servers, clients and
RTTs exist) into what the split policies, the serving queue and the ClientSplit environment need:

* the server: geo server ``split.server.index``; effective FLOP/s = its GPU's dense bf16 FLOP/s ×
  ``split.server.efficiency`` (or ``split.server.effective_tflops``);
* the clients: the scenario's clients that have a ``device`` (others cannot compute and are left out
  of the split mix), with their weights; each client's link is its device's uplink / downlink (or the
  ``split.network`` overrides) and the RTT between its node and the server's node (or
  ``split.network.rtt_ms``);
* the request mix: ``split.requests`` (layer model, prompt / output length distributions, weight);
* the SLA rule: ``server_only_factor`` (SLA = factor × the request's server-only latency) or
  ``fixed``; the time step δ = SLA / ``budget_steps`` unless ``delta_ms`` is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from ..catalog import DeviceSpec
from ..errors import ScenarioError
from ..instance import Instance, build_instance
from ..scenario import Scenario, SplitSpec, load_scenario
from .models import LayerModel, get_layer_model
from .profile import LayerProfile, NetworkLink, SplitServer, layer_profile


@dataclass(frozen=True)
class SplitClient:
    """A client of the split setting: its index in the scenario, device, link and mix weight."""

    index: int
    device: DeviceSpec
    network: NetworkLink
    weight: float


@dataclass(frozen=True)
class SplitRequest:
    """One request of the split workload."""

    id: int
    client: int            # index into SplitSetting.clients (not the scenario's client index)
    model: str
    prompt_tokens: int
    output_tokens: int
    arrival_s: float = 0.0


class SplitSetting:
    """The split-inference setting of a scenario for one seed (see the module docstring)."""

    def __init__(self, spec: SplitSpec, server: SplitServer, clients: Sequence[SplitClient],
                 models: dict[str, LayerModel], scenario_name: str = "", seed: int = 0):
        """The split setting from its parts (use :meth:`from_instance` / :meth:`from_scenario`).

        Raises:
            ScenarioError: no client, or a request length distribution that can draw a length < 1."""
        if not clients:
            raise ScenarioError("clients", "split inference needs at least one client with a 'device'")
        self.spec = spec
        self.server = server
        self.clients = tuple(clients)
        self.models = dict(models)
        self.scenario_name = scenario_name
        self.seed = seed
        for i, r in enumerate(spec.requests):
            m = self.models[r.model]
            path = f"split.requests.{i}"
            for what, dist in (("prompt_tokens", r.prompt_tokens), ("output_tokens", r.output_tokens)):
                if dist.min < 1:
                    raise ScenarioError(f"{path}.{what}", f"expected lengths ≥ 1, got {dist.min}")
            m.check_lengths(r.prompt_tokens.max, r.output_tokens.max, path)
            m.check_lengths(r.prompt_tokens.min, r.output_tokens.min, path)
        self._profile = lru_cache(maxsize=4096)(self._profile_uncached)

    def __getstate__(self):
        # the per-instance lru_cache cannot be pickled; profiles are a pure function of the setting
        state = self.__dict__.copy()
        state.pop("_profile", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._profile = lru_cache(maxsize=4096)(self._profile_uncached)

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_scenario(cls, scenario: "str | Scenario", seed: int = 0, overrides: Sequence[str] = ()) -> "SplitSetting":
        sc = load_scenario(scenario, overrides)
        return cls.from_instance(build_instance(sc, seed))

    @classmethod
    def from_instance(cls, instance: Instance) -> "SplitSetting":
        """The split setting of a built instance.

        Raises:
            ScenarioError: the scenario has no ``split:`` section, ``split.server.index`` is out of range,
                or a client cannot reach the split server, or as :meth:`__init__`."""
        sc = instance.scenario
        spec = sc.split
        if spec is None:
            raise ScenarioError("split", f"scenario {sc.name!r} has no 'split:' section")
        j = spec.server_index
        if j >= instance.num_servers:
            raise ScenarioError("split.server.index", f"expected a server index in [0, {instance.num_servers - 1}], "
                                                      f"got {j}")
        srv = instance.servers[j]
        flops = spec.server_effective_flops or srv.gpu.dense_bf16_flops * spec.server_efficiency
        server = SplitServer(name=f"s{j}:{srv.gpu.name}", effective_flops=float(flops))
        clients = []
        for c in instance.clients:
            if c.device is None:
                continue
            rtt = spec.rtt_s if spec.rtt_s is not None else float(instance.rtt_s[c.index, j])
            if not np.isfinite(rtt):
                raise ScenarioError(f"clients.{c.index}.node", f"client node {c.node!r} cannot reach server {j}")
            net = NetworkLink(spec.uplink_bits_per_s or c.device.uplink_bits_per_s,
                              spec.downlink_bits_per_s or c.device.downlink_bits_per_s, rtt)
            clients.append(SplitClient(index=c.index, device=c.device, network=net, weight=c.weight))
        models = {r.model: get_layer_model(r.model, sc.catalog, f"split.requests.{i}.model")
                  for i, r in enumerate(spec.requests)}
        return cls(spec, server, clients, models, scenario_name=sc.name, seed=instance.seed)

    # -- workload --------------------------------------------------------------------------------
    def sample_requests(self, rng: np.random.Generator, n: int | None = None) -> list[SplitRequest]:
        """``n`` requests (default ``split.num_requests``): type by mix weight, client by client weight,
        lengths from the type's distributions, all drawn from ``rng``.  ``arrival_s`` is left 0 (the
        serving queue draws its own arrivals).

        Raises:
            ScenarioError: ``n`` < 1."""
        n = self.spec.num_requests if n is None else int(n)
        if n < 1:
            raise ScenarioError("num_requests", f"expected ≥ 1 requests, got {n}")
        types = self.spec.requests
        tw = np.array([t.weight for t in types], dtype=float)
        cw = np.array([c.weight for c in self.clients], dtype=float)
        kind = rng.choice(len(types), size=n, p=tw / tw.sum())
        client = rng.choice(len(self.clients), size=n, p=cw / cw.sum())
        prompt = np.empty(n, dtype=np.int64)
        output = np.empty(n, dtype=np.int64)
        for t, spec in enumerate(types):
            idx = np.flatnonzero(kind == t)
            if idx.size:
                prompt[idx] = spec.prompt_tokens.sample(rng, idx.size)
                output[idx] = spec.output_tokens.sample(rng, idx.size)
        return [SplitRequest(id=i, client=int(client[i]), model=types[kind[i]].model, prompt_tokens=int(prompt[i]),
                             output_tokens=int(output[i])) for i in range(n)]

    # -- per-request quantities ------------------------------------------------------------------
    def profile(self, request: SplitRequest) -> LayerProfile:
        """The request's :class:`LayerProfile` (cached per (model, client, lengths))."""
        return self._profile(request.model, request.client, request.prompt_tokens, request.output_tokens)

    def _profile_uncached(self, model: str, client: int, prompt: int, output: int) -> LayerProfile:
        c = self.clients[client]
        return layer_profile(self.models[model], c.device, self.server, prompt, c.network, output)

    def sla_s(self, request: SplitRequest, profile: LayerProfile | None = None) -> float:
        """The request's SLA: factor × server-only latency, or the fixed value."""
        if self.spec.sla_rule == "fixed":
            return float(self.spec.sla_fixed_s)
        profile = profile or self.profile(request)
        return self.spec.sla_factor * profile.latency_s(np.zeros(profile.num_layers, np.int8))

    def delta_s(self, sla_s: float) -> float:
        """The DP time step for an SLA: ``split.delta_ms`` or SLA / ``split.budget_steps``."""
        return self.spec.delta_s if self.spec.delta_s is not None else sla_s / self.spec.budget_steps

    def policy_options(self) -> dict:
        """Constructor options for the registered split policies (δ and budget steps of the scenario)."""
        return {"budget_steps": self.spec.budget_steps, "delta_s": self.spec.delta_s}

    def describe(self) -> dict:
        return {
            "server": self.server.name, "server_effective_tflops": self.server.effective_flops / 1e12,
            "clients": [{"client": c.index, "device": c.device.name, "rtt_ms": c.network.rtt_s * 1e3,
                         "uplink_mbps": c.network.uplink_bits_per_s / 1e6,
                         "downlink_mbps": c.network.downlink_bits_per_s / 1e6,
                         "effective_tflops": c.device.effective_flops / 1e12, "weight": c.weight}
                        for c in self.clients],
            "requests": [{"model": r.model, "weight": r.weight} for r in self.spec.requests],
            "sla_rule": self.spec.sla_rule,
            "sla": self.spec.sla_factor if self.spec.sla_rule != "fixed" else self.spec.sla_fixed_s,
            "budget_steps": self.spec.budget_steps, "delta_s": self.spec.delta_s,
        }


__all__ = ["SplitClient", "SplitRequest", "SplitSetting"]
