"""PETALS as a baseline: its block count, its weakest-window block selection, optional swarm
rebalancing, and min-latency Dijkstra routing (docs/model.md §8).

* :func:`choose_num_blocks` — PETALS' ``_choose_num_blocks`` (petals ``server/server.py``):
  ``floor((M − 2 GiB·d_model/14336) / (s_m + cache_bytes_per_block))``, capped at L and at the GPU's
  block cap (MIG 1g: 4, the published simulator's cap), with
  ``cache_bytes_per_block = 2·(d_model/kv_group)·T·2`` bytes and T = 4096 attention-cache tokens,
  16384 for GQA/MQA models (kv_group > 1).
* :class:`PetalsPlacement` (``petals``) — servers join one at a time in a seeded random order; each
  takes its span at the weakest window (:func:`best_start`, petals ``server/block_selection.py``
  ``choose_best_blocks``) and adds its announced throughput
  ``min(forward_rps/((1+m)/2), network_rps)`` (:func:`distllm_env.perf.petals_throughput_rps`) to
  those blocks.  Optional rebalancing (``rebalance=True``) replays ``should_choose_other_blocks``
  (balance quality 0.75, ε = 1e-3 hysteresis, "don't open a hole") until no server moves.  Cache
  policy ``fixed_pool(4096)`` (``fixed_pool(16384)`` for GQA models).
* :class:`PetalsRouter` (``petals``) — shortest chain on the core's chain DAG with the published
  simulator's edge weights (``Petals_online.m``; docs/model.md §8 item 5) or, with
  ``variant="petals"``, PETALS' own (``client/routing/sequence_manager.py``, docs/model.md §8.5).

docs/baselines.md lists every decision taken where the sources are silent.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from distllm_env.catalog import GIB, ModelSpec
from distllm_env.chains import ChainDAG, HopCost, Route
from distllm_env.errors import PlacementError
from distllm_env.policy_options import check_bool, check_int, check_number, option_error
from distllm_env.instance import Instance
from distllm_env.perf import petals_throughput_rps
from distllm_env.placement import CachePolicy, Placement, PlacementResult
from distllm_env.scenario.fidelity import scenario_fidelity
from distllm_env.view import ClusterView
from distllm_env.workload import Request

#: PETALS' default attention-cache tokens per block: 4096, or 16384 for GQA/MQA models
#: (petals ``server/server.py``; docs/model.md §8.1).
ATTN_CACHE_TOKENS = 4096
ATTN_CACHE_TOKENS_GQA = 16384
#: PETALS' autograd reserve: 2 GiB for BLOOM (d_model 14336), scaled by d_model (same source).
AUTOGRAD_RESERVE_BYTES_PER_D = 2 * GIB / 14336
#: Per-hop serialisation overhead in PETALS' routing weights, 18 ms (petals
#: ``client/routing/sequence_manager.py``; the published simulator's ``overhead_delay_petals = 18``).
HOP_OVERHEAD_S = 0.018
#: Penalty for a server short of KV cache, 10 s (same sources; ``alloc_delay = 1e4`` ms).
CACHE_PENALTY_S = 10.0
#: PETALS caps a ping-derived one-way delay at 5 s (unreachable → 5 s), docs/model.md §8.5.
MAX_ONE_WAY_DELAY_S = 5.0
#: Hysteresis ε of PETALS' rebalancing (petals ``server/block_selection.py``).
REBALANCE_EPS = 1e-3


# --------------------------------------------------------------------------------------------------
# option checks (shared by the other baseline modules)
# --------------------------------------------------------------------------------------------------

# one vocabulary for every policy: distllm_env.policy_options (aliases kept for the other baselines)
_option_error = option_error
_check_number = check_number
_check_int = check_int
_check_bool = check_bool


# --------------------------------------------------------------------------------------------------
# block count and block selection
# --------------------------------------------------------------------------------------------------

def attn_cache_tokens_for(model: ModelSpec) -> int:
    """PETALS' default ``attn_cache_tokens``: 16384 for GQA/MQA models (kv_group > 1), else 4096."""
    return ATTN_CACHE_TOKENS_GQA if model.kv_group_size > 1 else ATTN_CACHE_TOKENS


