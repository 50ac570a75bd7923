"""Headroom report (issue 13, item 2): how much could a learner gain on each env id?

    python benchmarks/headroom.py                          # every family, 10 held-out seeds
    python benchmarks/headroom.py --quick                  # 2 seeds, 20 requests: a smoke run (seconds)
    python benchmarks/headroom.py --families routing --format json --out headroom.json

For every env id family it prints the env's default baseline, the best oracle or strong baseline, a
lower bound where one exists, and the headroom = (baseline − best) / baseline (per-token time; for
goodput and split work reduction, (best − baseline) / baseline).  An id with headroom < 3 % is a
*sanity task* (docs/envs.md "Headroom").  The column "beyond best non-learned" is the headroom of the
family's best ORACLE over the best non-learned candidate (every other one): ``lookahead`` for routing
(paired on its seeds where it ran on a subset), the per-seed |R| oracle for placement, the exact DP for
split; negative when the oracle is worse, "oracle not run" where none ran (SwarmPlacement: its hindsight
oracle plays through the env, ``benchmarks/learning.py --parts swarm-zoo``).  All runs use held-out
seeds 10,000 … (paired: every policy sees the same instance and workload per seed) and one allocation
delay for every policy (``--allocation-delay-s``, default 0; docs/contracts.md §4).

* **RequestRouting** (paper presets, at the preset load and at λ = 4 on Bellcanada / GTS-CE; azure
  presets): the env's placement (the scenario's default, CG-BP) with WS-RR (baseline) against
  ``ws-rr-load``, ``opt-rr``, PETALS' router and ``lookahead`` (when registered; ≈ 70 ms per decision
  on the live engine, so on the azure presets only on ``--lookahead-live`` for ``--lookahead-seeds``
  seeds, reported paired on those seeds and not counted as "best").  Lower bound: the
  zero-wait bound, each of the baseline's completed requests alone on its static-cheapest chain
  (initial delay + allocation delay + least static cost, docs/contracts.md §6 metric), Σ / Σ output
  tokens.  Waiting and contention only add to it, so no router on that placement beats it.
* **BlockPlacement** (same presets, router WS-RR): default CG-BP (its |R| rule or the preset's
  ``sessions``) against CG-BP with |R| chosen by simulation on training seeds 0 … (a sweep of the
  ``sessions`` option, arXiv 2512.21884 Algorithm 1 with |R| given), the per-seed best |R| of that
  sweep (an oracle: it peeks at the held-out seed) and ``cg-bp-tuned`` (when registered; not on the
  azure presets, where its per-seed re-tuning costs minutes).  No bound.  A candidate that rejects
  more requests than the baseline is never "best" (per-token time leaves rejected requests out).
* **ClientSplit**: SplitLLM's DP (arXiv 2410.10759) is exact for the env's objective, so the
  headroom is 0 by construction; the greedy splits are shown for scale (work reduction, higher is better).
* **SwarmPlacement** (churn presets, router WS-RR): PETALS' join rule with rebalancing (the issue's
  baseline) against PETALS' rule without rebalancing and CG-BP's rule with and without; the initial
  placement is the join rule's own policy (= ``simulate(scenario, rule, "ws-rr")``, which the env
  reproduces with ``config={"placement": rule}`` and ``JoinEnvPolicy(rule)``).  Metric: goodput (0 on a
  seed that completed nothing).  The per-token time printed beside it is the mean over the seeds that
  completed something, with the number of seeds that completed nothing (their per-token time is
  undefined, docs/contracts.md §6).

``lookahead`` / ``cg-bp-tuned`` are looked up in ``distllm_env.registry`` at run time.  ``--workers N``
runs the simulations in N processes (``distllm_env.parallel.map_seeds`` when that module exists, else
the standard library); each simulation is a pure function of its arguments, so results equal a serial run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

HELD_OUT = 10_000
SANITY_PCT = 3.0
SESSIONS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SESSIONS_QUICK = (4, 16, 64)
REBALANCE = "churn.rebalance={balance_quality: 0.75, period_s: 60}"   # docs/scenarios.md churn table defaults
ROUTING_PRESETS = ("paper-clustered", "paper-abovenet", "paper-bellcanada", "paper-gtsce",
                   "azure-conv-swarm", "azure-code-swarm", "azure-conv-serial")
LOADED = ("paper-bellcanada", "paper-gtsce")          # also at λ = 4 req/s
LIVE = ("azure-conv-swarm", "azure-code-swarm", "azure-conv-serial")   # live engine: seconds per run
SPLIT_PRESETS = ("splitllm-edge", "splitllm-wan")
CHURN_PRESETS = ("petals-swarm-churn", "clustered-churn")
CHURN_POLICIES = {"petals rule + rebalancing": ("petals", True), "petals rule, no rebalancing": ("petals", False),
                  "cg-bp rule, no rebalancing": ("cg-bp", False), "cg-bp rule + rebalancing": ("cg-bp", True)}
FAMILIES = ("routing", "placement", "split", "churn")
#: the oracle of each family, for the "beyond best non-learned" column (docs/envs.md "Headroom"): the
#: best oracle against the best non-learned policy (every other candidate).  SwarmPlacement's hindsight
#: oracle plays through the env (benchmarks/learning.py --parts swarm-zoo), so it is not run here.
ORACLES = {"routing": ("cg-bp+lookahead",), "placement": ("oracle |R| per seed",), "split": ("dp",), "churn": ()}


def camel(preset: str) -> str:
    return "".join(p.capitalize() for p in preset.split("-"))


def registered(kind: str, name: str) -> bool:
    """Whether ``name`` is a registered placement/routing policy now (lookahead, cg-bp-tuned)."""
    from distllm_env import registry

    table = registry.PLACEMENT_POLICIES if kind == "placement" else registry.ROUTING_POLICIES
    return name in table


# --------------------------------------------------------------------------------------------------
# jobs: pure functions of their (picklable) arguments
# --------------------------------------------------------------------------------------------------

def zero_wait_bound_s(res, delay_s: float) -> float:
    """Σ over the completed requests of [initial delay + allocation delay + least static cost over
    every feasible chain] / Σ their output tokens (docs/contracts.md §6 metric, no waiting term)."""
    from distllm_env import Simulation, generate_requests

    done = {r.request_id for r in res.records if r.completed}
    reqs = generate_requests(res.instance, res.seed)
    view = Simulation(res.instance, res.placement_result, reqs).view
    total, tokens = 0.0, 0
    for r in reqs:
        if r.id in done:
            total += res.instance.initial_delay_s + delay_s + view.shortest(r.client, view.static_cost(r),
                                                                            r.client_blocks)[1]
            tokens += r.output_tokens
    return total / tokens if tokens else math.nan


def run_job(spec: tuple) -> dict | None:
    """One simulation (``("sim", scenario, overrides, placement, routing, seed, delay_s, bound)``) or one
    split evaluation (``("split", scenario, seed, num_requests)``).  None when the policy cannot run
    (e.g. CG-BP infeasible for that |R|)."""
    from distllm_env.errors import DistLLMError

    if spec[0] == "split":
        from distllm_env.split.evaluate import evaluate_split

        _, scenario, seed, n = spec
        ev = evaluate_split(scenario, ["dp", "prefix-greedy", "ratio-greedy"], seed=seed, num_requests=n)
        return {r["policy"]: r["server_work_reduction_total"] for r in ev.rows}
    from distllm_env import simulate

    _, scenario, overrides, placement, routing, seed, delay_s, bound = spec
    try:
        res = simulate(scenario, placement, routing, seed=seed, overrides=list(overrides),
                       allocation_delays={"default": delay_s, "petals": delay_s, "proposed": delay_s})
    except (DistLLMError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    s = res.summary
    out = {k: float(s[k]) for k in ("mean_per_token_time_s", "goodput_requests_per_s")}
    if not s["num_completed"]:                      # nothing completed: goodput 0 (benchmarks/churn.py)
        out["goodput_requests_per_s"] = 0.0
    out["num_rejected"] = int(s["num_rejected"])
    out["num_rebalance_moves"] = int(s.get("num_rebalance_moves", 0))
    if bound:
        out["bound_s"] = zero_wait_bound_s(res, delay_s)
    return out


def run_all(specs: list[tuple], workers: int) -> list:
    if workers <= 1:
        return [run_job(s) for s in specs]
    try:
        from distllm_env.parallel import map_seeds
    except ImportError:
        map_seeds = None
    fn = run_job
    if __name__ == "__main__":      # spawned workers import this file by name (its folder is on sys.path)
        import headroom

        fn = headroom.run_job
    if map_seeds is not None:
        return list(map_seeds(fn, specs, workers))
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, specs, chunksize=4))


# --------------------------------------------------------------------------------------------------
# the plan: entries → jobs → rows
# --------------------------------------------------------------------------------------------------

def plan(args) -> list[dict]:
    """Every entry: env id, setting, metric, and per candidate label the job spec of each seed."""
    seeds = list(range(HELD_OUT, HELD_OUT + args.seeds))
    train = list(range(args.train_seeds))
    base_ov = ([f"workload.num_requests={args.num_requests}"] if args.num_requests else []) + list(args.set)
    d = args.allocation_delay_s
    entries = []
    settings = [(p, base_ov, "preset load") for p in ROUTING_PRESETS]
    settings += [(p, base_ov + ["workload.arrival_rate_per_s=4"], "λ = 4") for p in LOADED]
    want = set(args.families)
    if "routing" in want:
        look = registered("routing", "lookahead")
        for preset, ov, label in settings:
            if args.presets and preset not in args.presets:
                continue
            cands = {f"cg-bp+{r}": {s: ("sim", preset, tuple(ov), None, r, s, d, False) for s in seeds}
                     for r in ("ws-rr-load", "opt-rr", "petals")}
            subset = {}
            if look and (preset not in LIVE or preset in args.lookahead_live):
                # lookahead costs ≈ 70 ms per decision on the live engine: there only the first seeds
                few = seeds if preset not in LIVE else seeds[:args.lookahead_seeds]
                cands["cg-bp+lookahead"] = {s: ("sim", preset, tuple(ov), None, "lookahead", s, d, False) for s in few}
                if few != seeds:
                    subset["cg-bp+lookahead"] = few
            entries.append({"family": "routing", "env_id": f"distllm/RequestRouting-{camel(preset)}-v0",
                            "scenario": preset, "setting": label, "metric": "mean_per_token_time_s",
                            "lower_is_better": True, "baseline": "cg-bp+ws-rr", "subset": subset,
                            "jobs": {"cg-bp+ws-rr": {s: ("sim", preset, tuple(ov), None, "ws-rr", s, d, True)
                                                     for s in seeds}, **cands}})
    if "placement" in want:
        sweep = SESSIONS_QUICK if args.quick else SESSIONS
        for preset, ov, label in settings:
            if args.presets and preset not in args.presets:
                continue
            jobs = {"cg-bp": {s: ("sim", preset, tuple(ov), "cg-bp", "ws-rr", s, d, False) for s in seeds}}
            for R in sweep:
                ovr = tuple(ov) + (f"policy_defaults.options.cg-bp.sessions={R}",)
                jobs[f"|R|={R}"] = {s: ("sim", preset, ovr, "cg-bp", "ws-rr", s, d, False) for s in train + seeds}
            if registered("placement", "cg-bp-tuned") and preset not in LIVE:   # it re-tunes per seed: costly live
                jobs["cg-bp-tuned"] = {s: ("sim", preset, tuple(ov), "cg-bp-tuned", "ws-rr", s, d, False)
                                       for s in seeds}
            entries.append({"family": "placement", "env_id": f"distllm/BlockPlacement-{camel(preset)}-v0",
                            "scenario": preset, "setting": label, "metric": "mean_per_token_time_s",
                            "lower_is_better": True, "baseline": "cg-bp", "jobs": jobs,
                            "train_seeds": train, "sweep": list(sweep)})
    if "split" in want:
        n = args.num_requests or None
        for preset in SPLIT_PRESETS:
            if args.presets and preset not in args.presets:
                continue
            entries.append({"family": "split", "env_id": f"distllm/ClientSplit-{camel(preset)}-v0",
                            "scenario": preset, "setting": "preset", "metric": "server_work_reduction_total",
                            "lower_is_better": False, "baseline": "dp",
                            "jobs": {"split": {s: ("split", preset, s, n) for s in seeds}}})
    if "churn" in want:
        for preset in CHURN_PRESETS:
            if args.presets and preset not in args.presets:
                continue
            jobs = {label: {s: ("sim", preset, tuple(base_ov + ([REBALANCE] if reb else [])), rule, "ws-rr", s, d,
                                False) for s in seeds}
                    for label, (rule, reb) in CHURN_POLICIES.items()}
            entries.append({"family": "churn", "env_id": f"distllm/SwarmPlacement-{camel(preset)}-v0",
                            "scenario": preset, "setting": "preset churn", "metric": "goodput_requests_per_s",
                            "lower_is_better": False, "baseline": "petals rule + rebalancing", "jobs": jobs})
    return entries


def _mean(results: dict, seeds, key: str) -> float:
    vals = [results[s][key] for s in seeds if results.get(s) and key in results[s]]
    return float(np.mean(vals)) if len(vals) == len(seeds) else math.nan


def _mean_completed(results: dict, seeds, key: str) -> tuple[float, int]:
    """(mean of ``key`` over the seeds whose run completed something, number of seeds whose run
    completed nothing).  A run that completed no request has a NaN per-token time (docs/contracts.md
    §6): it is left out of the mean and counted instead, so one such seed does not hide the others."""
    vals = [results[s][key] for s in seeds if results.get(s) and key in results[s]]
    done = [v for v in vals if math.isfinite(v)]
    return (float(np.mean(done)) if done else math.nan), len(vals) - len(done)


def _gain(nl: float, oracle: float, low: bool) -> float:
    return (nl - oracle) / nl if low else (oracle - nl) / nl


def beyond_non_learned(entry: dict, means: dict, rejected: dict, subset: dict, cap: float) -> dict:
    """How much the best oracle of the entry's family (:data:`ORACLES`) gains over the best
    non-learned policy (every other candidate that rejects no more than the baseline): ``pct`` =
    (best non-learned − oracle) / best non-learned for per-token time, (oracle − best non-learned) /
    best non-learned for goodput and work saved; negative when the oracle is worse.  An oracle run on
    a subset of the seeds (lookahead on the live presets) is compared paired on those seeds.  ``pct``
    is NaN, with a ``note``, when no oracle ran."""
    low, fam = entry["lower_is_better"], entry["family"]
    if fam == "split":              # the DP is exact (arXiv 2410.10759): no policy beats it
        return {"oracle": "dp", "non_learned": "dp", "pct": 0.0, "note": "DP exact"}
    for oracle in ORACLES[fam]:
        if oracle in subset:
            sub = subset[oracle]
            pool, seeds = {k: v for k, v in sub.items() if k not in ("seeds", oracle)}, sub["seeds"]
            value = sub[oracle]
        elif oracle in means:
            pool = {k: v for k, v in means.items() if k != oracle and rejected.get(k, math.inf) <= cap}
            seeds, value = None, means[oracle]
            if rejected.get(oracle, math.inf) > cap:
                return {"oracle": oracle, "pct": math.nan, "note": "oracle rejects more than the baseline"}
        else:
            continue
        pool = {k: v for k, v in pool.items() if math.isfinite(v)}
        if not pool or not math.isfinite(value):
            return {"oracle": oracle, "pct": math.nan, "note": "no finite mean"}
        nl = (min if low else max)(pool, key=pool.get)
        return {"oracle": oracle, "oracle_value": value, "non_learned": nl, "non_learned_value": pool[nl],
                "pct": 100.0 * _gain(pool[nl], value, low), "seeds": seeds}
    return {"oracle": None, "pct": math.nan, "note": "oracle not run"}


def assemble(entry: dict, res: dict, seeds: list[int]) -> dict:
    """Means over the held-out seeds, the best policy, the bound and the headroom of one entry."""
    key, low = entry["metric"], entry["lower_is_better"]
    means: dict[str, float] = {}
    rejected: dict[str, float] = {}
    extra: dict = {}
    cap = math.inf                  # the most rejections a "best" candidate may have (per-token metrics)
    if entry["family"] == "split":
        per = res["split"]
        for pol in ("dp", "prefix-greedy", "ratio-greedy"):
            means[pol] = float(np.mean([per[s][pol] for s in seeds]))
        best = "dp"          # exact: the DP solves the env's objective (arXiv 2410.10759)
    else:
        for label, few in entry.get("subset", {}).items():
            # paired on the seeds it ran: that label against every other one
            extra.setdefault("subset_means", {})[label] = {
                "seeds": few, **{lab: _mean(per, few, key) for lab, per in res.items() if not lab.startswith("|R|=")}}
        for label, per in res.items():
            if not label.startswith("|R|=") and label not in entry.get("subset", {}):
                means[label] = _mean(per, seeds, key)
                rejected[label] = _mean(per, seeds, "num_rejected")
        if entry["family"] == "placement":
            sweep = {label: per for label, per in res.items() if label.startswith("|R|=")}
            train = {lab: _mean(per, entry["train_seeds"], key) for lab, per in sweep.items()}
            ok = {lab: v for lab, v in train.items() if math.isfinite(v)}
            if ok:
                chosen = min(ok, key=ok.get)
                means[f"cg-bp {chosen} (tuned)"] = _mean(sweep[chosen], seeds, key)
                rejected[f"cg-bp {chosen} (tuned)"] = _mean(sweep[chosen], seeds, "num_rejected")
                extra["tuned_sessions"] = int(chosen[4:])
            oracle, base_per = [], res[entry["baseline"]]
            for s in seeds:            # per seed, the best |R| that rejects no more than the baseline
                cap = base_per[s]["num_rejected"] if base_per.get(s) else 0
                vals = [per[s][key] for per in sweep.values()
                        if per.get(s) and math.isfinite(per[s][key]) and per[s]["num_rejected"] <= cap]
                oracle.append(min(vals) if vals else math.nan)
            means["oracle |R| per seed"] = float(np.mean(oracle))
            rejected["oracle |R| per seed"] = rejected[entry["baseline"]]
            extra["sweep_means_s"] = {lab: _mean(per, seeds, key) for lab, per in sweep.items()}
        # a policy that rejects more requests than the baseline is not "better" on the completed ones
        # (goodput already counts rejections against a policy)
        cap = rejected[entry["baseline"]] + 1e-9 if low else math.inf
        finite = {k: v for k, v in means.items() if math.isfinite(v) and rejected.get(k, math.inf) <= cap}
        best = (min if low else max)(finite, key=finite.get) if finite else entry["baseline"]
    beyond = beyond_non_learned(entry, means, rejected, extra.get("subset_means", {}), cap)
    base = means[entry["baseline"]]
    headroom = (base - means[best]) / base if low else (means[best] - base) / base
    row = {"env_id": entry["env_id"], "scenario": entry["scenario"], "setting": entry["setting"],
           "metric": key, "baseline": entry["baseline"], "baseline_value": base, "best": best,
           "best_value": means[best], "headroom_pct": 100.0 * headroom, "beyond_non_learned": beyond, "means": means,
           **extra}
    if entry["family"] == "routing":
        row["lower_bound"] = _mean(res[entry["baseline"]], seeds, "bound_s")
        row["bound_gap_pct"] = 100.0 * (base - row["lower_bound"]) / base
    if rejected:
        row["rejected"] = rejected
    if entry["family"] == "churn":
        # per-token time over the seeds that completed something; the others are counted
        pt = {lab: _mean_completed(per, seeds, "mean_per_token_time_s") for lab, per in res.items()}
        row["per_token"] = {lab: v[0] for lab, v in pt.items()}
        row["per_token_seeds_none_completed"] = {lab: v[1] for lab, v in pt.items()}
        row["rebalance_moves"] = {lab: _mean(per, seeds, "num_rebalance_moves") for lab, per in res.items()}
    row["sanity_task"] = bool(row["headroom_pct"] < SANITY_PCT)
    return row


def report(args) -> dict:
    seeds = list(range(HELD_OUT, HELD_OUT + args.seeds))
    entries = plan(args)
    flat = [(i, label, s, spec) for i, e in enumerate(entries) for label, per in e["jobs"].items()
            for s, spec in per.items()]
    t0, c0 = time.perf_counter(), time.process_time()
    outs = run_all([f[3] for f in flat], args.workers)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    results: list[dict] = [{} for _ in entries]
    failed: list[dict] = [{} for _ in entries]
    for (i, label, s, _), out in zip(flat, outs):
        ok = out is not None and "error" not in out
        results[i].setdefault(label, {})[s] = out if ok else None
        if not ok:              # e.g. CG-BP infeasible for that |R|: that label has no mean
            failed[i].setdefault(label, (out or {}).get("error", "failed"))
    rows = [{**assemble(e, r, seeds), "failed": f} for e, r, f in zip(entries, results, failed)]
    import distllm_env

    return {"version": distllm_env.__version__, "date": datetime.date.today().isoformat(),
            "argv": list(args.argv), "seeds": seeds, "allocation_delay_s": args.allocation_delay_s,
            "num_requests": args.num_requests or "preset", "set": list(args.set),
            "lookahead": registered("routing", "lookahead"),
            "cg_bp_tuned": registered("placement", "cg-bp-tuned"), "simulations": len(flat),
            "wall_s": wall, "main_cpu_s": cpu, "rows": rows}


def fmt(v: float, metric: str) -> str:
    if not math.isfinite(v):
        return "—"
    return f"{v:.1%}" if metric == "server_work_reduction_total" else f"{v:.4f}"


def fmt_beyond(b: dict) -> str:
    """The "beyond best non-learned" cell: the oracle's gain in % (negative: the oracle is worse)."""
    if not math.isfinite(b["pct"]):
        return b.get("note", "—")
    pct = "0.0 %" if abs(b["pct"]) < 0.05 else f"{b['pct']:+.1f} %"
    if b.get("note"):
        return f"{pct} ({b['note']})"
    seeds = b.get("seeds")
    on = f", seeds {seeds[0]}…{seeds[-1]}" if seeds else ""
    return f"{pct} ({b['oracle']}{on})".replace("|", "\\|")      # a Markdown table cell


