"""``distllm-env evaluate``: a trained model (or a user's policy) against every baseline of its decision
on held-out seeds (docs/agents.md).

    distllm-env evaluate --model models/routing.zip --scenario paper-gtsce --seeds 20 --out eval.png

Seeds default to 10 000 … (training uses seeds below 10 000); allocation delays are equal for every
policy: 0 by default, ``--allocation-delays equal:S`` charges S to all (docs/contracts.md §4);
``--allocation-delays scenario`` charges the evaluated policy family ``default``'s delay and the baselines
their families' (a note under the table says that this is not a fair comparison).  A
baseline that cannot run on the scenario is shown as failed with its reason; the rest still runs.  The model's sidecar is read and a mismatched env or observation space
is refused (exit code 2).
"""

from __future__ import annotations

import argparse

from ..errors import ScenarioError
from ..parallel import add_parallel_args, parallel_from
from .compare import add_allocation_delays_arg, delays_line, short_status
from .common import (add_allow_import_arg, add_format_arg, add_results_out_arg, add_seeds_args, check_results_out, format_table,
                     print_json, seeds_from)

COLUMNS = ("policy", "mean_per_token_time_s", "mean_per_token_time_s_std", "ttft_p50_s", "ttft_p95_s", "wait_mean_s",
           "num_rejected", "algorithm_time_s", "allocation_delay_s", "status")


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a trained model or a user policy against the baselines",
                       description="Evaluate a model trained with 'distllm-env train' (or a policy given by import path) "
                                   "against every baseline of the same decision on held-out seeds (10000 and up), with "
                                   "equal allocation delays for all policies (0 unless --allocation-delays says otherwise).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="model file PATH.zip (its sidecar PATH.json is read; a plain SB3 zip without one "
                                     "needs --env), an RLlib checkpoint dir, or zoo:NAME (distllm-env zoo list)")
    src.add_argument("--policy", help="a user policy module:Class with place(instance, rng) and/or route(request, view, rng)")
    p.add_argument("--env", default=None, help="expected environment id (refused if the model's sidecar differs); "
                                               "for a plain SB3 zip without a sidecar, the id it was trained on")
    p.add_argument("--zoo-dir", default=None, metavar="DIR",
                   help="zoo directory searched (for --model zoo:NAME) before $DISTLLM_ENV_ZOO_DIR and the shipped zoo")
    p.add_argument("--wrapper", dest="wrappers", action="append", default=None, metavar="module.Class",
                   help="for a plain SB3 zip without a sidecar (with --env): a wrapper it was trained behind, applied "
                        "in order (repeatable; e.g. gymnasium.wrappers.FlattenObservation); default: the first of the "
                        "candidate lists that fits (docs/agents.md \"Plain SB3 models\")")
    p.add_argument("--scenario", default=None, help="preset or YAML path (default: the model's training scenario)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override a scenario field (repeatable)")
    add_allow_import_arg(p)
    add_seeds_args(p, default_base=10_000, default_n=5)
    p.add_argument("--policies", default=None,
                   help="comma-separated baselines (router or placement names, or full compare specs), replacing the "
                        "default list (every baseline of the decision); +NAME adds NAME to the list instead (e.g. "
                        "--policies +milp: the defaults and milp)")
    add_results_out_arg(p, ".png (paired per-seed differences against the evaluated policy), .json (meta, results, "
                           "margins, per_seed) or .csv (results; the rest in the sidecar F.csv.json)")
    add_allocation_delays_arg(p)
    add_parallel_args(p)
    add_format_arg(p)
    p.set_defaults(func=run)


def _model_arg(args: argparse.Namespace):
    """``--model`` resolved with ``--zoo-dir`` (a path), or a LearnedModel when ``--wrapper`` names the
    wrappers of a plain zip."""
    if args.model is None:
        if args.wrappers:
            raise ScenarioError("--wrapper", "only with --model (a plain SB3 zip) and --env")
        return None
    from ..agents.zoo import resolve_model

    path = resolve_model(args.model, args.zoo_dir, "--model")
    if not args.wrappers:
        return str(path)
    if args.env is None:
        raise ScenarioError("--wrapper", "needs --env ID (the env the plain zip was trained on)")
    from ..agents.learned import LearnedModel

    return LearnedModel(path, env_id=args.env, scenario=args.scenario, overrides=args.overrides,
                        wrappers=args.wrappers, allow_imports=args.allow_import)


def run(args: argparse.Namespace) -> int:
    check_results_out(args.out)
    from ..agents.evaluate import evaluate, write_outputs

    if args.model:
        from ..agents.train import set_torch_threads

        set_torch_threads(1)    # as train --threads 1: torch's default threads slow small MLPs (docs/agents.md)
    from ..compare import parse_allocation_delays

    policies = [s.strip() for s in args.policies.split(",") if s.strip()] if args.policies else None
    try:
        model = _model_arg(args)
        res = evaluate(model, args.scenario, seeds_from(args), policy=args.policy, overrides=args.overrides,
                       policies=policies, env_id=args.env, allow_imports=args.allow_import,
                       allocation_delays=parse_allocation_delays(args.allocation_delays), **parallel_from(args))
    except ScenarioError as exc:   # the Python API's field names ('model', 'wrappers') as the CLI's flags
        flag = {"model": "--model", "wrappers": "--wrapper"}.get(exc.path.split(".")[0])
        if flag is None:
            raise
        raise type(exc)(flag + exc.path[len(exc.path.split(".")[0]):], exc.detail) from None
    written = write_outputs(res, args.out)
    if args.format == "json":
        print_json(res.to_dict())
        return 0
    m = res.compare.meta
    print(f"scenario {m['scenario']} (hash {m['scenario_hash']}), seeds {res.compare.seeds[0]}…{res.compare.seeds[-1]}, "
          + delays_line(m))
    if res.model:
        print(f"model {res.model['model']}: {res.model['algo']} on {res.model['env_id']}, trained on "
              f"{res.model.get('scenario')} for {res.model.get('timesteps')} steps")
    print(format_table(short_status(res.compare.results), COLUMNS))
    print()
    rows = [{"baseline": r["baseline"], "reduction": f"{r['reduction']:+.1%}" if r["status"] == "ok" else "failed",
             "policy_s": r["learned_mean_s"], "baseline_s": r["baseline_mean_s"], "seeds_won": r["seeds_won"],
             "seeds_tied": r["seeds_tied"]}
            for r in res.margins]
    print(f"{res.policy_label} vs each baseline (reduction = 1 − policy/baseline mean per-token time; positive = faster):")
    print(format_table(rows))
    for n in res.notes:
        print(f"note: {n}")
    for w in written:
        print(f"wrote {w}")
    return 0