def cache_bytes_per_block(model: ModelSpec, attn_cache_tokens: int | None = None) -> int:
    """PETALS' attention-cache bytes per block: 2·(d_model/kv_group)·T·2 (K and V, 2 bytes each),
    i.e. the model's own KV bytes for T tokens (petals ``server/server.py``)."""
    tokens = attn_cache_tokens_for(model) if attn_cache_tokens is None else int(attn_cache_tokens)
    return model.kv_bytes_per_block(tokens, 0)


def choose_num_blocks(memory_bytes: int, model: ModelSpec, gpu_max_blocks: int | None,
                      attn_cache_tokens: int | None = None) -> int:
    """PETALS' ``_choose_num_blocks``:
    ``min(floor((M − 2 GiB·d_model/14336) / (s_m + cache_bytes_per_block)), L, GPU cap)``.

    Source: petals ``server/server.py`` (docs/model.md §8.1); the MIG cap of 4 is the
    published simulator's (``Petals_online.m``).  Returns 0 when not even one block fits (a PETALS
    server would refuse to start; here it simply hosts nothing).

    Raises:
        ValueError: ``memory_bytes`` < 0."""
    if int(memory_bytes) < 0:
        raise ValueError(f"memory_bytes must be ≥ 0, got {memory_bytes}")
    reserve = AUTOGRAD_RESERVE_BYTES_PER_D * model.d_model
    per_block = model.block_bytes + cache_bytes_per_block(model, attn_cache_tokens)
    n = math.floor((int(memory_bytes) - reserve) / per_block)
    n = min(n, model.num_blocks)
    if gpu_max_blocks is not None:
        n = min(n, int(gpu_max_blocks))
    return max(int(n), 0)


def best_start(throughputs: np.ndarray, count: int) -> int:
    """PETALS' ``_choose_best_start``: the start i ∈ [0, L−count] whose window's *sorted* vector of
    per-block throughputs is lexicographically smallest, ties → the lowest start
    (petals ``server/block_selection.py``; docs/model.md §8.3).

    Raises:
        ValueError: ``count`` is not in 1 … L."""
    t = np.asarray(throughputs, dtype=float)
    L = len(t)
    if not 1 <= count <= L:
        raise ValueError(f"count must be in 1..{L}, got {count}")
    windows = np.sort(np.lib.stride_tricks.sliding_window_view(t, count), axis=1)
    # np.lexsort: the last key is the primary one; it is stable, so equal rows keep index order
    order = np.lexsort(windows.T[::-1])
    return int(order[0])


def block_throughputs(starts: Sequence[int], counts: Sequence[int], tputs: Sequence[float], num_blocks: int,
                      exclude: int | None = None) -> np.ndarray:
    """Per-block swarm throughput T[b] = Σ throughput of the servers hosting b (summed in server
    order, as PETALS sums in sorted peer-id order so every peer gets the same floats)."""
    t = np.zeros(num_blocks)
    for j, (s, c, x) in enumerate(zip(starts, counts, tputs)):
        if c > 0 and j != exclude:
            t[s:s + c] += x
    return t


def petals_join(num_blocks: int, counts: Sequence[int], tputs: Sequence[float], order: Sequence[int]) -> list[int]:
    """Servers join in ``order``; each takes :func:`best_start` for its count under the current
    per-block throughputs and adds its throughput there.  Servers with count 0 do not join."""
    starts = [0] * len(counts)
    t = np.zeros(num_blocks)
    for j in order:
        j = int(j)
        c = int(counts[j])
        if c <= 0:
            continue
        s = best_start(t, c)
        starts[j] = s
        t[s:s + c] += tputs[j]
    return starts


