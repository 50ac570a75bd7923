"""Per-request layer profiles, split plans and their latency (arXiv 2410.10759; docs/model.md §10.2).

A :class:`LayerProfile` holds, for one request, per layer l = 0 … L−1: the client time t^c_l, the
server time t^s_l and the server work w_l (FLOPs), and per boundary b = 0 … L (boundary b lies before
layer b; 0 is the raw input, L the final output): the upload time u_b (client → server) and the
download time v_b (server → client).

A placement is a vector x ∈ {0,1}^L, **1 = client**, 0 = server, with the input at the client
(x_{−1} = 1) and the output delivered to it (x_L = 1).  Its end-to-end latency (docs/model.md §10.2 [R]):

    T(x) = Σ_l [x_l·t^c_l + (1 − x_l)·t^s_l]
         + Σ_{b=0..L} [x_{b−1}(1 − x_b)·u_b + (1 − x_{b−1})·x_b·v_b]

and its server work W(x) = Σ_l (1 − x_l)·w_l.  ``u_L`` and ``v_0`` never occur (the output never
goes up, the input never comes down).

**Rounded time** (the DP's units, docs/model.md §10.3): with step δ, the transition into layer l at
location b from location p costs ``ceil((time(l, b) + comm(l, p→b)) / δ)`` units and delivering the
output from the server ``ceil(v_L / δ)``; a placement fits the budget iff its units sum to at most
J = ⌊SLA/δ⌋.  Since every term is rounded up, fitting in J units implies T(x) ≤ J·δ ≤ SLA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..catalog import DeviceSpec
from ..errors import ScenarioError
from . import cost
from .models import LayerModel

SERVER, CLIENT = 0, 1
#: relative tolerance when comparing a latency with an SLA (float noise only)
SLA_RTOL = 1e-9


@dataclass(frozen=True)
class NetworkLink:
    """The client ↔ server link: uplink and downlink bandwidth (bit/s) and round-trip time (s)."""

    uplink_bits_per_s: float
    downlink_bits_per_s: float
    rtt_s: float

    def __post_init__(self):
        for name in ("uplink_bits_per_s", "downlink_bits_per_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ScenarioError(name, f"expected a finite number > 0, got {value!r}")
        if not (isinstance(self.rtt_s, (int, float)) and self.rtt_s >= 0 and math.isfinite(self.rtt_s)):
            raise ScenarioError("rtt_s", f"expected a finite number ≥ 0, got {self.rtt_s!r}")

    @classmethod
    def from_device(cls, device: DeviceSpec, rtt_s: float) -> "NetworkLink":
        return cls(device.uplink_bits_per_s, device.downlink_bits_per_s, float(rtt_s))


@dataclass(frozen=True)
class SplitServer:
    """The SplitLLM server: a name and its effective FLOP/s."""

    name: str
    effective_flops: float

    def __post_init__(self):
        if not (self.effective_flops > 0 and math.isfinite(self.effective_flops)):
            raise ScenarioError("effective_flops", f"expected a finite number > 0, got {self.effective_flops!r}")


def _flops_of(x: Any, field_name: str) -> float:
    value = getattr(x, "effective_flops", x)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ScenarioError(field_name, f"expected FLOP/s or an object with effective_flops, got {x!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ScenarioError(field_name, f"expected effective FLOP/s > 0, got {value!r}")
    return value


def _vec(values, n: int, name: str, allow_inf: bool = False) -> np.ndarray:
    a = np.array(values, dtype=float).reshape(-1)
    if a.shape != (n,):
        raise ScenarioError(name, f"expected {n} values, got shape {np.shape(values)}")
    if np.any(np.isnan(a)) or np.any(a < 0) or (not allow_inf and not np.all(np.isfinite(a))):
        raise ScenarioError(name, f"expected finite values ≥ 0{' (or inf)' if allow_inf else ''}, got {a}")
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class LayerProfile:
    """Per-layer costs of one request (see the module docstring for the notation).

    ``client_time_s`` may hold ``inf`` for a layer the client cannot run (e.g. out of memory)."""

    client_time_s: np.ndarray
    server_time_s: np.ndarray
    server_work_flops: np.ndarray
    up_s: np.ndarray
    down_s: np.ndarray
    layer_names: tuple[str, ...] = ()
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        L = np.asarray(self.server_time_s).size
        if L < 1:
            raise ScenarioError("server_time_s", "a profile needs at least one layer")
        object.__setattr__(self, "client_time_s", _vec(self.client_time_s, L, "client_time_s", allow_inf=True))
        object.__setattr__(self, "server_time_s", _vec(self.server_time_s, L, "server_time_s"))
        object.__setattr__(self, "server_work_flops", _vec(self.server_work_flops, L, "server_work_flops"))
        object.__setattr__(self, "up_s", _vec(self.up_s, L + 1, "up_s"))
        object.__setattr__(self, "down_s", _vec(self.down_s, L + 1, "down_s"))
        names = tuple(self.layer_names) or tuple(f"layer{i}" for i in range(L))
        if len(names) != L:
            raise ScenarioError("layer_names", f"expected {L} names, got {len(names)}")
        object.__setattr__(self, "layer_names", names)

    @property
    def num_layers(self) -> int:
        return int(self.server_time_s.size)

    @property
    def total_work_flops(self) -> float:
        """Server work of the server-only placement, Σ_l w_l."""
        return float(self.server_work_flops.sum())

    # -- latency of placements -------------------------------------------------------------------------
    def latency_s(self, x) -> float:
        """T(x) of one placement (1 = client), in seconds."""
        return float(self.latencies_s(np.asarray(x)[None, :])[0])

    def latencies_s(self, X) -> np.ndarray:
        """T(x) for every row of ``X`` (shape (m, L), entries 0/1)."""
        X = _check_x(X, self.num_layers)
        on_c = X == CLIENT
        comp = np.where(on_c, self.client_time_s, self.server_time_s).sum(axis=1)
        ext = np.concatenate([np.ones((X.shape[0], 1), bool), on_c, np.ones((X.shape[0], 1), bool)], axis=1)
        prev, nxt = ext[:, :-1], ext[:, 1:]
        up = np.where(prev & ~nxt, self.up_s, 0.0).sum(axis=1)
        down = np.where(~prev & nxt, self.down_s, 0.0).sum(axis=1)
        return comp + up + down

    def server_work(self, X) -> np.ndarray:
        """W(x) for every row of ``X`` (or a scalar for one placement)."""
        X = np.asarray(X)
        one = X.ndim == 1
        X = _check_x(X[None, :] if one else X, self.num_layers)
        w = ((X == SERVER) * self.server_work_flops).sum(axis=1)
        return float(w[0]) if one else w

    def server_time(self, x) -> float:
        x = _check_x(np.asarray(x)[None, :], self.num_layers)[0]
        return float(np.where(x == SERVER, self.server_time_s, 0.0).sum())

    def client_time(self, x) -> float:
        x = _check_x(np.asarray(x)[None, :], self.num_layers)[0]
        return float(np.where(x == CLIENT, self.client_time_s, 0.0).sum())

    # -- rounded units ------------------------------------------------------------------------------
    def step_units(self, delta_s: float, budget_units: int) -> tuple[np.ndarray, np.ndarray]:
        """``(step[l, p, b], final[b])`` in units of δ, capped at J + 1 (= never fits).

        ``step[l, p, b] = ceil((time(l, b) + comm(l, p→b)) / δ)`` with comm = u_l for p = client,
        b = server, v_l for p = server, b = client, else 0; ``final[server] = ceil(v_L / δ)``,
        ``final[client] = 0``.

        Raises:
            ScenarioError: ``delta_s`` is not a finite number > 0."""
        if not (delta_s > 0 and math.isfinite(delta_s)):
            raise ScenarioError("delta_s", f"expected a finite time step > 0, got {delta_s!r}")
        L, cap = self.num_layers, budget_units + 1
        t = np.empty((L, 2, 2))
        t[:, :, SERVER] = self.server_time_s[:, None]
        t[:, :, CLIENT] = self.client_time_s[:, None]
        t[:, CLIENT, SERVER] += self.up_s[:L]
        t[:, SERVER, CLIENT] += self.down_s[:L]
        with np.errstate(over="ignore", invalid="ignore"):
            units = np.ceil(t / delta_s)
            final = np.array([math.ceil(self.down_s[L] / delta_s), 0.0])
        units = np.minimum(units, cap).astype(np.int64)
        final = np.minimum(final, cap).astype(np.int64)
        return units, final

    def units(self, X, delta_s: float, budget_units: int) -> np.ndarray:
        """Rounded time (units of δ) of every row of ``X``, from :meth:`step_units`."""
        X = _check_x(X, self.num_layers).astype(np.int64)
        step, final = self.step_units(delta_s, budget_units)
        prev = np.concatenate([np.full((X.shape[0], 1), CLIENT, np.int64), X[:, :-1]], axis=1)
        layer = np.arange(self.num_layers)
        return step[layer, prev, X].sum(axis=1) + final[X[:, -1]]


def _check_x(X, L: int) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != L:
        raise ScenarioError("x", f"expected placements of {L} layers, got shape {X.shape}")
    if X.size and not np.all((X == 0) | (X == 1)):
        raise ScenarioError("x", "placement entries must be 0 (server) or 1 (client)")
    return X


def layer_profile(model: LayerModel, device, server, prompt_tokens: int, network: NetworkLink,
                  output_tokens: int = 1, client_layers: int | None = None) -> LayerProfile:
    """The profile of one request (``prompt_tokens`` in, ``output_tokens`` out) of ``model`` from a
    client ``device`` (a :class:`DeviceSpec` or effective FLOP/s) to ``server`` (a :class:`SplitServer`
    or effective FLOP/s) over ``network``.

    * t^c_l = FLOPs_l / client FLOP/s, t^s_l = FLOPs_l / server FLOP/s, w_l = FLOPs_l, where FLOPs_l
      counts the prompt pass and every decode step (:meth:`LayerModel.layer_costs`);
    * u_b = transfer of boundary b's messages over the uplink: (prompt-pass bytes + g·step bytes)·8/B_up
      + (1 + g)·RTT/2, and v_b likewise over the downlink (each decode step crosses every boundary
      of the placement once; :func:`distllm_env.split.cost.transfer_time_s`).

    ``client_layers`` (optional) restricts the client to the first that many layers (the others get
    t^c = inf), e.g. for a client-memory limit.

    Raises:
        ScenarioError: ``network`` is not a :class:`NetworkLink`."""
    c_flops = _flops_of(device, "device")
    s_flops = _flops_of(server, "server")
    if not isinstance(network, NetworkLink):
        raise ScenarioError("network", f"expected a NetworkLink, got {type(network).__name__}")
    lc = model.layer_costs(prompt_tokens, output_tokens)
    flops = lc.flops
    g = lc.decode_steps
    messages = 1 + g
    up_bytes = lc.boundary_prefill_bytes + g * lc.boundary_step_bytes
    up = cost.transfer_time_s(up_bytes, messages, network.uplink_bits_per_s, network.rtt_s)
    down = cost.transfer_time_s(up_bytes, messages, network.downlink_bits_per_s, network.rtt_s)
    client_time = flops / c_flops
    if client_layers is not None:
        client_time = np.where(np.arange(flops.size) < int(client_layers), client_time, np.inf)
    info = {"model": model.name, "family": model.family, "prompt_tokens": lc.prompt_tokens,
            "output_tokens": lc.output_tokens, "client_flops": c_flops, "server_flops": s_flops,
            "device": getattr(device, "name", None), "server": getattr(server, "name", None),
            "rtt_s": network.rtt_s}
    return LayerProfile(client_time_s=client_time, server_time_s=flops / s_flops, server_work_flops=flops,
                        up_s=up, down_s=down, layer_names=lc.layer_names, info=info)


@dataclass(frozen=True, eq=False)
class SplitPlan:
    """A split decision for one request.

    ``x[l] = 1`` runs layer l on the client.  ``latency_s`` is T(x) (continuous times);
    ``feasible`` says whether T(x) ≤ SLA.  When a policy finds no placement within the SLA it returns
    the server-only placement with ``fallback = "server-only"`` and a ``reason``.  ``rounded_units``
    is the placement's time in units of ``delta_s`` (DP and rounded baselines only)."""

    policy: str
    x: np.ndarray
    server_work_flops: float
    server_time_s: float
    client_time_s: float
    latency_s: float
    sla_s: float
    feasible: bool
    fallback: str | None = None
    reason: str = ""
    delta_s: float | None = None
    rounded_units: int | None = None

    @property
    def client_layers(self) -> int:
        return int(np.sum(self.x))

    @property
    def switches(self) -> int:
        """Number of location changes along input → layers → output."""
        ext = np.concatenate([[CLIENT], self.x, [CLIENT]])
        return int(np.count_nonzero(np.diff(ext)))

    def describe(self) -> str:
        loc = "".join("C" if v else "S" for v in self.x)
        tail = f", fallback {self.fallback}: {self.reason}" if self.fallback else ""
        return (f"{self.policy}: {loc}  work {self.server_work_flops:.4g} FLOPs, latency {self.latency_s:.4g} s "
                f"(SLA {self.sla_s:.4g} s){tail}")


