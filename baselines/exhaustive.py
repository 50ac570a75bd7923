"""Exhaustive search of the offline BPRR problem, for tiny instances and tests.

Independent of the MILP code (it shares no model-building code with :mod:`.milp`): it enumerates

1. every placement — each server hosts nothing or one contiguous range (start, count) with
   1 ≤ count ≤ min(cap_j, L) and s_m·count ≤ M_j;
2. every chain of distinct servers under that placement, each checked by the core's Lemma-1 test
   :func:`distllm_env.chains.hop_feasible` (hops: server j processes blocks from the next block needed
   up to its own last block, docs/model.md §3);
3. every assignment of each client's interchangeable requests to chains (multisets of chains per
   client), keeping s_m·m_j + s_c·Σ_r k_rj ≤ M_j on every server (arXiv 2512.21884 eq. (13b)),

and returns the cheapest l_max·Σ_r Σ_hops (t_{c_r j} + τ_j·m_ij) (the hop cost from
:func:`distllm_env.perf.decode_hop_cost_s`, arXiv 2512.21884 eq. (13a)).

With ``prune=True`` (default) a placement is skipped when even its memory-free optimum
Σ_c n_c·(cheapest chain of c) cannot beat the incumbent, and the assignment search stops a branch
whose cost so far plus the cheapest completion cannot; both bounds are admissible, so the result is
the same as full enumeration (``prune=False``), only faster.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from distllm_env.chains import Hop, Route, hop_feasible
from distllm_env.errors import PlacementError, ScenarioError
from distllm_env.offline import OfflineProblem
from distllm_env.perf import decode_hop_cost_s
from distllm_env.placement import Placement


@dataclass
class ExhaustiveSolution:
    placement: Placement
    routes: list[tuple[int, Route]]
    objective_s: float
    placements_examined: int


def _server_options(problem: OfflineProblem, j: int) -> list[tuple[int, int]]:
    L = problem.num_blocks
    opts = [(0, 0)]
    for cnt in range(1, min(int(problem.max_blocks[j]), L) + 1):
        if cnt * int(problem.block_bytes) > int(problem.memory_bytes[j]):
            break
        opts += [(s, cnt) for s in range(0, L - cnt + 1)]
    return opts


def _chains(starts, counts, L: int) -> list[tuple[tuple[int, int, int], ...]]:
    """Every feasible chain as a tuple of hops (server, first_block, last_block)."""
    hosting = [j for j in range(len(counts)) if counts[j] > 0]
    out = []

    def walk(prev_end: int, used: tuple, hops: tuple):
        if prev_end == L:
            out.append(hops)
            return
        for j in hosting:
            if j in used:
                continue
            s, e = starts[j], starts[j] + counts[j]
            if hop_feasible(prev_end, s, e):
                walk(e, used + (j,), hops + ((j, prev_end, e - 1),))

    walk(0, (), ())
    return out


def solve_exhaustive(problem: OfflineProblem, prune: bool = True, max_placements: int = 2_000_000
                     ) -> ExhaustiveSolution:
    """The exact optimum by enumeration (see the module docstring).  Raises :class:`PlacementError`
    if no placement and routing is feasible, ScenarioError (path ``max_placements``) if the
    instance has more than ``max_placements`` placements."""
    N, L = problem.num_servers, problem.num_blocks
    s_m, s_c = int(problem.block_bytes), int(problem.kv_block_bytes)
    M = [int(v) for v in problem.memory_bytes]
    t = problem.token_cost_s
    tau = problem.tau_s
    options = [_server_options(problem, j) for j in range(N)]
    total = math.prod(len(o) for o in options)
    if total > max_placements:
        raise ScenarioError("max_placements", f"expected an instance with at most {max_placements} placements "
                                              f"(exhaustive search is for tiny instances), got {total}")
    clients = [c for c in range(problem.num_clients) if problem.requests[c] > 0]
    best = (math.inf, None, None)
    examined = 0
    for combo in itertools.product(*options):
        starts = [p[0] for p in combo]
        counts = [p[1] for p in combo]
        chains = _chains(starts, counts, L)
        if not chains:
            continue
        examined += 1
        # per client: chain costs (per token), sorted
        per_client = []
        lower = 0.0
        for c in clients:
            costs = [sum(decode_hop_cost_s(t[c, j], tau[j], last - first + 1) for j, first, last in ch)
                     for ch in chains]
            order = sorted(range(len(chains)), key=lambda k: costs[k])
            per_client.append((c, [chains[k] for k in order], [costs[k] for k in order]))
            lower += problem.requests[c] * costs[order[0]]
        if not math.isfinite(lower) or (prune and lower >= best[0] - 1e-12):
            continue
        free = [M[j] - s_m * counts[j] for j in range(N)]
        if any(f < 0 for f in free):
            continue
        # suffix of the memory-free lower bound, per client position
        rest_lb = [0.0] * (len(per_client) + 1)
        for k in range(len(per_client) - 1, -1, -1):
            c, _, costs = per_client[k]
            rest_lb[k] = rest_lb[k + 1] + problem.requests[c] * costs[0]
        chosen: list[list[int]] = [[] for _ in per_client]

        def assign(k: int, remaining: int, min_idx: int, cost_so_far: float):
            nonlocal best
            if k == len(per_client):
                if cost_so_far < best[0] - 1e-12:
                    routes = []
                    for (c, chs, _), picks in zip(per_client, chosen):
                        for i in picks:
                            routes.append((c, Route(tuple(Hop(j, f, l) for j, f, l in chs[i]))))
                    best = (cost_so_far, Placement(tuple(s if n else 0 for s, n in zip(starts, counts)),
                                                   tuple(counts), L), routes)
                return
            c, chs, costs = per_client[k]
            if remaining == 0:
                assign(k + 1, int(problem.requests[per_client[k + 1][0]]) if k + 1 < len(per_client) else 0,
                       0, cost_so_far)
                return
            for i in range(min_idx, len(chs)):
                # chains are sorted by cost: every later pick costs at least costs[i]
                if prune and cost_so_far + remaining * costs[i] + rest_lb[k + 1] >= best[0] - 1e-12:
                    break
                need = [(j, s_c * (last - first + 1)) for j, first, last in chs[i]]
                if all(free[j] >= b for j, b in need):
                    for j, b in need:
                        free[j] -= b
                    chosen[k].append(i)
                    assign(k, remaining - 1, i, cost_so_far + costs[i])
                    chosen[k].pop()
                    for j, b in need:
                        free[j] += b

        assign(0, int(problem.requests[per_client[0][0]]), 0, 0.0)
    if best[1] is None:
        raise PlacementError(f"no placement and routing is feasible for {problem.total_requests} request(s) "
                             f"(exhaustive search over {total} placements)")
    return ExhaustiveSolution(best[1], best[2], problem.output_tokens * best[0], examined)


def solve_exhaustive_routing(problem: OfflineProblem, placement: Placement) -> tuple[list[tuple[int, Route]], float]:
    """The best routing of the problem's requests under a fixed placement, by enumerating every
    multiset of chains per client (for testing the routing-only ILP (19)); the KV memory of server j
    is M_j − s_m·m_j.  Returns (routes, objective_s); raises PlacementError if no routing fits."""
    return _solve_fixed(problem, placement)


def _solve_fixed(problem: OfflineProblem, placement: Placement):
    L = problem.num_blocks
    chains = _chains(list(placement.starts), list(placement.counts), L)
    s_m, s_c = int(problem.block_bytes), int(problem.kv_block_bytes)
    free0 = [int(problem.memory_bytes[j]) - s_m * placement.counts[j] for j in range(problem.num_servers)]
    best = [math.inf, None]
    clients = [c for c in range(problem.num_clients) if problem.requests[c] > 0]
    picks_per_client = []
    for c in clients:
        picks_per_client.append(list(itertools.combinations_with_replacement(range(len(chains)), int(problem.requests[c]))))
    for combo in itertools.product(*picks_per_client):
        free = list(free0)
        cost = 0.0
        routes = []
        for c, picks in zip(clients, combo):
            for i in picks:
                for j, f, l in chains[i]:
                    free[j] -= s_c * (l - f + 1)
                    cost += decode_hop_cost_s(problem.token_cost_s[c, j], problem.tau_s[j], l - f + 1)
                routes.append((c, Route(tuple(Hop(j, f, l) for j, f, l in chains[i]))))
        if min(free) >= 0 and cost < best[0]:
            best = [cost, routes]
    if best[1] is None:
        raise PlacementError("no routing of the requests fits the placement's KV memory")
    return best[1], problem.output_tokens * best[0]


__all__ = ["ExhaustiveSolution", "solve_exhaustive", "solve_exhaustive_routing"]