def text(rep: dict) -> str:
    head = (f"distllm-env {rep['version']}, {rep['date']}: seeds {rep['seeds'][0]}…{rep['seeds'][-1]}, "
            f"equal allocation delay {rep['allocation_delay_s']:g} s, requests {rep['num_requests']}, "
            f"{'--set ' + ' '.join(rep['set']) + ', ' if rep['set'] else ''}"
            f"lookahead {'on' if rep['lookahead'] else 'not registered'}, cg-bp-tuned "
            f"{'on' if rep['cg_bp_tuned'] else 'not registered'}; {rep['simulations']} runs in {rep['wall_s']:.0f} s")
    lines = [head, "", "| env id | setting | metric | baseline | best | lower bound | headroom "
             "| beyond best non-learned | task |", "|---|---|---|---|---|---|---|---|---|"]
    unit = {"mean_per_token_time_s": "per-token s", "goodput_requests_per_s": "goodput req/s",
            "server_work_reduction_total": "work saved"}
    for r in rep["rows"]:
        m = r["metric"]
        bound = fmt(r["lower_bound"], m) if "lower_bound" in r else "—"
        lines.append(f"| `{r['env_id']}` | {r['setting']} | {unit[m]} | {r['baseline']} {fmt(r['baseline_value'], m)} "
                     f"| {r['best']} {fmt(r['best_value'], m)} | {bound} | {r['headroom_pct']:.1f} % "
                     f"| {fmt_beyond(r['beyond_non_learned'])} | {'sanity' if r['sanity_task'] else 'research'} |")
    lines.append("")
    for r in rep["rows"]:
        m = r["metric"]
        parts = ", ".join(f"{k} {fmt(v, m)}" for k, v in r["means"].items())
        lines.append(f"{r['env_id']} ({r['setting']}): {parts}")
        b = r["beyond_non_learned"]
        if b.get("non_learned") and b.get("note") is None:
            lines.append(f"    beyond best non-learned: {b['oracle']} {fmt(b['oracle_value'], m)} against "
                         f"{b['non_learned']} {fmt(b['non_learned_value'], m)}")
        if "per_token" in r:
            none = r.get("per_token_seeds_none_completed", {})
            lines.append("    per-token s (mean over the seeds that completed something): " + ", ".join(
                f"{k} {fmt(v, 'x')}" + (f" ({none[k]} of {len(rep['seeds'])} seeds completed nothing)"
                                        if none.get(k) else "") for k, v in r["per_token"].items()))
            lines.append("    rebalance moves: " + ", ".join(f"{k} {v:.1f}" for k, v in r["rebalance_moves"].items()))
        if "rejected" in r and any(v for v in r["rejected"].values() if math.isfinite(v)):
            lines.append("    rejected: " + ", ".join(f"{k} {v:.1f}" for k, v in r["rejected"].items()))
        for label, sub in r.get("subset_means", {}).items():
            few = sub["seeds"]
            lines.append(f"    {label} on seeds {few[0]}…{few[-1]} only, paired: " + ", ".join(
                f"{k} {fmt(v, m)}" for k, v in sub.items() if k != "seeds"))
        if "sweep_means_s" in r:
            lines.append("    sweep: " + ", ".join(f"{k} {fmt(v, m)}" for k, v in r["sweep_means_s"].items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 seeds, 20 requests, a short |R| sweep (smoke run)")
    ap.add_argument("--seeds", type=int, default=None, help="held-out seeds 10000… (default 10; --quick 2)")
    ap.add_argument("--train-seeds", type=int, default=None, help="|R| tuning seeds 0… (default 3; --quick 1)")
    ap.add_argument("--num-requests", type=int, default=None,
                    help="override every workload (default: preset; --quick 20)")
    ap.add_argument("--families", default=",".join(FAMILIES), help=f"comma list of {', '.join(FAMILIES)}")
    ap.add_argument("--presets", default="", help="comma list of presets to keep (default: all)")
    ap.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                    help="extra scenario override for every run (repeatable; e.g. a trace window)")
    ap.add_argument("--allocation-delay-s", type=float, default=0.0, help="one delay charged to every policy (s)")
    ap.add_argument("--lookahead-live", default="azure-conv-swarm",
                    help="live-engine presets that also run lookahead (comma list; default azure-conv-swarm)")
    ap.add_argument("--lookahead-seeds", type=int, default=3,
                    help="held-out seeds of lookahead on live-engine presets (default 3)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--format", choices=("text", "json"), default="text")
    ap.add_argument("--out", default=None, help="also write the JSON report to this file")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.seeds = args.seeds or (2 if args.quick else 10)
    args.train_seeds = args.train_seeds or (1 if args.quick else 3)
    args.num_requests = args.num_requests or (20 if args.quick else None)
    args.families = [f.strip() for f in args.families.split(",") if f.strip()]
    args.presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    args.lookahead_live = [p.strip() for p in args.lookahead_live.split(",") if p.strip()]
    bad = [f for f in args.families if f not in FAMILIES]
    if bad:
        ap.error(f"unknown families {bad}; expected {list(FAMILIES)}")
    if args.seeds < 1 or args.train_seeds < 1 or args.workers < 1 or args.allocation_delay_s < 0:
        ap.error("--seeds, --train-seeds and --workers must be ≥ 1, --allocation-delay-s ≥ 0")
    rep = report(args)
    from distllm_env.outputs import json_safe

    blob = json.dumps(json_safe(rep), indent=2, allow_nan=False)
    if args.out:
        Path(args.out).write_text(blob + "\n")
    print(blob if args.format == "json" else text(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
