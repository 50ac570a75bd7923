"""The link-based BPRR MILP of arXiv 2512.21884, as published (``literal``) and strengthened by the
reformulation-linearisation technique (``rlt``).

Reconstructed from the authors' ``BPRR_MILP_general.m`` (docs/model.md
§9.1).  This is the only place where the paper's **1-based** block indices appear: a_j ∈ [1, L] is
server j's first block and m_j its number of blocks (docs/contracts.md §1 keeps 0-based blocks everywhere
else; the conversion happens in :meth:`LinkModel.decode` / :meth:`LinkModel.encode`).  The client is
a dummy source with a = 0, m = 1 and a dummy sink with a = L + 1, m = 1.

Per request r and edge (i, j) of the logical routing graph (source → server, server → server,
server → sink): a binary flow f^r_ij and the McCormick auxiliaries α = f·a_j, β = f·a_i, γ = f·m_j,
δ = f·m_i (constants at the dummy endpoints: β = 0, δ = f out of the source; α = (L+1)·f, γ = f into
the sink).  m_ij·f = α + γ − β − δ.

* (13a) min Σ_r Σ_{(i,j), j server} t_{c_r j}·f + τ_j·(α + γ − β − δ)   (× l_max outside the model):
  the decode cost :func:`distllm_env.perf.decode_hop_cost_s` is linear in m_ij, so f gets its value
  at m = 0 and each unit of m_ij·f its value at t = 0, m = 1
* (13b) s_m·m_j + s_c·Σ_r Σ_i (α + γ − β − δ) ≤ M_j
* (13c) flow conservation: one unit from the request's source to its sink
* (13d) a_j + m_j ≤ L + 1
* (13e) α ≤ a_i + m_i;   (13f) β + δ ≤ a_j + m_j − 1
* (9)–(12) McCormick envelopes with the published constants (α ≤ (L+1)f, the others ≤ L·f, …).

Deviations from the published model, for the project's problem statement: m_j ∈ [0, min(cap_j, L)]
instead of [1, L] — a server may host nothing (with m_j = 0, (13e) and (13f) cannot both hold for an
edge into j, so no flow enters it) and every GPU's block cap (MIG = 4) is respected; only the
request's own client's source and sink are included (other clients' endpoints carry no flow).

``rlt`` adds, per request and edge, the products of the feasibility rows with f (the published
model multiplies only one side), which make m_ij·f ≥ f and rule out the negative "processed block"
values that leave the published LP bound far below zero:

* f·(13e):  α ≤ β + δ;   f·(13f):  β + δ ≤ α + γ − f;
* f·(13d):  α + γ ≤ (L+1)·f and β + δ ≤ (L+1)·f;  f·(a ≥ 1): α ≥ f, β ≥ f;
* flow conservation × (a_v + m_v) at every server v: Σ_out (β + δ) = Σ_in (α + γ), whose sum over
  the servers telescopes to Σ_hops m_ij = L for every request;
* McCormick envelopes with the tight bounds a ∈ [1, L], m ∈ [0, min(cap_j, L)].
"""

from __future__ import annotations

import numpy as np

from distllm_env.chains import Route, route_from_chain
from distllm_env.offline import OfflineProblem
from distllm_env.perf import decode_hop_cost_s
from distllm_env.placement import Placement

from .milp_common import Deadline
from .milp_highs import INF, MIPModel

SRC, SNK = -1, -2


class _Rows:
    """Accumulates rows as lists of (col, coef) terms plus constant bounds."""

    def __init__(self):
        self.R, self.C, self.V, self.lo, self.hi = [], [], [], [], []

    def add(self, terms, lo=-INF, hi=INF):
        r = len(self.lo)
        for col, coef in terms:
            self.R.append(r)
            self.C.append(col)
            self.V.append(coef)
        self.lo.append(lo)
        self.hi.append(hi)

    def flush(self, model: MIPModel):
        if self.lo:
            model.add_rows(self.R, self.C, self.V, np.array(self.lo), np.array(self.hi))


