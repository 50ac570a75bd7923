"""Swarm dynamics under churn beyond join/leave/fail: block reload time, PETALS' periodic
rebalancing and arriving servers (docs/model.md §12.1; schema: docs/scenarios.md "Churn").

:class:`SwarmDynamics` holds the state and is driven by :class:`~distllm_env.live.churn.ChurnSimulation`
through its heap kinds ``READY`` (a server has loaded its blocks), ``REBALANCE`` (a balance check of
every live server) and ``SERVER_ARRIVAL`` (a spare server arrives).

* **Reload.** A server that (re)joins, arrives or moves loads the weights of its span first:
  ``load_s = m_j · s_m / (load_bandwidth_gbps · 1e9)`` (m_j blocks of s_m bytes each; the bandwidth is
  an assumption, ``churn.load_bandwidth_gbps``).  Meanwhile it is ``LOADING``: routers do not see it
  and no step runs on it.  A fail while loading takes it down; a leave makes it leave.
* **Rebalancing** (``churn.rebalance``; PETALS ``server/server.py`` balance loop, every
  ``mean_balance_check_period`` = 60 s): every ``period_s`` the live servers, in a seeded random
  order, each run PETALS' ``should_choose_other_blocks`` with ``balance_quality`` on the live swarm
  (:func:`distllm_env.baselines.petals.online_should_move`; docs/model.md §8.4).  A server that
  should move asks the placement policy's ``place_joining`` (PETALS' ``choose_best_blocks`` without
  one) for its new start; if that differs from its current start it moves: its sessions fail over
  as on a graceful ``leave`` (a step already on it finishes first), and it hosts the new span after
  its load time.
* **Arrivals** (``churn.arrivals``): the scenario's ``spare_servers`` start down; arrivals come as a
  Poisson process of rate ``rate_per_s``; each picks a GPU type from ``gpu_mix`` (weights over the
  types of the spares not yet arrived; none given: uniform over those types) and the lowest-indexed
  spare of that type joins (online re-placement and load as any join); at most ``max_servers``
  arrive.  An arrived spare then follows the drawn up/down process unless it is a stable server.

Randomness: the ``churn`` seed stream's sub-streams N (rebalancing order and checks) and N + 1
(arrivals), N = number of servers (sub-streams 0 … N−1 are the servers' up/down periods).
"""

from __future__ import annotations

import numpy as np

from ..baselines.petals import online_best_start, online_should_move
from ..errors import DistLLMError, ScenarioError
from ..placement import Placement
from ..rng import seed_streams
from ..scenario.churn_section import ChurnSpec

UP, LEAVING, DOWN, LOADING = 0, 1, 2, 3
#: heap kinds (after ``churn``'s SERVER = 7 and RECOVER = 8)
READY, REBALANCE, SERVER_ARRIVAL = 9, 10, 11


def load_time_s(num_blocks: int, block_bytes: int, load_bandwidth_gbps: float) -> float:
    """Seconds to load ``num_blocks`` blocks of ``block_bytes`` bytes each at ``load_bandwidth_gbps``
    GB/s (1 GB = 1e9 bytes): m · s_m / (bandwidth · 1e9) (docs/model.md §12.1)."""
    return num_blocks * block_bytes / (load_bandwidth_gbps * 1e9)