def should_choose_other_blocks(j: int, starts: Sequence[int], counts: Sequence[int], tputs: Sequence[float],
                               num_blocks: int, balance_quality: float, rng: np.random.Generator,
                               max_rounds: int = 100) -> bool:
    """PETALS' rebalancing check for server ``j`` (petals ``server/block_selection.py``
    ``should_choose_other_blocks``; docs/model.md §8.4).

    Take j out with weight (1+ε) (hysteresis: its old spot looks slightly worse, so staying is
    preferred), refuse if that would open a hole, find its best start; if it differs, simulate every
    server greedily re-placing itself (random order from ``rng``) until nothing moves, and move only
    if the current bottleneck is below ``balance_quality`` (− ε) of the simulated one."""
    if balance_quality > 1.0:
        return True
    eps = REBALANCE_EPS
    t = block_throughputs(starts, counts, tputs, num_blocks)
    initial = float(t.min())
    s, c, x = int(starts[j]), int(counts[j]), float(tputs[j])
    t[s:s + c] -= x * (1 + eps)
    if initial > eps and t.min() <= 0:
        return False           # leaving would disconnect the swarm (open a hole in the model)
    new = best_start(t, c)
    if new == s:
        return False           # already at its best place
    sim_starts = [int(v) for v in starts]
    t[s:s + c] += x * eps
    sim_starts[j] = new
    t[new:new + c] += x
    active = [k for k in range(len(counts)) if counts[k] > 0]
    for _ in range(max_rounds):
        moved = False
        for k in rng.permutation(active):
            k = int(k)
            sk, ck, xk = sim_starts[k], int(counts[k]), float(tputs[k])
            t[sk:sk + ck] -= xk * (1 + eps)
            nk = best_start(t, ck)
            t[sk:sk + ck] += xk * eps
            if nk != sk:
                sim_starts[k] = nk
                moved = True
            t[nk:nk + ck] += xk
        if not moved:
            break
    new_bottleneck = float(t.min())
    if new_bottleneck < initial or new_bottleneck < eps:
        return False
    return initial / new_bottleneck < balance_quality - eps


def rebalance(starts: list[int], counts: Sequence[int], tputs: Sequence[float], num_blocks: int,
              balance_quality: float, rng: np.random.Generator, max_rounds: int = 100) -> tuple[list[int], int, int]:
    """Let servers re-check in seeded random order (each check as PETALS' balance loop does) until a
    whole round moves nobody.  A server that decides to move leaves and re-chooses its span with
    :func:`best_start` on the swarm without itself (petals ``server/server.py``: it goes OFFLINE and
    re-runs ``choose_best_blocks``; it may come back to the same blocks).

    Returns (starts, number of moves, rounds)."""
    starts = list(starts)
    active = [k for k in range(len(counts)) if counts[k] > 0]
    moves = rounds = 0
    for rounds in range(1, max_rounds + 1):
        moved = False
        for j in rng.permutation(active):
            j = int(j)
            if not should_choose_other_blocks(j, starts, counts, tputs, num_blocks, balance_quality, rng,
                                              max_rounds):
                continue
            t = block_throughputs(starts, counts, tputs, num_blocks, exclude=j)
            new = best_start(t, int(counts[j]))
            if new != starts[j]:
                starts[j] = new
                moves += 1
                moved = True
        if not moved:
            break
    return starts, moves, rounds


def _petals_result(instance: Instance, counts: Sequence[int], starts: Sequence[int], tputs: Sequence[float],
                   cache_policy: CachePolicy, diagnostics: dict, who: str) -> PlacementResult:
    L = instance.num_blocks
    placement = Placement(tuple(int(s) if c > 0 else 0 for s, c in zip(starts, counts)),
                          tuple(int(c) for c in counts), L)
    gaps = placement.uncovered_ranges()
    if gaps:
        text = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in gaps)
        why = ""
        if not any(int(c) > 0 for c in counts):   # PETALS' own rule: such a server refuses to start
            m = instance.model
            need = AUTOGRAD_RESERVE_BYTES_PER_D * m.d_model + m.block_bytes + cache_bytes_per_block(m, cache_policy.tokens_per_block)
            why = (f"; PETALS' block-count rule gives 0 blocks to every server: it needs at least "
                   f"{need / 1e9:.3g} GB per GPU (autograd reserve 2 GiB·d_model/14336 + one block + its "
                   f"attention cache; docs/baselines.md), the largest GPU has {max(instance.memory_bytes) / 1e9:.3g} GB")
        raise PlacementError(f"{who}: the swarm does not cover the model: blocks {text} are hosted by no "
                             f"server (blocks per server {list(map(int, counts))}){why}", gaps)
    t = block_throughputs(placement.starts, placement.counts, tputs, L)
    diagnostics = dict(diagnostics)
    diagnostics.update(counts=[int(c) for c in counts], starts=list(placement.starts),
                       throughput_rps=[float(x) for x in tputs], swarm_bottleneck_rps=float(t.min()))
    return PlacementResult(placement, cache_policy, diagnostics)