def make_plan(profile: LayerProfile, x, sla_s: float, policy: str, *, fallback: str | None = None,
              reason: str = "", delta_s: float | None = None, rounded_units: int | None = None) -> SplitPlan:
    """Evaluate placement ``x`` on ``profile`` into a :class:`SplitPlan`."""
    x = np.asarray(x, dtype=np.int8).copy()
    x.setflags(write=False)
    latency = profile.latency_s(x)
    return SplitPlan(policy=policy, x=x, server_work_flops=profile.server_work(x),
                     server_time_s=profile.server_time(x), client_time_s=profile.client_time(x),
                     latency_s=latency, sla_s=float(sla_s), feasible=meets_sla(latency, sla_s), fallback=fallback,
                     reason=reason, delta_s=delta_s, rounded_units=rounded_units)


def meets_sla(latency_s: float, sla_s: float) -> bool:
    """latency ≤ SLA up to float noise (relative 1e-9)."""
    return bool(latency_s <= sla_s * (1 + SLA_RTOL))


def server_only_plan(profile: LayerProfile, sla_s: float, policy: str, reason: str = "") -> SplitPlan:
    """The all-server placement; flagged as the fallback when ``reason`` is given."""
    return make_plan(profile, np.zeros(profile.num_layers, np.int8), sla_s, policy,
                     fallback="server-only" if reason else None, reason=reason)


def check_sla(sla_s: float) -> float:
    """``sla_s`` as a float (seconds).

    Raises:
        ScenarioError: (path ``sla_s``) not a number, or not finite and > 0."""
    try:
        sla = float(sla_s)
    except (TypeError, ValueError):
        raise ScenarioError("sla_s", f"expected a number of seconds > 0, got {sla_s!r}") from None
    if not (sla > 0 and math.isfinite(sla)):
        raise ScenarioError("sla_s", f"expected a finite number of seconds > 0, got {sla_s!r}")
    return sla


__all__ = ["CLIENT", "SERVER", "LayerProfile", "NetworkLink", "SplitPlan", "SplitServer", "check_sla",
           "layer_profile", "make_plan", "meets_sla", "server_only_plan"]
