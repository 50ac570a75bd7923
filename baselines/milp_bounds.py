"""The stand-alone lower bound of the offline BPRR problem: each request's best chain over all
placements when it is alone.

For one request of client c, a hop on server j that processes ℓ blocks costs t_cj + τ_j·ℓ per token
(:func:`distllm_env.perf.decode_hop_cost_s`: t^c_ij with m_ij = ℓ, arXiv 2512.21884 eq. (13a)).  The cheapest placement that
allows it is j hosting exactly those ℓ blocks, so the hop is possible iff

* ℓ ≤ cap_j (the GPU's block cap; MIG = 4) and
* s_m·ℓ + s_c·ℓ ≤ M_j (its weights plus one session's KV cache, docs/model.md §2.3).

In any joint solution every request's chain satisfies these per-hop conditions (its servers host at
least the blocks it processes and hold at least its own session), so
``Σ_r standalone(c_r) ≤ joint optimum``, with equality whenever memory and caps never make two
requests' wishes conflict (then every request can take its stand-alone chain at once).

**Each server at most once per chain.**  A real chain visits a server at most once (Lemma 1: all of
j's hops end at j's end a_j + m_j, and ends strictly increase along a chain).  A DP over block
positions alone ("next block needed") cannot see which servers were used and would solve a
relaxation that may revisit a cheap server.  We avoid that relaxation: the cost of a stand-alone
chain depends only on *which* servers it uses and *how many* blocks each processes, not on their
order (server j placed to host exactly its blocks can sit anywhere in the chain).  So the exact
stand-alone optimum is a knapsack-style DP over the servers — g_k(b) = cheapest cost of covering b
blocks with distinct servers among the first k, g_{k+1}(b) = min(g_k(b), min_ℓ g_k(b−ℓ) + t_cj +
τ_j·ℓ) — in O(N·L·max ℓ), and every server is used at most once by construction.

The same table gives the potentials used to prune the arc-flow model: a chain through a hop that
enters at position b and leaves at e costs at least g(b) + hop + g(L − e) (the parts before and
after may share servers in this bound, which only weakens it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distllm_env.offline import OfflineProblem
from distllm_env.perf import decode_hop_cost_s


@dataclass(frozen=True)
class StandaloneChain:
    """One client's stand-alone optimum: per-token cost and its hops ``(server, first, last)``
    (0-based inclusive blocks) in one valid order, the chain a lone request gets with servers
    hosting exactly the blocks they process."""

    client: int
    cost_per_token_s: float
    hops: tuple[tuple[int, int, int], ...]


def max_hop_blocks(problem: OfflineProblem) -> np.ndarray:
    """Longest hop each server can serve for one lone session: min(cap_j, L, ⌊M_j / (s_m + s_c)⌋)."""
    per_block = int(problem.block_bytes) + int(problem.kv_block_bytes)
    fit = problem.memory_bytes // per_block
    return np.minimum(np.minimum(problem.max_blocks, problem.num_blocks), fit).astype(np.int64)


def _cover_table(problem: OfflineProblem, client: int):
    """g[b] = cheapest per-token cost of covering b blocks with distinct servers, and the choice table
    (choice[k, b] = blocks given to server k on the optimal way to g_{k+1}(b), 0 = not used)."""
    L = problem.num_blocks
    hop_len = max_hop_blocks(problem)
    t = problem.token_cost_s[client]
    tau = problem.tau_s
    g = np.full(L + 1, np.inf)
    g[0] = 0.0
    choice = np.zeros((problem.num_servers, L + 1), dtype=np.int64)
    for j in range(problem.num_servers):
        if not np.isfinite(t[j]) or hop_len[j] <= 0:
            continue
        new = g.copy()
        for ell in range(1, int(hop_len[j]) + 1):
            cand = g[:-ell] + decode_hop_cost_s(t[j], tau[j], ell)
            better = cand < new[ell:]
            if better.any():
                new[ell:] = np.where(better, cand, new[ell:])
                choice[j, ell:] = np.where(better, ell, choice[j, ell:])
        g = new
    return g, choice


def standalone_chain(problem: OfflineProblem, client: int) -> StandaloneChain:
    """The cheapest chain one request of ``client`` can get over all placements (see module doc).
    ``cost_per_token_s`` is ``inf`` if the client has no chain at all.

    Raises:
        RuntimeError: only if the DP table is inconsistent (a bug)."""
    L = problem.num_blocks
    g, choice = _cover_table(problem, client)
    if not np.isfinite(g[L]):
        return StandaloneChain(client, np.inf, ())
    # walk the choices back from the last server; each server's pick was made on the table after
    # the servers before it, so a backward walk reconstructs one optimal set of (server, blocks)
    picks, b = [], L
    for j in range(problem.num_servers - 1, -1, -1):
        ell = int(choice[j, b])
        if ell > 0:
            picks.append((j, ell))
            b -= ell
    if b != 0:  # pragma: no cover - the table is consistent by construction
        raise RuntimeError("stand-alone DP reconstruction failed")
    hops, pos = [], 0
    for j, ell in reversed(picks):
        hops.append((j, pos, pos + ell - 1))
        pos += ell
    return StandaloneChain(client, float(g[L]), tuple(hops))


def standalone_bound(problem: OfflineProblem) -> tuple[float, list[StandaloneChain]]:
    """Lower bound on the objective: l_max · Σ_c n_c · standalone(c) (seconds), and the chains."""
    chains = [standalone_chain(problem, c) for c in range(problem.num_clients)]
    total = sum(int(problem.requests[c]) * ch.cost_per_token_s for c, ch in enumerate(chains)
                if problem.requests[c] > 0)
    return float(problem.output_tokens * total), chains


def chain_potentials(problem: OfflineProblem, client: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower bounds on the per-token cost of reaching position b from 0 (``forward[b]`` = g(b)) and of
    finishing from position e (``backward[e]`` = g(L − e)) for a lone request of ``client``; a chain
    through hop (j, b, e) costs at least forward[b] + t_cj + τ_j·(e−b) + backward[e]."""
    g, _ = _cover_table(problem, client)
    return g.copy(), g[::-1].copy()


def unreachable_reason(problem: OfflineProblem, client: int) -> str:
    """Why a client has no chain under any placement.  Because the placement is free, any server
    that can hold one block plus one session can host *any* block; a lone request has no chain iff
    the servers it reaches cannot together cover L blocks, each with room for one session."""
    t = problem.token_cost_s[client]
    reachable = np.flatnonzero(np.isfinite(t))
    need = int(problem.block_bytes) + int(problem.kv_block_bytes)
    if len(reachable) == 0:
        return f"client {client} is connected to no server (every t_cj is infinite)"
    hop_len = max_hop_blocks(problem)[reachable]
    return (f"client {client} has no feasible chain: the {len(reachable)} server(s) it reaches can process at most "
            f"{int(hop_len.sum())} of the {problem.num_blocks} blocks for one session in all (each block needs "
            f"s_m + s_c = {need} bytes, within each GPU's block cap)")


__all__ = ["StandaloneChain", "chain_potentials", "max_hop_blocks", "standalone_bound", "standalone_chain",
           "unreachable_reason"]