def server_throughputs(instance: Instance, counts: Sequence[int]) -> np.ndarray:
    """Each server's announced PETALS throughput for its block count (0 for a server hosting nothing)."""
    fwd = np.array([s.calibration.forward_rps for s in instance.servers])
    net = np.array([s.calibration.network_rps for s in instance.servers])
    c = np.asarray(counts, dtype=float)
    return np.where(c > 0, petals_throughput_rps(fwd, net, np.maximum(c, 1)), 0.0)


def petals_counts(instance: Instance, attn_cache_tokens: int | None = None) -> list[int]:
    """:func:`choose_num_blocks` for every server of ``instance``."""
    return [choose_num_blocks(int(m), instance.model, cap, attn_cache_tokens)
            for m, cap in zip(instance.memory_bytes, instance.max_blocks)]


def online_best_start(server: int, count: int, view) -> int:
    """PETALS ``choose_best_blocks`` for ``server`` joining the live swarm ``view.placement`` (servers
    down host nothing): :func:`best_start` of ``count`` blocks over the per-block throughput of the
    other servers.  Returns the first block."""
    p = view.placement
    tputs = server_throughputs(view.instance, p.counts)
    return best_start(block_throughputs(p.starts, p.counts, tputs, p.num_blocks, exclude=server), count)


def online_should_move(server: int, view, balance_quality: float, rng: np.random.Generator,
                       max_rounds: int = 100) -> bool:
    """PETALS' periodic rebalancing check under churn (petals ``server/server.py`` balance loop,
    ``server/block_selection.py`` ``should_choose_other_blocks``; docs/model.md §8.4, §12.1):
    :func:`should_choose_other_blocks` for ``server`` on the live swarm ``view.placement`` (servers
    down host nothing) with the announced throughputs of :func:`server_throughputs`."""
    p = view.placement
    if p.counts[server] <= 0:
        return False
    tputs = server_throughputs(view.instance, p.counts)
    return should_choose_other_blocks(server, p.starts, p.counts, tputs, p.num_blocks, balance_quality, rng,
                                      max_rounds)


# --------------------------------------------------------------------------------------------------
# placement policy
# --------------------------------------------------------------------------------------------------

class PetalsPlacement:
    """PETALS' swarm placement (see the module docstring).

    Options: ``rebalance`` (default False, as in the published simulator), ``balance_quality``
    (0.75, PETALS' default), ``attn_cache_tokens`` (default 4096, 16384 for GQA), ``max_rounds``
    (safety cap on rebalancing rounds, 100)."""

    name = "petals"
    family = "petals"

    def __init__(self, rebalance: bool = False, balance_quality: float = 0.75,
                 attn_cache_tokens: int | None = None, max_rounds: int = 100):
        self.rebalance = _check_bool(self.name, "rebalance", rebalance)
        self.balance_quality = _check_number(self.name, "balance_quality", balance_quality, minimum=0.0)
        self.attn_cache_tokens = (None if attn_cache_tokens is None
                                  else _check_int(self.name, "attn_cache_tokens", attn_cache_tokens, 1))
        self.max_rounds = _check_int(self.name, "max_rounds", max_rounds, 1)

    def cache_policy(self, instance: Instance) -> CachePolicy:
        tokens = self.attn_cache_tokens or attn_cache_tokens_for(instance.model)
        return CachePolicy("fixed_pool", tokens)

    def place(self, instance: Instance, rng: np.random.Generator) -> PlacementResult:
        order = [int(j) for j in rng.permutation(instance.num_servers)]
        counts = petals_counts(instance, self.attn_cache_tokens)
        return self._place_with(instance, rng, order, counts, self.cache_policy(instance))

    def place_joining(self, server: int, count: int, view, rng: np.random.Generator) -> int:
        """Online rule for a (re)joining server (churn; docs/baselines.md "Online re-placement"):
        PETALS ``choose_best_blocks`` (petals ``server/block_selection.py``) — :func:`best_start` of
        its ``count`` blocks over the per-block throughput of the servers up now (``view.placement``
        shows a down server with no blocks).  Returns the first block."""
        return online_best_start(server, count, view)

    def _place_with(self, instance: Instance, rng: np.random.Generator, order: list[int], counts: list[int],
                    cache_policy: CachePolicy, extra: dict | None = None) -> PlacementResult:
        L = instance.num_blocks
        excluded = np.flatnonzero(~np.isfinite(instance.rtt_s).any(axis=0)).tolist()
        notes = []
        if excluded:             # no client reaches them: they join with nothing (one note says so)
            counts = [0 if j in excluded else c for j, c in enumerate(counts)]
            notes = [f"server(s) {excluded} are unreachable from every client and were excluded from planning "
                     f"(they host nothing)"]
        tputs = server_throughputs(instance, counts)
        starts = petals_join(L, counts, tputs, order)
        moves = rounds = 0
        if self.rebalance:   # may also close a hole the joins left (PETALS' check moves servers into it)
            starts, moves, rounds = rebalance(starts, counts, tputs, L, self.balance_quality, rng, self.max_rounds)
        diag = {"join_order": order, "rebalance": self.rebalance, "rebalance_moves": moves,
                "rebalance_rounds": rounds, "rebalance_moved": moves > 0, "cache_policy": str(cache_policy)}
        if extra:
            diag.update(extra)
        if excluded:
            diag["excluded_servers"] = excluded
            diag["notes"] = list(diag.get("notes", ())) + notes
        return _petals_result(instance, counts, starts, tputs, cache_policy, diag, self.name)


