"""Learning benchmark (issue 6, item 3): do the learned policies beat the baselines?

    python benchmarks/learning.py                      # every part, ≤ 20 min of MaskablePPO training each
    python benchmarks/learning.py --parts routing --minutes 5 --seeds 10
    python benchmarks/learning.py --reuse --seeds 40 --workers 2     # evaluation seeds in 2 processes

Parts (each but ``placement-zoo`` trains MaskablePPO with the shipped agents/maskable_ppo.yml, stops after ``--minutes`` of
wall-clock training or ``--timesteps`` steps, and evaluates on held-out seeds 10 000 … with all
allocation delays 0, through ``distllm_env.agents.evaluate`` — i.e. ``compare()`` against every
baseline of the decision):

* ``routing`` — the issue's setting: RequestRouting on ``paper-gtsce`` with λ = 2 req/s while the
  placement is CG-BP planned for λ = 0.5 (``policy_defaults.options.cg-bp.arrival_rate_per_s=0.5``).
  Also prints a **lower bound** on any router's mean per-token time: per request, the initial delay
  plus the least static (zero-wait) service time over every feasible chain, Σ / Σ output tokens. If
  PETALS' router sits at that bound, no router can beat it by a margin.
* ``contended`` — the same decision where waiting really dominates: ``paper-bellcanada``, λ = 4
  req/s, 400 requests, CG-BP planned for λ = 0.5.
* ``placement`` — BlockPlacement on ``paper-clustered`` (WS-RR routes the end-of-episode workload):
  learned placement vs PETALS placement (with its own fixed cache pool, and with the env's
  ``leftover`` cache policy for a like-for-like comparison), CG-BP and the other placements.
* ``generalisation`` — RequestRouting trained on *random geo topologies* (``paper-bellcanada`` with
  ``topology={geo: {num_nodes: 48}}``: 48 shipped cities drawn per seed) and evaluated on the real
  Bellcanada topology (the ``contended`` setting), next to the in-domain model when ``contended``
  ran in the same invocation.
* ``placement-zoo`` — no training: the *shipped* zoo placement ``zoo:placement-sessions`` (docs/agents.md,
  "Shipped agents") at λ = 4 req/s on ``paper-bellcanada`` and ``paper-gtsce``, with equal allocation
  delays for every policy (``equal:60`` and ``zero``): learned / best non-learned (``cg-bp-tuned``) /
  default CG-BP / the hindsight oracle over the sessions grid side by side, with the margins and a
  pass/fail per issue-13 target (≥ 25 % below default CG-BP; ≤ 2 % above cg-bp-tuned).  ``--retrain``
  retrains the model from its recipe into ``--out-dir`` (timed) and checks that its evaluation equals the
  shipped one within noise (the 95 % CI half-width over seeds of the shipped model's mean).

    python benchmarks/learning.py --parts placement-zoo --seeds 10 [--retrain]

* ``routing-zoo`` — no training: the *shipped* zoo router ``zoo:router-azure-conv`` (trained on
  ``azure-conv-swarm``) on the full ``azure-conv-swarm`` preset and on two settings it never saw
  (``azure-code-swarm``: another trace and load; ``azure-conv-swarm`` from minute 50 of the trace on a
  sparser, longer-routed topology), with one allocation-delay rule for every policy
  (``--allocation-delays``, default ``zero``): learned / WS-RR / best non-learned (``ws-rr-load``,
  ``opt-rr``) / the ``lookahead`` oracle (on ``--oracle-seeds`` seeds) side by side, the margins and a
  pass/fail per issue-13 Routing target (≥ 10 % below WS-RR; ≤ 1 % above the best non-learned router;
  ≥ 5 % below it where the oracle shows ≥ 5 % headroom).  ``--retrain`` as for ``placement-zoo``.
  The same for ``zoo:router-azure-serial`` (trained on ``azure-conv-serial``, strictly serial servers)
  on its full preset, on the trace window from 2 400 s and on the three 80-GB GPUs moved to other
  cities (``ROUTING_ZOO_SERIAL``); ``--routing-models`` picks the routers (default: all).

    python benchmarks/learning.py --parts routing-zoo --seeds 5 --oracle-seeds 1 [--retrain]
    python benchmarks/learning.py --parts routing-zoo --routing-models router-azure-serial --seeds 5

* ``swarm-zoo`` — no training: SwarmPlacement on ``clustered-churn`` with PETALS' rebalancing, every
  rule through the env from the env's initial placement (the preset's CG-BP): PETALS' join rule with
  rebalancing (the issue-13 Churn baseline), without, CG-BP's rule, keep-span, masked random, a greedy
  hindsight oracle on ``--oracle-seeds`` seeds (minutes per failure-hit seed), and the zoo model
  ``swarm-clustered-churn`` only if the zoo ships one (it does not: docs/envs.md "Headroom").

    python benchmarks/learning.py --parts swarm-zoo --seeds 10 --oracle-seeds 10

Prints per part: training wall time and steps, the per-policy table and the margins
1 − learned / baseline; writes everything to ``--out-dir``/learning.json and the models next to it.
The machine is shared (2 cores), so training times and steps per second are pessimistic.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

import distllm_env
from distllm_env import Simulation, build_instance, generate_requests, load_scenario
from distllm_env.agents.evaluate import evaluate
from distllm_env.agents.train import train
from distllm_env.api import place
from distllm_env.commands.common import format_table
from distllm_env.errors import ScenarioError
from distllm_env.outputs import json_safe
from distllm_env.parallel import add_parallel_args, parallel_from
from distllm_env.rng import generators, seed_streams

CGBP_05 = "policy_defaults.options.cg-bp.arrival_rate_per_s=0.5"
SETTINGS = {
    "routing": {"env": "distllm/RequestRouting-v0", "scenario": "paper-gtsce",
                "overrides": ["workload.arrival_rate_per_s=2", CGBP_05], "config": {"placement": "cg-bp"},
                "timesteps": 100_000},
    "contended": {"env": "distllm/RequestRouting-v0", "scenario": "paper-bellcanada",
                  "overrides": ["workload.arrival_rate_per_s=4", "workload.num_requests=400", CGBP_05],
                  "config": {"placement": "cg-bp"}, "timesteps": 1_000_000},
    "placement": {"env": "distllm/BlockPlacement-v0", "scenario": "paper-clustered", "overrides": [], "config": {},
                  "timesteps": 1_000_000},
    "generalisation": {"env": "distllm/RequestRouting-v0", "scenario": "paper-bellcanada",
                       "overrides": ["topology={geo: {num_nodes: 48}}", "workload.arrival_rate_per_s=4",
                                     "workload.num_requests=400", CGBP_05],
                       "config": {"placement": "cg-bp"}, "timesteps": 1_000_000,
                       "eval_scenario": "paper-bellcanada",
                       "eval_overrides": ["workload.arrival_rate_per_s=4", "workload.num_requests=400", CGBP_05]},
}


def routing_lower_bound(scenario, placement: str, seeds) -> float:
    """Mean over seeds of Σ_r [initial delay + least static service time over all feasible chains] /
    Σ_r output tokens: no router can do better, since waiting only adds (docs/contracts.md §6 metric)."""
    vals = []
    for seed in seeds:
        inst = build_instance(scenario, seed)
        reqs = generate_requests(inst, seed)
        prng, _ = generators(seed_streams(seed)["policy"], 2)
        presult, _, _ = place(inst, placement, prng, scenario)
        view = Simulation(inst, presult, reqs).view
        total = sum(inst.initial_delay_s + view.shortest(r.client, view.static_cost(r), r.client_blocks)[1]
                    for r in reqs)
        vals.append(total / sum(r.output_tokens for r in reqs))
    return float(np.mean(vals))


class SameCachePlacement:
    """A baseline placement re-run with another cache policy (like-for-like with the learned one)."""

    family = "default"

    def __init__(self, placement: str, cache_policy: str = "leftover", router: str = "ws-rr"):
        from distllm_env.policies import make_placement, make_routing

        self._p, self._cache, self._router_name = make_placement(placement), cache_policy, router
        self._router = make_routing(router)
        self.name = f"{placement}({cache_policy})+{router}"

    def place(self, instance, rng):
        from distllm_env.placement import CachePolicy, PlacementResult

        r = self._p.place(instance, rng)
        return PlacementResult(r.placement, CachePolicy.parse(self._cache), r.diagnostics)

    def route(self, request, view, rng):
        return self._router.route(request, view, rng)


def run_part(name: str, args, out_dir: Path, models: dict) -> dict:
    st = SETTINGS[name]
    parallel = parallel_from(args)      # evaluation seeds in parallel; identical numbers to a serial run
    model_path = out_dir / f"{name}.zip"
    seeds = list(range(10_000, 10_000 + args.seeds))
    print(f"\n=== {name}: {st['env']} on {st['scenario']} {st['overrides']} ===", flush=True)
    if args.reuse and model_path.exists():
        side = json.loads(model_path.with_suffix(".json").read_text())
        t_train, steps = side["training_time_s"], side["timesteps"]
        print(f"reusing {model_path} ({steps} steps, {t_train:.0f} s)")
    else:
        res = train(st["env"], st["scenario"], "maskable_ppo", args.timesteps or st["timesteps"], model_path,
                    seed=args.train_seed, overrides=st["overrides"], env_config=st["config"], progress_bar=False,
                    time_limit_s=args.minutes * 60.0)
        t_train, steps = res.training_time_s, res.timesteps
    print(f"training: {steps} steps in {t_train:.0f} s ({steps / max(t_train, 1e-9):.0f} steps/s), "
          f"limit {args.minutes:g} min", flush=True)
    models[name] = model_path
    eval_sc = st.get("eval_scenario", st["scenario"])
    eval_ov = st.get("eval_overrides", st["overrides"])
    extra = []
    if name == "placement":
        extra = [SameCachePlacement("petals")]
    t0 = time.perf_counter()
    ev = evaluate(model_path, eval_sc, seeds, overrides=eval_ov, **parallel)
    res_rows = ev.compare.results
    margins = ev.margins
    if extra:
        from distllm_env.compare import compare

        # serial: SameCachePlacement lives in this script's __main__, which worker processes cannot import
        more = compare(load_scenario(eval_sc, eval_ov), [*extra], seeds, allocation_delays={})
        mine = {r["seed"]: r["mean_per_token_time_s"] for r in ev.compare.per_seed if r["policy"] == ev.policy_label}
        for p in more.policies:
            base = {r["seed"]: r["mean_per_token_time_s"] for r in more.per_seed if r["policy"] == p.label}
            lm, bm = np.mean([mine[s] for s in seeds]), np.mean([base[s] for s in seeds])
            margins.append({"baseline": p.label, "learned_mean_s": float(lm), "baseline_mean_s": float(bm),
                            "reduction": float(1 - lm / bm),
                            "seeds_won": int(sum(mine[s] < base[s] for s in seeds)), "seeds_tied": 0})
        res_rows = res_rows + more.results
    t_eval = time.perf_counter() - t0
    out = {"setting": st, "model": str(model_path), "training_time_s": t_train, "timesteps": steps,
           "seeds": seeds, "results": res_rows, "margins": margins, "evaluation_time_s": t_eval, "notes": ev.notes}
    print(format_table([{"policy": r["policy"], "mean_per_token_time_s": r["mean_per_token_time_s"],
                         "std": r["mean_per_token_time_s_std"], "wait_mean_s": r["wait_mean_s"],
                         "rejected": r["num_rejected"]} for r in res_rows]))
    print(format_table([{"baseline": m["baseline"], "reduction": f"{m['reduction']:+.1%}",
                         "learned_s": m["learned_mean_s"], "baseline_s": m["baseline_mean_s"],
                         "seeds_won": m["seeds_won"]} for m in margins]))
    if st["env"].startswith("distllm/RequestRouting"):
        lb = routing_lower_bound(load_scenario(eval_sc, eval_ov), st["config"].get("placement", "cg-bp"), seeds)
        by = {r["policy"]: r["mean_per_token_time_s"] for r in res_rows}
        petals = by.get("cg-bp+petals")
        out["lower_bound_s"] = lb
        if petals:
            out["max_possible_reduction_vs_petals"] = 1 - lb / petals
            print(f"lower bound (zero-wait static optimum) {lb:.4f} s/token → no router can beat cg-bp+petals by more "
                  f"than {1 - lb / petals:.2%}")
    if name == "generalisation" and "contended" in models:
        ev2 = evaluate(models["contended"], eval_sc, seeds, overrides=eval_ov, policies=["petals", "ws-rr"], **parallel)
        out["in_domain_model"] = {"model": str(models["contended"]), "margins": ev2.margins}
        lm = ev2.margins[0]["learned_mean_s"]
        print(f"in-domain model (trained on paper-bellcanada itself): {lm:.4f} s/token; generalising model: "
              f"{margins[0]['learned_mean_s']:.4f} s/token")
    print(f"evaluation: {t_eval:.0f} s", flush=True)
    return out


# -- placement-zoo: the shipped placement agent against issue 13's "Placement" target ----------------------
ZOO_PLACEMENT = "placement-sessions"          # agents/zoo/placement-sessions.yml (docs/agents.md, "Shipped agents")
ZOO_PLACEMENT_SCENARIOS = {"paper-bellcanada": "distllm/BlockPlacementSessions-PaperBellcanada-v0",
                           "paper-gtsce": "distllm/BlockPlacementSessions-PaperGtsce-v0"}
ZOO_PLACEMENT_OVERRIDES = ["workload.arrival_rate_per_s=4"]
ZOO_PLACEMENT_DELAYS = {"equal:60": 60.0, "zero": 0.0}     # equal delays for every policy, the learned one included
TARGET_BELOW_CGBP = 0.25      # issue 13 "Targets": ≥ 25 % below default CG-BP …
TARGET_VS_BEST = 0.02         # … and within 2 % of cg-bp-tuned, or better


def _grid_oracle(scenario: str, delay_s: float, seeds) -> dict:
    """Hindsight oracle of the sessions action: per seed, the least mean per-token time over every
    feasible |R| of the sessions grid (CG-BP(|R|) + the env's router, docs/envs.md "The sessions action"),
    played through the env itself at λ = 4 with ``delay_s`` charged per request."""
    import gymnasium as gym

    env = gym.make(ZOO_PLACEMENT_SCENARIOS[scenario], overrides=ZOO_PLACEMENT_OVERRIDES,
                   config={"arrival_rate_per_s": None, "allocation_delay_s": delay_s})
    best, per_r = {}, {}
    for seed in seeds:
        _, info = env.reset(seed=seed)
        grid, mask = info["sessions_grid"], env.unwrapped.action_masks()
        vals = {}
        for a in np.flatnonzero(mask):
            env.reset(seed=seed)
            vals[grid[a]] = float(env.step(int(a))[4]["summary"]["mean_per_token_time_s"])
        per_r[seed] = vals
        best[seed] = min(vals.items(), key=lambda kv: (kv[1], kv[0]))
    env.close()
    return {"best": best, "per_sessions": per_r}


def _ci95(x) -> float:
    """Half-width of the normal 95 % CI of the mean of ``x`` over seeds (0 for one value)."""
    x = np.asarray(x, dtype=float)
    return float(1.96 * x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def _zoo_placement_eval(model, seeds, parallel) -> dict:
    """``{(scenario, delays): row}``: the learned model, default CG-BP, cg-bp-tuned, PETALS and the grid
    oracle, per-seed values and chosen |R|, margins and pass/fail against the issue-13 targets."""
    rows = {}
    for sc in ZOO_PLACEMENT_SCENARIOS:
        for rule, delay_s in ZOO_PLACEMENT_DELAYS.items():
            ev = evaluate(model, sc, seeds, overrides=ZOO_PLACEMENT_OVERRIDES, policies=["cg-bp", "cg-bp-tuned", "petals"],
                          allocation_delays=rule, **parallel)
            per = {}
            chosen = {}
            for r in ev.compare.per_seed:
                per.setdefault(r["policy"], {})[r["seed"]] = r["mean_per_token_time_s"]
                if r["policy"] == ev.policy_label:
                    chosen[r["seed"]] = (r.get("placement_diagnostics") or {}).get("sessions")
            label = {p.split("+")[0]: p for p in per}
            mine = np.array([per[ev.policy_label][s] for s in seeds])
            cgbp = np.array([per[label["cg-bp"]][s] for s in seeds])
            tuned = np.array([per[label["cg-bp-tuned"]][s] for s in seeds])
            petals = per.get(label.get("petals", ""), {})
            orc = _grid_oracle(sc, delay_s, seeds)
            oracle = np.array([orc["best"][s][1] for s in seeds])
            # the oracle replays the env the learned policy plays: at the chosen |R| both must agree
            consistent = all(abs(orc["per_sessions"][s].get(chosen[s], np.nan) - per[ev.policy_label][s]) <= 1e-9
                             for s in seeds)
            below_cgbp = float(1 - mine.mean() / cgbp.mean())
            vs_tuned = float(mine.mean() / tuned.mean() - 1)
            rows[(sc, rule)] = {
                "scenario": sc, "allocation_delays": rule, "learned_s": float(mine.mean()),
                "learned_ci95_s": _ci95(mine), "cg_bp_s": float(cgbp.mean()), "cg_bp_tuned_s": float(tuned.mean()),
                "petals_s": float(np.mean([petals[s] for s in seeds])) if petals else None,
                "oracle_s": float(oracle.mean()), "below_cg_bp": below_cgbp, "vs_cg_bp_tuned": vs_tuned,
                "above_oracle": float(mine.mean() / oracle.mean() - 1),
                "pass_below_cg_bp": below_cgbp >= TARGET_BELOW_CGBP, "pass_vs_best": vs_tuned <= TARGET_VS_BEST,
                "learned_sessions": [chosen[s] for s in seeds],
                "cg_bp_tuned_sessions": sorted({(r.get("placement_diagnostics") or {}).get("sessions")
                                                for r in ev.compare.per_seed if r["policy"] == label["cg-bp-tuned"]}),
                "oracle_sessions": [orc["best"][s][0] for s in seeds], "oracle_consistent": consistent,
                "learned_per_seed_s": mine.tolist(), "notes": ev.notes}
    return rows


def _print_zoo_placement(rows: dict) -> None:
    print(format_table([{
        "scenario": r["scenario"], "delays": r["allocation_delays"], "learned_s": r["learned_s"],
        "cg-bp-tuned_s": r["cg_bp_tuned_s"], "cg-bp_s": r["cg_bp_s"], "oracle_s": r["oracle_s"],
        "below_cg-bp": f"{r['below_cg_bp']:+.1%} {'PASS' if r['pass_below_cg_bp'] else 'FAIL'}",
        "vs_cg-bp-tuned": f"{r['vs_cg_bp_tuned']:+.2%} {'PASS' if r['pass_vs_best'] else 'FAIL'}",
        "vs_oracle": f"{r['above_oracle']:+.2%}",
        "|R| learned/tuned/oracle": f"{','.join(map(str, sorted(set(r['learned_sessions']))))}/"
                                    f"{','.join(map(str, r['cg_bp_tuned_sessions']))}/"
                                    f"{','.join(map(str, sorted(set(r['oracle_sessions']))))}",
    } for r in rows.values()]))


def run_placement_zoo(args, out_dir: Path) -> dict:
    """The shipped zoo placement (:data:`ZOO_PLACEMENT`) at λ = 4 on paper-bellcanada and paper-gtsce,
    held-out seeds 10 000 …, equal allocation delays (60 s and 0) for every policy: learned / best
    non-learned (cg-bp-tuned) / default CG-BP / grid oracle, margins and pass/fail per target.

    ``--retrain``: retrain from the recipe into ``--out-dir`` (timed), evaluate the retrained model the
    same way and check its mean per-token time equals the shipped model's within noise, i.e. within the
    95 % CI half-width over seeds of the shipped model's mean (1.96·sd/√n of its per-seed values); also
    reports whether the weights are bit-identical (one torch thread, same library versions)."""
    import hashlib
    import zipfile

    from distllm_env.agents.train import train_recipe
    from distllm_env.agents.zoo import model_path

    parallel = parallel_from(args)
    seeds = list(range(10_000, 10_000 + args.seeds))
    shipped = model_path(ZOO_PLACEMENT)
    side = json.loads(shipped.with_suffix(".json").read_text())
    print(f"\n=== placement-zoo: zoo:{ZOO_PLACEMENT} ({side['algo']}, {side['timesteps']} steps, trained in "
          f"{side['training_time_s']:.0f} s) at λ = 4 /s, seeds {seeds[0]}…{seeds[-1]} ===", flush=True)
    t0 = time.perf_counter()
    rows = _zoo_placement_eval(f"zoo:{ZOO_PLACEMENT}", seeds, parallel)
    _print_zoo_placement(rows)
    bad = [k for k, r in rows.items() if not r["oracle_consistent"]]
    if bad:
        print(f"WARNING: the grid oracle's value at the learned |R| differs from the evaluation on {bad}")
    met = all(r["pass_below_cg_bp"] and r["pass_vs_best"] for r in rows.values())
    print(f"Placement target (≥ {TARGET_BELOW_CGBP:.0%} below cg-bp and ≤ {TARGET_VS_BEST:.0%} above cg-bp-tuned, "
          f"both presets, both delay rules): {'PASS' if met else 'FAIL'}  (evaluation {time.perf_counter() - t0:.0f} s)")
    out = {"model": str(shipped), "training_time_s": side["training_time_s"], "timesteps": side["timesteps"],
           "seeds": seeds, "overrides": ZOO_PLACEMENT_OVERRIDES, "rows": list(rows.values()), "target_met": met}
    if args.retrain:
        path = out_dir / f"{ZOO_PLACEMENT}.zip"
        res = train_recipe(ZOO_PLACEMENT, path, progress_bar=False)
        print(f"retrained {ZOO_PLACEMENT} from its recipe: {res.timesteps} steps in {res.training_time_s:.0f} s",
              flush=True)
        digest = [hashlib.sha256(zipfile.ZipFile(p).read("policy.pth")).hexdigest() for p in (shipped, res.model_path)]
        again = _zoo_placement_eval(res.model_path, seeds, parallel)
        checks = []
        for k, r in rows.items():
            diff = again[k]["learned_s"] - r["learned_s"]
            checks.append({"scenario": k[0], "delays": k[1], "shipped_s": r["learned_s"], "retrained_s": again[k]["learned_s"],
                           "diff_s": diff, "noise_s": r["learned_ci95_s"],
                           "within_noise": abs(diff) <= r["learned_ci95_s"] + 1e-12})
        print(format_table([{**c, "within_noise": "PASS" if c["within_noise"] else "FAIL"} for c in checks]))
        print(f"retrained weights bit-identical to the shipped ones: {digest[0] == digest[1]}")
        out["retrain"] = {"model": str(res.model_path), "training_time_s": res.training_time_s,
                          "timesteps": res.timesteps, "weights_identical": digest[0] == digest[1], "checks": checks,
                          "reproduced": all(c["within_noise"] for c in checks)}
    return out


#: parts that evaluate a shipped zoo model instead of training one (``--retrain`` retrains it from its recipe)
ZOO_PARTS = {"placement-zoo": run_placement_zoo}


#: ``routing-zoo`` part (issue 13, "Targets": Routing): the shipped router ``zoo:router-azure-conv``
#: (agents/zoo/router-azure-conv.yml, trained on azure-conv-swarm) on its full preset and on two settings
#: it never saw: another trace and load (azure-code-swarm), and another trace window and topology.
ROUTING_ZOO = {
    "model": "router-azure-conv",
    "settings": [
        ("in-domain", "azure-conv-swarm", []),
        ("held-out: code trace", "azure-code-swarm", []),
        ("held-out: window + topology", "azure-conv-swarm",
         ["workload.trace_offset.seconds=3000", "topology.geo.k_nearest=2", "topology.geo.route_factor=2.0"]),
    ],
    "heuristics": ["ws-rr", "ws-rr-load", "opt-rr"],   # the non-learned routers run on every seed
    "oracle": "lookahead",                             # ~130 s per seed alone on azure: --oracle-seeds of them
}
#: the serial-server router ``zoo:router-azure-serial`` (agents/zoo/router-azure-serial.yml, trained on
#: azure-conv-serial, where ws-rr-load is ~73 % below ws-rr: docs/envs.md "Headroom") on its full preset,
#: on a trace window it never saw, and on a topology it never saw (the three 80-GB GPUs in other cities).
ROUTING_ZOO_SERIAL = {
    "model": "router-azure-serial",
    "settings": [
        ("in-domain", "azure-conv-serial", []),
        ("held-out: trace window", "azure-conv-serial", ["workload.trace_offset.seconds=2400"]),
        ("held-out: topology", "azure-conv-serial",
         ["servers.0.node=n4_London", "servers.1.node=n3_Toronto", "servers.2.node=n9_Tokyo"]),
    ],
    "heuristics": ["ws-rr", "ws-rr-load", "opt-rr"],
    "oracle": "lookahead",
}
#: every zoo router the ``routing-zoo`` part evaluates (``--routing-models`` picks some)
ROUTING_ZOO_ENTRIES = [ROUTING_ZOO, ROUTING_ZOO_SERIAL]
#: the Routing target of issue 13: ≥ 10 % below WS-RR, ≤ 1 % above the best non-learned router, and ≥ 5 %
#: below it where the oracle shows ≥ 5 % headroom over the other non-learned routers
ROUTING_TARGETS = {"vs_ws_rr": 0.10, "vs_best": -0.01, "headroom": 0.05}


def _per_seed(ev, label_of) -> dict:
    """{policy name: {seed: mean per-token time}} of an evaluation (label_of: compare label → name)."""
    out: dict = {}
    for r in ev.compare.per_seed:
        out.setdefault(label_of(r["policy"]), {})[r["seed"]] = r["mean_per_token_time_s"]
    return out


def run_routing_zoo(args, out_dir: Path, zoo: dict | None = None) -> dict:
    """The shipped router ``zoo`` (an entry of ``ROUTING_ZOO_ENTRIES``; default ``ROUTING_ZOO``) against
    WS-RR, the best non-learned router and the lookahead oracle, with the margins 1 − learned / other and
    pass/fail per target (``ROUTING_TARGETS``), per setting."""
    zoo = ROUTING_ZOO if zoo is None else zoo
    from distllm_env.agents.train import train_recipe
    from distllm_env.agents.zoo import MODEL_PREFIX

    parallel = parallel_from(args)
    name = zoo["model"]
    seeds = list(range(10_000, 10_000 + args.seeds))
    oracle_seeds = seeds[:max(0, min(args.oracle_seeds, len(seeds)))]
    models = {"shipped": f"{MODEL_PREFIX}{name}"}
    out: dict = {"model": models["shipped"], "seeds": seeds, "oracle_seeds": oracle_seeds,
                 "allocation_delays": args.allocation_delays, "settings": {}}
    print(f"\n=== routing-zoo: {models['shipped']}, held-out seeds {seeds[0]}…{seeds[-1]}, oracle "
          f"({zoo['oracle']}) on {len(oracle_seeds)} of them, allocation delays {args.allocation_delays} "
          "for every policy ===", flush=True)
    if args.retrain:
        res = train_recipe(name, out_dir / f"{name}.zip", progress_bar=False)
        models["retrained"] = str(res.model_path)
        out["retrain"] = {"training_time_s": res.training_time_s, "timesteps": res.timesteps}
        print(f"retrained from the recipe: {res.timesteps} steps in {res.training_time_s:.0f} s", flush=True)
    for title, scenario, overrides in zoo["settings"]:
        t0 = time.perf_counter()
        res: dict = {"scenario": scenario, "overrides": overrides}
        by: dict = {}
        for which, model in models.items():
            ev = evaluate(model, scenario, seeds, overrides=overrides, policies=zoo["heuristics"],
                          allocation_delays=args.allocation_delays, **parallel)
            name_of = lambda lbl, ev=ev, which=which: which if lbl == ev.policy_label else lbl.split("+")[-1]  # noqa: E731
            by |= _per_seed(ev, name_of)
        if oracle_seeds:
            ev = evaluate(models["shipped"], scenario, oracle_seeds, overrides=overrides,
                          policies=[zoo["oracle"]], allocation_delays=args.allocation_delays, **parallel)
            by[zoo["oracle"]] = _per_seed(ev, lambda lbl: lbl.split("+")[-1])[zoo["oracle"]]
        mean = lambda pol, ss=seeds: float(np.mean([by[pol][s] for s in ss]))  # noqa: E731
        heur = zoo["heuristics"]
        best = min(heur[1:], key=mean)                       # best of ws-rr-load, opt-rr (all seeds)
        shown = {"shipped": f"learned:{name}", "retrained": f"learned:{name} (retrained)"}
        rows = [{"policy": shown.get(p, p), "mean_per_token_time_s": mean(p), "seeds": len(seeds)} for p in [*models, *heur]]
        t = {"learned_s": mean("shipped"), "ws_rr_s": mean("ws-rr"), "best_heuristic": best,
             "best_heuristic_s": mean(best)}
        t["vs_ws_rr"] = 1 - t["learned_s"] / t["ws_rr_s"]
        t["vs_best"] = 1 - t["learned_s"] / t["best_heuristic_s"]
        if oracle_seeds:
            o = zoo["oracle"]
            rows.append({"policy": o, "mean_per_token_time_s": mean(o, oracle_seeds), "seeds": len(oracle_seeds)})
            # on the oracle's seeds (paired): its headroom over every other non-learned router, the learned
            # router against it, and against the best non-learned router there (oracle included)
            others = min(mean(p, oracle_seeds) for p in heur)
            t["oracle_s"], t["oracle_headroom"] = mean(o, oracle_seeds), 1 - mean(o, oracle_seeds) / others
            t["vs_oracle"] = 1 - mean("shipped", oracle_seeds) / t["oracle_s"]
            t["vs_best"] = min(t["vs_best"], 1 - mean("shipped", oracle_seeds) / min(others, t["oracle_s"]))
        t["pass_vs_ws_rr"] = t["vs_ws_rr"] >= ROUTING_TARGETS["vs_ws_rr"]
        t["pass_vs_best"] = t["vs_best"] >= ROUTING_TARGETS["vs_best"]
        t["headroom_target"] = ("n/a: no oracle run" if not oracle_seeds else
                                f"n/a: oracle headroom {t['oracle_headroom']:+.1%} < {ROUTING_TARGETS['headroom']:.0%}"
                                if t["oracle_headroom"] < ROUTING_TARGETS["headroom"] else
                                "pass" if t["vs_best"] >= ROUTING_TARGETS["headroom"] else "FAIL")
        if "retrained" in models:       # within noise: the 95 % CI half-width over seeds of the shipped mean
            t["retrained_s"] = mean("retrained")
            t["retrained_vs_shipped"] = 1 - t["retrained_s"] / t["learned_s"]
            vals = np.array([by["shipped"][s] for s in seeds])
            t["noise_s"] = float(1.96 * vals.std(ddof=1) / np.sqrt(len(vals))) if len(vals) > 1 else 0.0
            t["retrained_within_noise"] = abs(t["retrained_s"] - t["learned_s"]) <= t["noise_s"] + 1e-12
        res |= {"rows": rows, "targets": t, "evaluation_time_s": time.perf_counter() - t0}
        out["settings"][title] = res
        print(f"\n--- {title}: {scenario} {overrides} ---")
        print(format_table(rows))
        print(format_table([
            {"target": "≥ 10 % below ws-rr", "margin": f"{t['vs_ws_rr']:+.1%}",
             "result": "pass" if t["pass_vs_ws_rr"] else "FAIL"},
            {"target": f"≤ 1 % above the best non-learned ({best}{', lookahead' if oracle_seeds else ''})",
             "margin": f"{t['vs_best']:+.1%}", "result": "pass" if t["pass_vs_best"] else "FAIL"},
            {"target": "≥ 5 % below it where the oracle shows ≥ 5 % headroom",
             "margin": f"{t['oracle_headroom']:+.1%} headroom" if oracle_seeds else "-",
             "result": t["headroom_target"]}]))
        if "retrained" in models:
            print(f"retrained model {t['retrained_s']:.4f} s/token vs shipped {t['learned_s']:.4f} "
                  f"({t['retrained_vs_shipped']:+.1%}; within noise ±{t['noise_s']:.4f}: {t['retrained_within_noise']})")
        print(f"evaluation: {res['evaluation_time_s']:.0f} s", flush=True)
    return out


def run_routing_zoo_all(args, out_dir: Path) -> dict:
    """``run_routing_zoo`` for every entry of ``ROUTING_ZOO_ENTRIES`` named by ``--routing-models``:
    ``{model name: its report}``."""
    wanted = [m.strip() for m in args.routing_models.split(",") if m.strip()]     # checked in main()
    return {z["model"]: run_routing_zoo(args, out_dir, z) for z in ROUTING_ZOO_ENTRIES if z["model"] in wanted}


ZOO_PARTS["routing-zoo"] = run_routing_zoo_all


#: ``swarm-zoo`` part (issue 13, "Targets": Churn): SwarmPlacement on clustered-churn with PETALS'
#: rebalancing, every rule played through the env (so every rule starts from the env's initial
#: placement, the preset's CG-BP; docs/envs.md "Headroom"): PETALS' join rule with rebalancing (the
#: baseline), without, CG-BP's rule, keep-span, masked random, a greedy hindsight oracle on
#: ``--oracle-seeds`` seeds, and the zoo model ``SWARM_ZOO["model"]`` when the zoo ships one.
SWARM_ZOO = {"model": "swarm-clustered-churn", "scenario": "clustered-churn",
             "rebalance": "churn.rebalance={balance_quality: 0.75, period_s: 60}"}
#: the Churn target: ≥ 10 % more goodput than PETALS + rebalancing at equal per-token time (here: at most
#: 5 % above it) and no more rejections (goodput is completions per second of makespan: rejecting a
#: failure-hit tail shortens the makespan and raises it)
SWARM_TARGETS = {"goodput": 0.10, "per_token": 0.05}


class KeepSpan:
    """SwarmPlacement env policy: a rejoining server takes its previous span, a server told to move
    stays (a rebalance with the current start is a no-op, docs/envs.md "SwarmPlacement")."""

    name = "keep-span"

    def __init__(self, env):
        self.env = env.unwrapped

    def act(self, obs=None, info=None) -> int:
        e = self.env
        return 0 if e.pending is None else int(e._live_spans()[0][e.pending[0]])


def _swarm_summary(env) -> dict:
    from distllm_env.metrics import summarize

    u = env.unwrapped
    s = summarize(u.sim.finished_records(), u.sim.capacity_bytes)
    done = s["num_completed"] > 0
    return {"goodput_requests_per_s": float(s["goodput_requests_per_s"]) if done else 0.0,
            "mean_per_token_time_s": float(s["mean_per_token_time_s"]) if done else float("nan"),
            "num_rejected": int(s["num_rejected"]), "num_decisions": len(u.decisions)}


def _swarm_oracle(env, seed: int) -> dict:
    """Greedy hindsight oracle: at each decision try every start on a stride-4 grid (stride 8 for spans
    of ≤ 8 blocks) plus keep-span and PETALS' choice, roll each out to the end on a copy of the env
    under keep-span and under PETALS' rule, take the one with the most completed requests (then the
    least per-token time).  It sees the held-out seed's future: a bound for comparison, not a policy."""
    import copy

    from distllm_env.envs.policies import JoinEnvPolicy

    u = env.unwrapped
    u.reset(seed=seed)

    def rule_act(v, kind):
        return KeepSpan(v).act() if kind == "keep" else JoinEnvPolicy("petals", v).act()

    def value(v):
        done = sum(r.status == "completed" for r in v.sim.finished_records())
        return done, -float(np.nan_to_num(_swarm_summary(v)["mean_per_token_time_s"], nan=1e9))

    L = u.instance.num_blocks
    while True:
        if u.pending is None:
            u.step(0)
            break
        j, m = u.pending
        step = 4 if m > 8 else 8
        cands = sorted(set(range(0, L - m + 1, step)) | {L - m, rule_act(u, "keep"), rule_act(u, "petals")})
        best = None
        for a in cands:
            for kind in ("keep", "petals"):
                v, act = copy.deepcopy(u), a
                while not v.step(act)[2]:
                    act = rule_act(v, kind)
                val = value(v)
                if best is None or val > best[0]:
                    best = (val, a)
        if u.step(best[1])[2]:
            break
    return _swarm_summary(u)