class SwarmDynamics:
    """Reload, rebalancing and arrival state of one churn run (see the module docstring).

    Raises :class:`~distllm_env.errors.ScenarioError` (``churn.arrivals.spare_servers``,
    ``churn.arrivals.gpu_mix.<gpu>``) for a spare the instance does not have or a GPU no spare has."""

    def __init__(self, sim, churn: ChurnSpec):
        self.sim, self.churn = sim, churn
        inst = sim.instance
        n = inst.num_servers
        self.load_epoch = [0] * n
        #: every load ``(server, start_s, ready_s)``
        self.load_log: list[tuple[int, float, float]] = []
        self.reload_s_total = 0.0
        self.num_rebalance_moves = 0
        #: arrived spares, in arrival order
        self.arrived: list[int] = []
        subs = seed_streams(inst.seed)["churn"].spawn(n + 2)
        self.rebalance_rng = np.random.Generator(np.random.PCG64(subs[n]))
        self.arrival_rng = np.random.Generator(np.random.PCG64(subs[n + 1]))
        self.spares: tuple[int, ...] = ()
        arr = churn.arrivals
        if arr is not None:
            bad = [j for j in arr.spare_servers if j >= n]
            if bad:
                raise ScenarioError("churn.arrivals.spare_servers", f"server {bad[0]} does not exist; the instance "
                                                                    f"has servers 0..{n - 1}")
            self.spares = arr.spare_servers
            gpus = {inst.servers[j].gpu.name for j in self.spares}
            for name, _ in arr.gpu_mix:
                if name not in gpus:
                    raise ScenarioError(f"churn.arrivals.gpu_mix.{name}",
                                        f"no spare server has this GPU; spare GPUs: {sorted(gpus)}")
            for j in self.spares:
                sim.state[j] = DOWN
            sim._dirty = True
            self._next_arrival(0.0)
        if churn.rebalance is not None:
            sim._push(churn.rebalance.period_s, REBALANCE, 0, 0)

    def _running(self) -> bool:
        return self.sim._ended < len(self.sim.requests)

    # -- reload ----------------------------------------------------------------------------------------
    def begin_load(self, t: float, j: int) -> None:
        """Server ``j`` has its span (``sim._placed``) chosen at ``t``: it is up after its load time."""
        sim = self.sim
        load = load_time_s(sim._placed.counts[j], sim.instance.block_bytes, self.churn.load_bandwidth_gbps)
        if load <= 0.0:
            sim.state[j] = UP
            return
        sim.state[j] = LOADING
        self.load_epoch[j] += 1
        self.reload_s_total += load
        self.load_log.append((j, t, t + load))
        sim._push(t + load, READY, j, self.load_epoch[j])

    def ready(self, t: float, j: int, epoch: int) -> None:
        sim = self.sim
        if sim.state[j] == LOADING and epoch == self.load_epoch[j]:
            sim.state[j] = UP
            sim._dirty = True

    # -- rebalancing -----------------------------------------------------------------------------------
    def tick(self, t: float, resume: bool = False) -> None:
        """One balance check of every live server (seeded random order).  ``resume``: continue the
        check stopped for an external decision (``ChurnSimulation.next_decision``) at the server
        whose move was decided."""
        sim, spec = self.sim, self.churn.rebalance
        rng = self.rebalance_rng
        if not resume:
            if not self._running():
                return
            self._order = [int(j) for j in rng.permutation(sim.instance.num_servers)]
            self._pos, self._moving = 0, None
        while self._pos < len(self._order):
            j = self._order[self._pos]
            if self._moving != j:
                if sim.state[j] != UP or sim._placed.counts[j] == 0:
                    self._pos += 1
                    continue
                if sim._dirty:
                    sim._mask()
                if not online_should_move(j, sim.view, spec.balance_quality, rng):
                    self._pos += 1
                    continue
                self._moving = j
            view = sim.view
            count = sim._placed.counts[j]
            hook = getattr(sim.placer, "place_joining", None)
            if sim.external_placement:         # the env decides (may stop the engine here)
                new = sim._external_start(t, j, count, "rebalance", (t, REBALANCE, 0, 1))
            else:
                new = online_best_start(j, count, view) if hook is None else hook(j, count, view, sim.placer_rng)
            self._pos, self._moving = self._pos + 1, None
            L = sim._placed.num_blocks
            if isinstance(new, bool) or not isinstance(new, (int, np.integer)) or not 0 <= new <= L - count:
                raise DistLLMError(f"{getattr(sim.placer, 'name', 'placement policy')}.place_joining returned "
                                   f"{new!r} for server {j}; expected a start in 0..{L - count}")
            if int(new) != sim._placed.starts[j]:
                self.move(t, j, int(new))
        sim._push(t + spec.period_s, REBALANCE, 0, 0)

    def move(self, t: float, j: int, start: int) -> None:
        """Server ``j`` leaves its span gracefully at ``t`` and hosts blocks ``start`` … after loading."""
        sim = self.sim
        p = sim._placed
        starts = list(p.starts)
        starts[j] = start
        sim._placed = Placement(tuple(starts), p.counts, p.num_blocks)
        sim.block_moves.append((t, j, start))
        self.num_rebalance_moves += 1
        sim.state[j] = LEAVING
        sim._vacate(t, j, "leave")
        sim.server_log.append((t, j, "leave"))
        self.begin_load(t, j)
        sim.server_log.append((t, j, "join"))
        sim._dirty = True
        sim._mask()

    # -- arrivals --------------------------------------------------------------------------------------
    def _remaining(self) -> list[int]:
        arr = self.churn.arrivals
        cap = len(self.spares) if arr.max_servers is None else arr.max_servers
        if len(self.arrived) >= cap:
            return []
        done = set(self.arrived)
        left = [j for j in self.spares if j not in done and self.sim.state[j] == DOWN]
        if arr.gpu_mix:
            mix = {name for name, _ in arr.gpu_mix}
            left = [j for j in left if self.sim.instance.servers[j].gpu.name in mix]
        return left

    def _next_arrival(self, t: float) -> None:
        if self._remaining():
            rate = self.churn.arrivals.rate_per_s
            self.sim._push(t + float(self.arrival_rng.exponential(1.0 / rate)), SERVER_ARRIVAL, 0, 0)

    def arrive(self, t: float) -> None:
        """A spare server arrives at ``t`` (see the module docstring)."""
        sim = self.sim
        left = self._remaining()
        if not left or not self._running():
            return
        names = sorted({sim.instance.servers[j].gpu.name for j in left})
        weights = dict(self.churn.arrivals.gpu_mix)
        w = np.array([weights.get(g, 1.0) for g in names], dtype=float)
        g = names[int(self.arrival_rng.choice(len(names), p=w / w.sum()))]
        j = min(k for k in left if sim.instance.servers[k].gpu.name == g)
        self.arrived.append(j)
        sim._arrival_join(t, j)
        self._next_arrival(t)

    def summary(self) -> dict:
        """Summary keys of the run (docs/contracts.md §6)."""
        return {"num_block_moves": len(self.sim.block_moves), "num_rebalance_moves": self.num_rebalance_moves,
                "reload_s_total": self.reload_s_total, "num_server_arrivals": len(self.arrived)}


__all__ = ["LOADING", "READY", "REBALANCE", "SERVER_ARRIVAL", "SwarmDynamics", "load_time_s"]