class LinkModel:
    """Builds the ``literal`` or ``rlt`` model (raises :class:`.milp_common.BuildTimeout` once
    ``deadline`` passes, ValueError for another formulation)."""

    def __init__(self, problem: OfflineProblem, formulation: str = "literal", deadline: Deadline | None = None):
        """The link (big-M) MILP of ``problem`` in ``formulation`` ``'literal'`` or ``'rlt'``.

        Raises:
            ValueError: any other ``formulation``."""
        deadline = deadline or Deadline()
        if formulation not in ("literal", "rlt"):
            raise ValueError(f"formulation must be 'literal' or 'rlt' for the link model, got {formulation!r}")
        self.formulation = formulation
        rlt = formulation == "rlt"
        P = self.problem = problem
        L, N = P.num_blocks, P.num_servers
        s_m, s_c = float(P.block_bytes), float(P.kv_block_bytes)
        m = self.model = MIPModel()
        cap = np.minimum(P.max_blocks, L).astype(int)
        self.a = m.add_vars(N, 1, L, 0.0, integer=True)
        self.m = m.add_vars(N, 0, cap.astype(float), 0.0, integer=True)
        # requests in client order
        self.req_client = [c for c in range(P.num_clients) for _ in range(int(P.requests[c]))]
        self.edges: list[list[tuple[int, int, dict]]] = []   # per request: (tail, head, cols)
        rows = _Rows()
        # McCormick upper bounds: published constants (literal) or tight bounds (rlt)
        ua_head, ua_tail = (L + 1, L) if not rlt else (L, L)
        la = 0 if not rlt else 1

        def um(j):
            return L if not rlt else int(cap[j])

        def mccormick(aux, var, f, lo_v, up_v):
            # aux = f·var with var ∈ [lo_v, up_v], f ∈ {0,1}
            rows.add([(aux, 1.0), (f, -up_v)], hi=0.0)                         # aux ≤ U f
            rows.add([(aux, 1.0), (var, -1.0), (f, -lo_v)], hi=-lo_v)           # aux ≤ v − l(1−f)
            rows.add([(aux, 1.0), (var, -1.0), (f, -up_v)], lo=-up_v)           # aux ≥ v − U(1−f)
            if lo_v > 0:
                rows.add([(aux, 1.0), (f, -lo_v)], lo=0.0)                       # aux ≥ l f

        mem_terms = [[(int(self.m[j]), s_m / s_c)] for j in range(N)]
        for r, c in enumerate(self.req_client):
            deadline.check(f"{formulation} model, request {r}")
            t = P.token_cost_s[c]
            servers = [j for j in range(N) if np.isfinite(t[j])]
            pairs = [(SRC, j) for j in servers] + [(i, j) for i in servers for j in servers if i != j] + \
                    [(j, SNK) for j in servers]
            f = m.add_vars(len(pairs), 0, 1, 0.0, integer=True)
            elist = []
            for k, (i, j) in enumerate(pairs):
                cols = {"f": int(f[k])}
                if j >= 0:
                    cols["alpha"] = int(m.add_vars(1, 0, ua_head if not rlt else L)[0])
                    cols["gamma"] = int(m.add_vars(1, 0, um(j))[0])
                if i >= 0:
                    cols["beta"] = int(m.add_vars(1, 0, ua_tail)[0])
                    cols["delta"] = int(m.add_vars(1, 0, um(i))[0])
                elist.append((i, j, cols))
            self.edges.append(elist)
            for k, (i, j, cols) in enumerate(elist):
                if k % 256 == 255:
                    deadline.check(f"{formulation} model, request {r}")
                fc = cols["f"]
                if j >= 0:
                    mccormick(cols["alpha"], int(self.a[j]), fc, la, ua_head)
                    mccormick(cols["gamma"], int(self.m[j]), fc, 0, um(j))
                if i >= 0:
                    mccormick(cols["beta"], int(self.a[i]), fc, la, ua_tail)
                    mccormick(cols["delta"], int(self.m[i]), fc, 0, um(i))
                hs, hl, ts, tl = self._terms(i, j, cols)
                # (13e) head start ≤ a_i + m_i (source: ≤ 1)
                if i >= 0:
                    rows.add(hs + [(int(self.a[i]), -1.0), (int(self.m[i]), -1.0)], hi=0.0)
                else:
                    rows.add(hs, hi=1.0)
                # (13f) tail start + tail len ≤ a_j + m_j − 1 (sink: ≤ L + 1)
                if j >= 0:
                    rows.add(ts + tl + [(int(self.a[j]), -1.0), (int(self.m[j]), -1.0)], hi=-1.0)
                else:
                    rows.add(ts + tl, hi=float(L + 1))
                if rlt:
                    rows.add(hs + [(col, -v) for col, v in ts + tl], hi=0.0)                 # f·(13e)
                    rows.add(ts + tl + [(col, -v) for col, v in hs + hl] + [(fc, 1.0)], hi=0.0)  # f·(13f)
                    if j >= 0:
                        rows.add(hs + hl + [(fc, -(L + 1.0))], hi=0.0)
                    if i >= 0:
                        rows.add(ts + tl + [(fc, -(L + 1.0))], hi=0.0)
                if j >= 0:
                    mem_terms[j] += [(col, v) for col, v in hs + hl] + [(col, -v) for col, v in ts + tl]
            # (13c) flow conservation
            out_of = {SRC: [], SNK: [], **{j: [] for j in servers}}
            into = {SRC: [], SNK: [], **{j: [] for j in servers}}
            for i, j, cols in elist:
                out_of[i].append(cols)
                into[j].append(cols)
            rows.add([(cols["f"], 1.0) for cols in out_of[SRC]], 1.0, 1.0)
            rows.add([(cols["f"], 1.0) for cols in into[SNK]], 1.0, 1.0)
            for v in servers:
                rows.add([(cols["f"], 1.0) for cols in out_of[v]] + [(cols["f"], -1.0) for cols in into[v]], 0.0, 0.0)
                if rlt:   # flow conservation × (a_v + m_v)
                    terms = []
                    for cols in out_of[v]:
                        terms += [(cols["beta"], 1.0), (cols["delta"], 1.0)]
                    for cols in into[v]:
                        terms += [(cols["alpha"], -1.0), (cols["gamma"], -1.0)]
                    rows.add(terms, 0.0, 0.0)
        deadline.check(f"{formulation} model, memory rows")
        # (13b) memory, in units of KV slots (÷ s_c) for numerical scale
        for j in range(N):
            rows.add(mem_terms[j], hi=float(P.memory_bytes[j]) / s_c)
        # (13d)
        for j in range(N):
            rows.add([(int(self.a[j]), 1.0), (int(self.m[j]), 1.0)], hi=float(L + 1))
        rows.flush(m)
        # (13a) objective: set the costs on f and the auxiliaries
        cost = np.zeros(m.num_vars)
        for r, c in enumerate(self.req_client):
            for i, j, cols in self.edges[r]:
                if j < 0:
                    continue
                fixed = decode_hop_cost_s(P.token_cost_s[c, j], P.tau_s[j], 0)     # = t_cj
                per_block = decode_hop_cost_s(0.0, P.tau_s[j], 1)                  # = τ_j
                cost[cols["f"]] += fixed
                hs, hl, ts, tl = self._terms(i, j, cols)
                for col, v in hs + hl:
                    cost[col] += per_block * v
                for col, v in ts + tl:
                    cost[col] -= per_block * v
        m.set_cost(cost)

    def _terms(self, i, j, cols):
        """(head start, head length, tail start, tail length) as lists of (col, coef)."""
        L = self.problem.num_blocks
        f = cols["f"]
        hs = [(cols["alpha"], 1.0)] if j >= 0 else [(f, float(L + 1))]
        hl = [(cols["gamma"], 1.0)] if j >= 0 else [(f, 1.0)]
        ts = [(cols["beta"], 1.0)] if i >= 0 else []
        tl = [(cols["delta"], 1.0)] if i >= 0 else [(f, 1.0)]
        return hs, hl, ts, tl

    # -- solutions ---------------------------------------------------------------------------------
    def decode(self, x: np.ndarray) -> tuple[Placement, list[tuple[int, Route]]]:
        P = self.problem
        a = np.round(x[self.a]).astype(int)
        mm = np.round(x[self.m]).astype(int)
        placement = Placement(tuple(int(a[j]) - 1 if mm[j] > 0 else 0 for j in range(P.num_servers)),
                              tuple(int(v) for v in mm), P.num_blocks)
        routes = []
        for r, c in enumerate(self.req_client):
            succ = {i: j for i, j, cols in self.edges[r] if x[cols["f"]] > 0.5}
            chain, node = [], succ.get(SRC)
            while node is not None and node != SNK and len(chain) <= P.num_servers:
                chain.append(node)
                node = succ.get(node)
            routes.append((c, route_from_chain(placement, chain)))
        return placement, routes

    def encode(self, placement: Placement, routes) -> np.ndarray | None:
        v = np.zeros(self.model.num_vars)
        a = np.array([s + 1 if cnt > 0 else 1 for s, cnt in placement.pairs()], dtype=float)
        mm = placement.count_array.astype(float)
        v[self.a], v[self.m] = a, mm
        # requests of a client are interchangeable: hand the client's routes out in order
        pending: dict[int, list[Route]] = {}
        for c, route in routes:
            pending.setdefault(c, []).append(route)
        for r, c in enumerate(self.req_client):
            if not pending.get(c):
                return None
            chain = pending[c].pop(0).servers
            used = set(zip((SRC,) + chain, chain + (SNK,)))
            for i, j, cols in self.edges[r]:
                f = 1.0 if (i, j) in used else 0.0
                v[cols["f"]] = f
                if j >= 0:
                    v[cols["alpha"]], v[cols["gamma"]] = f * a[j], f * mm[j]
                if i >= 0:
                    v[cols["beta"]], v[cols["delta"]] = f * a[i], f * mm[i]
        return v


__all__ = ["LinkModel"]
