"""The per-client arc-flow model of the offline BPRR problem over block positions.

Positions p = 0 … L are "the next block needed" (0-based, docs/contracts.md §1).  A *hop* (j, b, e) sends
a session to server j at position b; j processes blocks b … e−1 and the session moves on at
position e, which must be j's end a_j + m_j (docs/model.md §3: a server
always runs up to its own last block, m_ij = a_j + m_j − a_i − m_i).  A chain is a path 0 → L in this
position graph, and a hop (j, b, e) is Lemma-1 feasible iff j hosts an interval [s, e) with s ≤ b.

Variables
* ``y[j,s,e]`` ∈ {0,1}: server j hosts blocks s … e−1 (at most one interval per server; none = the
  server hosts nothing).  Only intervals with s_m·(e−s) + s_c ≤ M_j and e − s ≤ cap_j exist
  (an interval that cannot hold one session for one block is never useful).
* ``x[c,j,b,e]`` ∈ ℤ≥0: how many of client c's requests take hop (j, b, e).  Requests of one client
  are interchangeable, so one integer flow per client replaces one binary flow per request.

Constraints
* flow conservation per client and position: out(0) = n_c, in(L) = n_c, out(p) = in(p) otherwise;
* Σ_{s,e} y[j,s,e] ≤ 1;
* memory as slot capacity, for every server j, end e and position b (cumulative over b):
  Σ_c Σ_{b' ≤ b} (e − b')·x[c,j,b',e] ≤ Σ_{s ≤ b} K_j(e − s)·y[j,s,e] with
  K_j(ℓ) = ⌊(M_j − s_m·ℓ)/s_c⌋ the KV slots left next to ℓ hosted blocks (docs/model.md §2.3).  For the
  chosen interval [s*, e*) the rows with b < s* force every hop entering before s* to zero and the
  row b = e* − 1 is exactly the memory constraint s_m·m_j + s_c·Σ_r k_rj ≤ M_j;
* linking x[c,j,b,e] ≤ U·Σ_{s ≤ b} y[j,s,e], U = min(n_c, ⌊K_j(e−b)/(e−b)⌋);
* the stand-alone bound per client: cost of client c's flow ≥ n_c · standalone(c)
  (:mod:`.milp_bounds`), valid because every request's chain is feasible for it alone;
* symmetry: among servers with identical memory, cap, τ and t_{·j}, ends are non-decreasing in the
  server index (a server hosting nothing has end 0) — any solution can be permuted into this form.

The cumulative sums Σ_{s ≤ b}, Σ_{b' ≤ b} are carried by continuous auxiliary columns defined by
one recurrence row each, which keeps every row short (O(C) non-zeros instead of O(L·C)).

Objective: Σ_c Σ x[c,j,b,e]·(t_cj + τ_j·(e − b)), the per-token decode cost
(:func:`distllm_env.perf.decode_hop_cost_s`, arXiv 2512.21884 eq. (13a)); ×l_max outside.

Building checks ``deadline`` (a :class:`.milp_common.Deadline`) as it goes and raises
:class:`.milp_common.BuildTimeout` once it has passed.

**Pruning by an incumbent** (``hop_limit_per_token_s``).  Given a feasible solution of cost UB and
the per-client stand-alone optima LB_c (each request's chain costs at least LB_c), any solution that
beats UB gives each request of client c at most LB_c + (UB − Σ_r LB_{c_r}) per token.  A chain
through hop (j, b, e) costs at least forward_c[b] + t_cj + τ_j·(e − b) + backward_c[e] (the
cheapest stand-alone costs of covering the b blocks before and the L − e blocks after,
:func:`.milp_bounds.chain_potentials`), so hops
above that limit cannot appear in any better solution and are left out — an exact reduction, like
reduced-cost fixing with the stand-alone DP as the dual.  Intervals are then restricted to starts
at positions where some kept hop enters (a server may always shrink its interval to start at the
first block its sessions need, which only frees memory), and intervals with no kept hop are dropped
(hosting nothing is always allowed and costs nothing).  The incumbent itself always survives.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from distllm_env.chains import Hop, Route
from distllm_env.offline import OfflineProblem
from distllm_env.perf import decode_hop_cost_s
from distllm_env.placement import Placement

from .milp_bounds import chain_potentials, max_hop_blocks
from .milp_common import Deadline
from .milp_highs import INF, MIPModel


def host_max_blocks(problem: OfflineProblem) -> np.ndarray:
    """Longest useful interval per server: min(cap_j, L, ⌊(M_j − s_c)/s_m⌋) (room for one session on
    one block), 0 if the server cannot hold even that."""
    spare = problem.memory_bytes - int(problem.kv_block_bytes)
    fit = np.where(spare >= 0, spare // int(problem.block_bytes), 0)
    return np.maximum(np.minimum(np.minimum(problem.max_blocks, problem.num_blocks), fit), 0).astype(np.int64)


def identical_server_groups(problem: OfflineProblem) -> list[list[int]]:
    """Servers that are interchangeable: same memory, cap, τ and t_cj for every client."""
    groups: dict = defaultdict(list)
    for j in range(problem.num_servers):
        key = (int(problem.memory_bytes[j]), int(problem.max_blocks[j]), float(problem.tau_s[j]),
               tuple(float(v) for v in problem.token_cost_s[:, j]))
        groups[key].append(j)
    return [g for g in groups.values() if len(g) > 1]


class ArcFlowModel:
    """Builds the model (raises :class:`.milp_common.BuildTimeout` when ``deadline`` passes);
    :meth:`decode` turns a solution vector into (placement, routes) and :meth:`encode` turns a
    placement and routes into a start vector."""

    formulation = "arcflow"

    def __init__(self, problem: OfflineProblem, standalone_per_token_s=None, symmetry: bool = True,
                 hop_limit_per_token_s=None, deadline: Deadline | None = None):
        deadline = deadline or Deadline()
        P = self.problem = problem
        L, N, C = P.num_blocks, P.num_servers, P.num_clients
        s_m, s_c = int(P.block_bytes), int(P.kv_block_bytes)
        M = P.memory_bytes
        n_req = P.requests
        self.host_len = host_max_blocks(P)
        self.hop_len = hop_len = max_hop_blocks(P)
        m = self.model = MIPModel()
        self.slots = slots = lambda j, ell: int((int(M[j]) - s_m * ell) // s_c)  # noqa: E731
        active = [c for c in range(C) if n_req[c] > 0]

        # -- hop columns x[c,j,b,e], pruned by the incumbent's limit -------------------------------
        x_keys, x_ub, x_cost = [], [], []
        self.pruned_hops = 0
        for c in active:
            limit = INF if hop_limit_per_token_s is None else float(hop_limit_per_token_s[c])
            if np.isfinite(limit):
                fwd, bwd = chain_potentials(P, c)
            for j in range(N):
                deadline.check("arcflow hop columns")
                t = P.token_cost_s[c, j]
                if not np.isfinite(t):
                    continue
                for e in range(1, L + 1):
                    for ell in range(1, min(int(hop_len[j]), e) + 1):
                        u = min(int(n_req[c]), slots(j, ell) // ell)
                        if u <= 0:
                            continue
                        cost = decode_hop_cost_s(t, P.tau_s[j], ell)
                        if np.isfinite(limit) and fwd[e - ell] + cost + bwd[e] > limit:
                            self.pruned_hops += 1
                            continue
                        x_keys.append((c, j, e - ell, e))
                        x_ub.append(u)
                        x_cost.append(cost)
        x_cols = m.add_vars(len(x_keys), 0, np.array(x_ub, dtype=float), np.array(x_cost), integer=True)
        self.x = dict(zip(x_keys, (int(i) for i in x_cols)))
        self.x_cost = dict(zip(x_keys, x_cost))

        # -- placement columns y[j,s,e]: starts where a kept hop enters ----------------------------
        entries: dict[tuple[int, int], set] = defaultdict(set)
        x_by_jeb = defaultdict(list)
        for (c, j, b, e), col in self.x.items():
            entries[j, e].add(b)
            x_by_jeb[j, e, b].append((c, col))
        self.entries = {k: sorted(v) for k, v in entries.items()}
        y_keys = [(j, b, e) for (j, e), bs in sorted(self.entries.items()) for b in bs]
        y_cols = m.add_vars(len(y_keys), 0, 1, 0.0, integer=True)
        self.y = dict(zip(y_keys, (int(i) for i in y_cols)))

        # -- one interval per server ---------------------------------------------------------------
        per_server = defaultdict(list)
        for (j, s, e), col in self.y.items():
            per_server[j].append(col)
        rows, cols = [], []
        for k, j in enumerate(sorted(per_server)):
            rows += [k] * len(per_server[j])
            cols += per_server[j]
        if per_server:
            m.add_rows(rows, cols, 1.0, np.full(len(per_server), -INF), 1.0)

        # -- flow conservation ---------------------------------------------------------------------
        rows, cols, vals = [], [], []
        row_of = {(c, p): k for k, (c, p) in enumerate((c, p) for c in active for p in range(L + 1))}
        for (c, j, b, e), col in self.x.items():
            rows += [row_of[c, b], row_of[c, e]]
            cols += [col, col]
            vals += [1.0, -1.0]
        rhs = np.array([float(n_req[c]) if p == 0 else (-float(n_req[c]) if p == L else 0.0)
                        for c in active for p in range(L + 1)])
        m.add_rows(rows, cols, vals, rhs, rhs)

        # -- capacity and linking, cumulative over the entry positions of each (server, end) -------
        # Y[k] = Σ_{s ≤ b_k} y[s];  KY[k] = Σ_{s ≤ b_k} K(e−s)·y[s];  S[k] = Σ_c Σ_{b' ≤ b_k} (e−b')·x[c,b']
        self.cum: dict[tuple[int, int], tuple[list, np.ndarray, np.ndarray, np.ndarray]] = {}
        R, Cc, V, lo_rows, hi_rows = [], [], [], [], []
        link_R, link_C, link_V = [], [], []
        r = lr = 0
        for (j, e), bs in sorted(self.entries.items()):
            deadline.check("arcflow capacity rows")
            nb = len(bs)
            Y = m.add_vars(nb, 0, 1, 0.0)
            KY = m.add_vars(nb, 0, INF, 0.0)
            S = m.add_vars(nb, 0, INF, 0.0)
            self.cum[j, e] = (bs, Y, KY, S)
            for k, b in enumerate(bs):
                ycol = self.y[j, b, e]
                R += [r, r]; Cc += [int(Y[k]), ycol]; V += [1.0, -1.0]
                if k:
                    R.append(r); Cc.append(int(Y[k - 1])); V.append(-1.0)
                lo_rows.append(0.0); hi_rows.append(0.0); r += 1
                R += [r, r]; Cc += [int(KY[k]), ycol]; V += [1.0, -float(slots(j, e - b))]
                if k:
                    R.append(r); Cc.append(int(KY[k - 1])); V.append(-1.0)
                lo_rows.append(0.0); hi_rows.append(0.0); r += 1
                R.append(r); Cc.append(int(S[k])); V.append(1.0)
                if k:
                    R.append(r); Cc.append(int(S[k - 1])); V.append(-1.0)
                for c, col in x_by_jeb.get((j, e, b), ()):
                    R.append(r); Cc.append(col); V.append(-float(e - b))
                lo_rows.append(0.0); hi_rows.append(0.0); r += 1
                R += [r, r]; Cc += [int(S[k]), int(KY[k])]; V += [1.0, -1.0]
                lo_rows.append(-INF); hi_rows.append(0.0); r += 1
                for c, col in x_by_jeb.get((j, e, b), ()):
                    u = min(int(n_req[c]), slots(j, e - b) // (e - b))
                    link_R += [lr, lr]; link_C += [col, int(Y[k])]; link_V += [1.0, -float(u)]
                    lr += 1
        if r:
            m.add_rows(R, Cc, V, np.array(lo_rows), np.array(hi_rows))
        if lr:
            m.add_rows(link_R, link_C, link_V, np.full(lr, -INF), 0.0)

        # -- stand-alone lower bound per client ----------------------------------------------------
        if standalone_per_token_s is not None:
            by_client = defaultdict(list)
            for key, col in self.x.items():
                by_client[key[0]].append((col, self.x_cost[key]))
            for c in active:
                lb = float(n_req[c]) * float(standalone_per_token_s[c])
                if np.isfinite(lb) and lb > 0 and by_client[c]:
                    items = by_client[c]
                    # relaxed by a hair so floating-point round-off never cuts off the optimum
                    m.add_row([i for i, _ in items], [v for _, v in items], lb * (1 - 1e-9), INF)

        # -- symmetry breaking among identical servers ---------------------------------------------
        self.symmetry_groups = identical_server_groups(P) if symmetry else []
        for group in self.symmetry_groups:
            deadline.check("arcflow symmetry rows")
            for j1, j2 in zip(group, group[1:]):
                cols, vals = [], []
                for (j, s, e), col in self.y.items():
                    if j == j1:
                        cols.append(col); vals.append(float(e))
                    elif j == j2:
                        cols.append(col); vals.append(-float(e))
                if cols:
                    m.add_row(cols, vals, -INF, 0.0)

    # -- solutions ---------------------------------------------------------------------------------
    def decode(self, x: np.ndarray) -> tuple[Placement, list[tuple[int, Route]]]:
        """The placement and routes of solution vector ``x``.

        Raises:
            RuntimeError: the solution breaks flow conservation (a solver or model bug)."""
        P = self.problem
        starts, counts = [0] * P.num_servers, [0] * P.num_servers
        for (j, s, e), col in self.y.items():
            if x[col] > 0.5:
                starts[j], counts[j] = s, e - s
        placement = Placement(tuple(starts), tuple(counts), P.num_blocks)
        routes: list[tuple[int, Route]] = []
        for c in range(P.num_clients):
            out = defaultdict(list)   # position -> [hop key, remaining flow]
            for key, col in self.x.items():
                if key[0] == c:
                    f = int(round(x[col]))
                    if f > 0:
                        out[key[2]].append([key, f])
            for _ in range(int(P.requests[c])):
                hops, b = [], 0
                while b < P.num_blocks:
                    cand = [item for item in out.get(b, ()) if item[1] > 0]
                    if not cand:
                        raise RuntimeError(f"arc-flow solution breaks flow conservation at block {b} (client {c})")
                    item = cand[0]
                    item[1] -= 1
                    _, j, _, e = item[0]
                    hops.append(Hop(j, b, e - 1))
                    b = e
                routes.append((c, Route(tuple(hops))))
        return placement, routes

    def canonical(self, placement: Placement, routes) -> tuple[Placement, list[tuple[int, Route]]]:
        """The same solution with identical servers relabelled so that their ends are non-decreasing
        (the symmetry-breaking rows' form)."""
        ends = [s + c if c > 0 else 0 for s, c in placement.pairs()]
        new_of = list(range(placement.num_servers))
        for group in self.symmetry_groups:
            old_sorted = sorted(group, key=lambda j: (ends[j], j))
            for new, old in zip(group, old_sorted):
                new_of[old] = new
        pairs = [None] * placement.num_servers
        for old, pair in enumerate(placement.pairs()):
            pairs[new_of[old]] = pair
        new_placement = Placement.from_pairs(pairs, placement.num_blocks)
        new_routes = [(c, Route(tuple(Hop(new_of[h.server], h.first_block, h.last_block) for h in r.hops)))
                      for c, r in routes]
        return new_placement, new_routes

    def encode(self, placement: Placement, routes) -> np.ndarray | None:
        """Start vector of a solution, or None if it cannot be expressed (a hop without a column).
        Identical servers are relabelled (:meth:`canonical`), servers no route uses host nothing and
        a used server's interval starts at the first block its sessions need — the same routes and
        objective with no more memory."""
        first_entry: dict[int, int] = {}
        for c, route in routes:
            for h in route.hops:
                first_entry[h.server] = min(first_entry.get(h.server, h.first_block), h.first_block)
        pairs = [(first_entry[j], placement.starts[j] + placement.counts[j] - first_entry[j]) if j in first_entry
                 else (0, 0) for j in range(placement.num_servers)]
        placement, routes = self.canonical(Placement.from_pairs(pairs, placement.num_blocks), routes)
        v = np.zeros(self.model.num_vars)
        for c, route in routes:
            for h in route.hops:
                col = self.x.get((c, h.server, h.first_block, h.last_block + 1))
                if col is None:
                    return None
                v[col] += 1.0
        for j, (b, cnt) in enumerate(placement.pairs()):
            if cnt > 0:
                col = self.y.get((j, b, b + cnt))
                if col is None:
                    return None
                v[col] = 1.0
        P = self.problem
        for (j, e), (bs, Y, KY, S) in self.cum.items():
            ycum = kcum = scum = 0.0
            for k, b in enumerate(bs):
                yv = v[self.y[j, b, e]]
                ycum += yv
                kcum += yv * self.slots(j, e - b)
                for c in range(P.num_clients):
                    col = self.x.get((c, j, b, e))
                    if col is not None:
                        scum += (e - b) * v[col]
                v[Y[k]], v[KY[k]], v[S[k]] = ycum, kcum, scum
        return v


__all__ = ["ArcFlowModel", "host_max_blocks", "identical_server_groups"]