def _mean_finite(vals) -> float:
    """Mean of the finite values (NaN when there is none), without numpy's empty-slice warning."""
    done = [float(v) for v in vals if v is not None and math.isfinite(v)]
    return float(np.mean(done)) if done else math.nan


def _ratio(x: float, base: float) -> float:
    """x / base − 1, NaN when either is undefined or base is 0."""
    return x / base - 1 if math.isfinite(x) and math.isfinite(base) and base != 0 else math.nan


def _pct(v: float) -> str:
    return f"{v:+.1%}" if math.isfinite(v) else "-"


def run_swarm_zoo(args, out_dir: Path) -> dict:
    """SwarmPlacement on clustered-churn (held-out seeds 10 000 …): every rule through the env, the
    oracle on ``--oracle-seeds`` seeds, the zoo model when shipped; margins against PETALS' rule with
    rebalancing and pass/fail per :data:`SWARM_TARGETS`."""
    import gymnasium as gym

    from distllm_env.agents.learned import LearnedEnvPolicy, LearnedModel
    from distllm_env.agents.zoo import MODEL_PREFIX
    from distllm_env.envs.policies import JoinEnvPolicy, MaskedRandomPolicy, run_episode

    seeds = list(range(10_000, 10_000 + args.seeds))
    oracle_seeds = seeds[:max(0, min(args.oracle_seeds, len(seeds)))]
    sc, reb = SWARM_ZOO["scenario"], SWARM_ZOO["rebalance"]

    def make(rebalance: bool):
        return gym.make("distllm/SwarmPlacement-v0", scenario=sc, overrides=[reb] if rebalance else [])

    rules = {"petals rule + rebalancing": (True, lambda e: JoinEnvPolicy("petals", e)),
             "petals rule, no rebalancing": (False, lambda e: JoinEnvPolicy("petals", e)),
             "cg-bp rule + rebalancing": (True, lambda e: JoinEnvPolicy("cg-bp", e)),
             "cg-bp rule, no rebalancing": (False, lambda e: JoinEnvPolicy("cg-bp", e)),
             "keep span + rebalancing": (True, KeepSpan),
             "masked random + rebalancing": (True, lambda e: MaskedRandomPolicy(0, e))}
    learned = None
    try:
        learned = LearnedModel(f"{MODEL_PREFIX}{SWARM_ZOO['model']}")
    except Exception as exc:     # noqa: BLE001 - the zoo has no such model (yet): the learned column is absent
        print(f"(no learned column: {exc})")
    orc = f"oracle on {len(oracle_seeds)} seeds" if oracle_seeds else "oracle not run (--oracle-seeds 0)"
    print(f"\n=== swarm-zoo: SwarmPlacement on {sc} + rebalancing, held-out seeds {seeds[0]}…{seeds[-1]}, "
          f"initial placement: the env's default for every rule; {orc} ===", flush=True)
    t0 = time.perf_counter()
    per: dict = {}
    for label, (rebalance, mk) in rules.items():
        env = make(rebalance)
        per[label] = {}
        for s in seeds:
            run_episode(env, mk(env), seed=s)
            per[label][s] = _swarm_summary(env)
    if learned is not None:
        env, label = learned.make_env(), f"learned:{SWARM_ZOO['model']}"
        per[label] = {}
        for s in seeds:
            run_episode(env, LearnedEnvPolicy(learned, env), seed=s)
            per[label][s] = _swarm_summary(env)
    if oracle_seeds:
        env = make(True)
        per["greedy hindsight oracle"] = {s: _swarm_oracle(env, s) for s in oracle_seeds}
    base = per["petals rule + rebalancing"]
    rows = []
    for label, by in per.items():
        ss = list(by)
        # per-token time: the mean over the seeds that completed something (a seed that completed nothing
        # has none, docs/contracts.md §6), those seeds counted in "seeds_none_completed"
        m = {k: _mean_finite([by[s][k] for s in ss]) for k in ("goodput_requests_per_s", "mean_per_token_time_s",
                                                                "num_rejected", "num_decisions")}
        b = {k: _mean_finite([base[s][k] for s in ss]) for k in m}
        none = sum(not math.isfinite(by[s]["mean_per_token_time_s"]) for s in ss)
        gain = _ratio(m["goodput_requests_per_s"], b["goodput_requests_per_s"])
        pt = _ratio(m["mean_per_token_time_s"], b["mean_per_token_time_s"])
        ok = gain >= SWARM_TARGETS["goodput"] and pt <= SWARM_TARGETS["per_token"] and m["num_rejected"] <= b["num_rejected"]
        rows.append({"policy": label, "seeds": len(ss), **m, "seeds_none_completed": none, "goodput_vs_base": gain,
                     "per_token_vs_base": pt, "rejected_vs_base": m["num_rejected"] - b["num_rejected"],
                     "meets_target": bool(ok)})
    print(format_table([{**r, "goodput_vs_base": _pct(r["goodput_vs_base"]), "per_token_vs_base": _pct(r["per_token_vs_base"]),
                         "rejected_vs_base": f"{r['rejected_vs_base']:+.1f}", "meets_target": "yes" if r["meets_target"] else "no"}
                        for r in rows]))
    if any(r["seeds_none_completed"] for r in rows):
        print("seeds_none_completed: seeds on which the policy completed no request; its per-token time is the "
              "mean over the other seeds (- when none is left)")
    if not oracle_seeds:
        print("greedy hindsight oracle: not run (--oracle-seeds 0)")
    print(f"target: ≥ {SWARM_TARGETS['goodput']:.0%} goodput over petals rule + rebalancing, per-token time at most "
          f"{SWARM_TARGETS['per_token']:.0%} above it, no more rejections (vs_base columns: on each row's seeds); "
          f"evaluation {time.perf_counter() - t0:.0f} s", flush=True)
    return {"scenario": sc, "overrides": [reb], "seeds": seeds, "oracle_seeds": oracle_seeds, "rows": rows,
            "per_seed": {k: {str(s): v for s, v in by.items()} for k, by in per.items()}}