# --------------------------------------------------------------------------------------------------
# routing policy
# --------------------------------------------------------------------------------------------------

class PetalsRouter:
    """Min-latency shortest chain with PETALS-style edge weights.

    ``variant="published"`` (default; the published simulator's ``Petals_online.m``, docs/model.md §8
    item 5): the edge into server j that processes m_ij blocks costs
    ``RTT(i,j)/2 + 18 ms + τ_j·m_ij`` (+ 10 s if j lacks free KV memory for this request's m_ij
    blocks right now), with RTT(i,j) the server↔server RTT and, on the first hop, the client↔server
    RTT; leaving the last server j for the client costs RTT(c,j)/2.

    ``variant="published-exact"`` (the published code to the letter, docs/fidelity.md "Fidelity
    modes", reading 1): the same weights, but the 10 s penalty applies only when
    ``⌊pool_j / (m_j·s_c)⌋ − active_sessions_j == 0`` — a session count compared with ``==``, so a server
    holding more sessions than its pool's nominal count (possible, since a session reserves only its
    m_ij blocks) is not penalised; pool_j is the placement's KV capacity of j, s_c the KV bytes of one
    session per block at the scenario's maximum lengths.

    ``variant=None`` (the default) takes ``published-exact`` when the scenario's
    ``fidelity.petals_penalty`` is ``session-count`` (``fidelity: authors-code``), else ``published``.

    ``variant="petals"`` (PETALS' own ``make_sequence(mode="min_latency")``, docs/model.md §8.5): per
    block 1/inference_rps instead of τ_j, one-way delays d(rtt) = min(rtt/2, 5 s), and the cache
    check is pessimistic — j is penalised if its free KV memory cannot hold this request over its
    *whole* span (m_j blocks), not just the m_ij blocks it would process.
    """

    name = "petals"
    family = "petals"
    VARIANTS = ("published", "published-exact", "petals")

    def __init__(self, variant: str | None = None, hop_overhead_s: float = HOP_OVERHEAD_S,
                 cache_penalty_s: float = CACHE_PENALTY_S):
        """``variant``: one of :attr:`VARIANTS`, or None for the scenario's fidelity (see the class).

        Raises:
            ScenarioError: an unknown ``variant`` (path ``policy_defaults.options.<name>.variant``)."""
        if variant is not None and variant not in self.VARIANTS:
            raise _option_error(self.name, "variant", f"one of {list(self.VARIANTS)}", variant)
        self.variant = variant
        self.hop_overhead_s = _check_number(self.name, "hop_overhead_s", hop_overhead_s, minimum=0.0)
        self.cache_penalty_s = _check_number(self.name, "cache_penalty_s", cache_penalty_s, minimum=0.0)
        self._view = None
        self._placement = None
        self._static: dict = {}

    def _static_terms(self, view: ClusterView, dag: ChainDAG, client: int):
        """The load-independent part of the weights (cached per simulation, client and DAG)."""
        if view is not self._view or view.placement is not self._placement:   # churn masks servers
            self._view, self._placement, self._static = view, view.placement, {}
        key = (client, dag.client_blocks)
        hit = self._static.get(key)
        if hit is not None:
            return hit
        inst = view.instance
        n = inst.num_servers
        if self._variant(view) != "petals":
            delay = lambda rtt: rtt / 2.0                                        # noqa: E731
            per_block = np.asarray(view.tau_decode_s, dtype=float)
        else:
            delay = lambda rtt: np.minimum(np.nan_to_num(rtt / 2.0, nan=MAX_ONE_WAY_DELAY_S,    # noqa: E731
                                                         posinf=MAX_ONE_WAY_DELAY_S), MAX_ONE_WAY_DELAY_S)
            per_block = np.array([1.0 / s.calibration.inference_rps for s in inst.servers])
        src, dst = dag.edge_src_server, dag.edge_dst_server
        client_rtt = np.asarray(view.rtt_s[client], dtype=float)
        server_rtt = np.asarray(view.server_rtt_s, dtype=float)
        rtt = np.where(src < 0, client_rtt[dst], server_rtt[np.maximum(src, 0), dst])
        edge_extra = delay(rtt)
        fixed = np.full(n, self.hop_overhead_s)
        sink = delay(client_rtt)
        hit = self._static[key] = (fixed, per_block, edge_extra, sink)
        return hit

    def route(self, request: Request, view: ClusterView, rng: np.random.Generator) -> Route:
        """The cheapest chain under PETALS' weights among those whose hops the client reaches (the
        client talks to every hop).  Raises :class:`~distllm_env.errors.NoFeasibleChain` if there is
        none."""
        dag = view.feasible_dag(request.client, request.client_blocks)
        fixed, per_block, edge_extra, sink = self._static_terms(view, dag, request.client)
        kv = view.kv_bytes_per_block(request)
        n = view.num_servers
        dst = dag.edge_dst_server
        variant = self._variant(view)
        if variant == "published-exact":
            lacks = self._pool_exhausted(view)[dst]
            extra = edge_extra + self.cache_penalty_s * lacks
            unreachable = view.unreachable_edge_cost_s(request.client, dag)
            if unreachable is not None:
                extra = extra + unreachable
            return dag.shortest(HopCost(fixed, per_block, extra, sink))[0]
        free = np.fromiter((view.free_bytes(j) for j in range(n)), dtype=np.int64, count=n)
        if variant == "published":
            lacks = free[dst] < dag.edge_blocks * kv
        else:
            counts = view.placement.count_array
            lacks = (free < counts * kv)[dst]
        extra = edge_extra + self.cache_penalty_s * lacks
        unreachable = view.unreachable_edge_cost_s(request.client, dag)   # the client talks to every hop
        if unreachable is not None:
            extra = extra + unreachable
        return dag.shortest(HopCost(fixed, per_block, extra, sink))[0]

    def _variant(self, view: ClusterView) -> str:
        if self.variant is not None:
            return self.variant
        pen = scenario_fidelity(view.instance.scenario).petals_penalty
        return "published-exact" if pen == "session-count" else "published"

    @staticmethod
    def _pool_exhausted(view: ClusterView) -> np.ndarray:
        """Per server: ⌊pool_j / (m_j·s_c)⌋ − active sessions == 0 (the published code's test, a session
        count compared with ``==``; docs/fidelity.md reading 1).  Shape (N,), bool."""
        counts = np.asarray(view.placement.count_array, dtype=np.int64)
        per_session = np.maximum(counts, 1) * int(view.instance.kv_block_bytes)
        nominal = np.asarray(view.capacity_bytes, dtype=np.int64) // per_session
        active = np.array([view.active_sessions(j) for j in range(view.num_servers)], dtype=np.int64)
        return (nominal - active) == 0


__all__ = [
    "ATTN_CACHE_TOKENS", "ATTN_CACHE_TOKENS_GQA", "CACHE_PENALTY_S", "HOP_OVERHEAD_S", "PetalsPlacement",
    "PetalsRouter", "attn_cache_tokens_for", "best_start", "block_throughputs", "cache_bytes_per_block",
    "choose_num_blocks", "online_best_start", "online_should_move", "petals_counts", "petals_join", "rebalance",
    "server_throughputs", "should_choose_other_blocks",
]
