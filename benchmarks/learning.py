"""Learning benchmark (issue 6, item 3): do the learned policies beat the baselines?

    python benchmarks/learning.py                      # every part, ≤ 20 min of MaskablePPO training each
    python benchmarks/learning.py --parts routing --minutes 5 --seeds 10

Parts (each trains MaskablePPO with the shipped agents/maskable_ppo.yml, stops after ``--minutes`` of
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

Prints per part: training wall time and steps, the per-policy table and the margins
1 − learned / baseline; writes everything to ``--out-dir``/learning.json and the models next to it.
The machine is shared (2 cores), so training times and steps per second are pessimistic.
"""

from __future__ import annotations

import argparse
import json
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
from distllm_env.outputs import json_safe
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
    ev = evaluate(model_path, eval_sc, seeds, overrides=eval_ov)
    res_rows = ev.compare.results
    margins = ev.margins
    if extra:
        from distllm_env.compare import compare

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
        ev2 = evaluate(models["contended"], eval_sc, seeds, overrides=eval_ov, policies=["petals", "ws-rr"])
        out["in_domain_model"] = {"model": str(models["contended"]), "margins": ev2.margins}
        lm = ev2.margins[0]["learned_mean_s"]
        print(f"in-domain model (trained on paper-bellcanada itself): {lm:.4f} s/token; generalising model: "
              f"{margins[0]['learned_mean_s']:.4f} s/token")
    print(f"evaluation: {t_eval:.0f} s", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="routing,contended,placement,generalisation")
    ap.add_argument("--minutes", type=float, default=20.0, help="training wall-clock limit per part (default 20)")
    ap.add_argument("--timesteps", type=int, default=None, help="training steps per part (default: per part)")
    ap.add_argument("--seeds", type=int, default=20, help="held-out evaluation seeds 10000… (default 20)")
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--out-dir", default="benchmarks/out/learning")
    ap.add_argument("--reuse", action="store_true", help="evaluate existing models in --out-dir instead of training")
    args = ap.parse_args(argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in parts if p not in SETTINGS]
    if bad:
        ap.error(f"unknown parts {bad}; expected {list(SETTINGS)}")
    print(f"distllm-env {distllm_env.__version__}; MaskablePPO ≤ {args.minutes:g} min per part; "
          f"held-out seeds 10000…{10_000 + args.seeds - 1}; allocation delays 0 for every policy")
    models: dict = {}
    report = {"version": distllm_env.__version__, "argv": sys.argv[1:], "parts": {}}
    previous = out_dir / "learning.json"
    if previous.exists():      # keep the parts this invocation does not run
        try:
            report["parts"] = json.loads(previous.read_text()).get("parts", {})
        except json.JSONDecodeError:
            pass
    for p in parts:
        report["parts"][p] = run_part(p, args, out_dir, models)
        (out_dir / "learning.json").write_text(json.dumps(json_safe(report), indent=1) + "\n")
    print(f"\nwrote {out_dir / 'learning.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