ZOO_PARTS["swarm-zoo"] = run_swarm_zoo


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="routing,contended,placement,generalisation,placement-zoo")
    ap.add_argument("--minutes", type=float, default=20.0, help="training wall-clock limit per part (default 20)")
    ap.add_argument("--timesteps", type=int, default=None, help="training steps per part (default: per part)")
    ap.add_argument("--seeds", type=int, default=20, help="held-out evaluation seeds 10000… (default 20)")
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--out-dir", default="benchmarks/out/learning")
    ap.add_argument("--reuse", action="store_true", help="evaluate existing models in --out-dir instead of training")
    ap.add_argument("--retrain", action="store_true",
                    help="zoo parts: also retrain the shipped model from its recipe into --out-dir and check its "
                         "evaluation equals the shipped one within noise")
    ap.add_argument("--oracle-seeds", type=int, default=1,
                    help="routing-zoo: run the lookahead oracle on the first N evaluation seeds (about 130 s per seed "
                         "on azure; default 1, 0 = none); swarm-zoo: the greedy hindsight oracle likewise")
    ap.add_argument("--routing-models", default=",".join(z["model"] for z in ROUTING_ZOO_ENTRIES),
                    help="routing-zoo: the zoo routers to evaluate, comma-separated (default: all of "
                         "ROUTING_ZOO_ENTRIES)")
    ap.add_argument("--allocation-delays", default="zero",
                    help="routing-zoo: one delay rule for every policy, learned included: zero or equal:SECONDS")
    add_parallel_args(ap)
    args = ap.parse_args(argv)
    try:
        parallel_from(args)             # a bad --workers / --ray-address before any training
    except ScenarioError as exc:
        ap.error(str(exc))
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in parts if p not in SETTINGS and p not in ZOO_PARTS]
    if bad:
        ap.error(f"unknown parts {bad}; expected {list(SETTINGS) + list(ZOO_PARTS)}")
    known = [z["model"] for z in ROUTING_ZOO_ENTRIES]
    bad = [m for m in args.routing_models.split(",") if m.strip() and m.strip() not in known]
    if bad:
        ap.error(f"--routing-models: unknown {bad}; expected some of {known}")
    print(f"distllm-env {distllm_env.__version__}; MaskablePPO ≤ {args.minutes:g} min per part; "
          f"held-out seeds 10000…{10_000 + args.seeds - 1}; allocation delays 0 for every policy (zoo parts: equal delays, printed per row)")
    models: dict = {}
    report = {"version": distllm_env.__version__, "argv": sys.argv[1:], "parts": {}}
    previous = out_dir / "learning.json"
    if previous.exists():      # keep the parts this invocation does not run
        try:
            report["parts"] = json.loads(previous.read_text()).get("parts", {})
        except json.JSONDecodeError:
            pass
    for p in parts:
        report["parts"][p] = ZOO_PARTS[p](args, out_dir) if p in ZOO_PARTS else run_part(p, args, out_dir, models)
        (out_dir / "learning.json").write_text(json.dumps(json_safe(report), indent=1) + "\n")
    print(f"\nwrote {out_dir / 'learning.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
