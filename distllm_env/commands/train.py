"""``distllm-env train``: train an agent on a ``distllm/*`` environment (docs/agents.md).

    distllm-env train --env distllm/RequestRouting-v0 --scenario paper-gtsce --algo maskable_ppo \\
        --timesteps 200000 --out models/routing.zip

writes ``models/routing.zip`` and the sidecar ``models/routing.json`` (docs/contracts.md §5).

    distllm-env train --zoo NAME              (or --recipe zoo/NAME, or --recipe my_recipe.yml)

trains exactly the zoo recipe ``NAME`` (docs/agents.md "The agent zoo") and writes ``NAME.zip`` (into ``--zoo-dir`` when given, else here; or
``--out``) with its sidecar; options that would change what is learned are refused with a recipe.  SB3 and torch
are imported only when the command runs.  ``--backend rllib`` trains with Ray RLlib instead
(``pip install 'distllm-env[rllib]'``).
"""

from __future__ import annotations

import argparse
import sys

from ..errors import ScenarioError
from .common import add_format_arg, print_json


def register(sub) -> None:
    p = sub.add_parser("train", help="train an RL agent (SB3 / sb3-contrib, or Ray RLlib)",
                       description="Train PPO, MaskablePPO, A2C or DQN on a distllm/* environment with hyper-parameters "
                                   "from agents/<algo>.yml (RL-Zoo format). Training uses scenario seeds below 10000.")
    p.add_argument("--env", default=None, help="environment id, e.g. distllm/RequestRouting-v0 (required without "
                                               "--recipe/--zoo)")
    rec = p.add_mutually_exclusive_group()
    rec.add_argument("--recipe", default=None, metavar="zoo/NAME|FILE.yml",
                     help="train exactly a zoo recipe: a zoo name (NAME or zoo/NAME) or a recipe file")
    rec.add_argument("--zoo", default=None, metavar="NAME", help="same as --recipe zoo/NAME")
    p.add_argument("--zoo-dir", default=None, metavar="DIR",
                   help="zoo directory searched before $DISTLLM_ENV_ZOO_DIR and the shipped zoo; with --zoo/--recipe "
                        "and no --out, NAME.zip and NAME.json are written into it")
    p.add_argument("--scenario", default=None, help="preset name or YAML path (default: the id's own scenario)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override a scenario field (repeatable)")
    p.add_argument("--algo", default=None, choices=("ppo", "maskable_ppo", "a2c", "dqn"),
                   help="algorithm (default maskable_ppo)")
    p.add_argument("--timesteps", type=int, default=None,
                   help="environment steps (default: the YAML's n_timesteps); PPO, MaskablePPO and A2C round it up to "
                        "whole rollouts of n_steps × n_envs")
    p.add_argument("--out", default=None, metavar="PATH.zip",
                   help="model file (.zip); the sidecar PATH.json is written next to it (rllib: a checkpoint directory "
                        "PATH without .zip); missing parent folders are created (default with a recipe: NAME.zip in "
                        "--zoo-dir when given, else in the working directory)")
    p.add_argument("--seed", type=int, default=None, help="training seed in [0, 10000) (default 0)")
    p.add_argument("--conf-file", default=None, help="hyper-parameter YAML (default: the shipped agents/<algo>.yml)")
    p.add_argument("--hyperparams", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override hyper-parameters of the YAML entry, e.g. n_steps=128 learning_rate=1e-4")
    p.add_argument("--env-config", nargs="*", default=[], metavar="KEY=VALUE",
                   help="env config entries, e.g. K=16 placement=cg-bp")
    p.add_argument("--n-envs", type=int, default=None, help="number of parallel envs (default: the YAML's n_envs)")
    p.add_argument("--vec-env", choices=("dummy", "subproc"), default="dummy",
                   help="SB3 vector env: dummy (one process) or subproc (one process per env)")
    p.add_argument("--tensorboard", default=None, metavar="DIR", help="write TensorBoard logs to DIR (needs tensorboard)")
    p.add_argument("--checkpoint-freq", type=int, default=0, metavar="STEPS",
                   help="save a checkpoint every STEPS environment steps (0: off)")
    p.add_argument("--eval-freq", type=int, default=0, metavar="STEPS",
                   help="every STEPS steps, a mask-aware evaluation on the fixed validation seeds 9000 … "
                        "9000+N-1 (N = --eval-episodes); the best model is saved with a sidecar in PATH_eval/ (0: off)")
    p.add_argument("--eval-episodes", type=int, default=5, metavar="N", help="validation episodes (default 5)")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS", help="stop training after SECONDS")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--backend", choices=("sb3", "rllib"), default="sb3", help="training back-end (default sb3)")
    p.add_argument("--num-env-runners", type=int, default=0,
                   help="rllib: number of EnvRunner actors (0: sample in the driver)")
    p.add_argument("--ray-address", default=None,
                   help="rllib: address of an existing Ray cluster (auto, HOST:PORT, or ray://HOST:10001 with the "
                        "ray[client] extra; docs/agents.md); default: RAY_ADDRESS if set, else a new local Ray (never "
                        "a 'ray start' cluster of this machine)")
    p.add_argument("--num-cpus", type=int, default=None,
                   help="rllib: CPUs of the local Ray instance (refused with an existing cluster)")
    p.add_argument("-v", "--verbose", type=int, default=0, help="SB3 verbosity (0, 1, 2)")
    p.add_argument("--allow-import", dest="allow_import", action="store_true",
                   help="allow the scenario's policy_defaults, and the hyper-parameter YAML's env_wrapper/policy, to "
                        "name classes outside the allow-lists (imports run code: only for files you trust)")
    add_format_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``distllm-env train``; returns the exit code.

    Raises:
        ScenarioError: ``--timesteps`` < 1, or a bad env id, scenario, hyper-parameter or option (the
            CLI prints one line and exits 2)."""
    from ..agents.hyperparams import parse_assignments

    if args.recipe or args.zoo:
        return _run_recipe(args)
    if args.env is None:
        raise ScenarioError("--env", "required (or train a zoo recipe with --zoo NAME / --recipe FILE.yml)")
    if args.out is None:
        raise ScenarioError("--out", "required: the model file PATH.zip to write")
    args.algo = args.algo or "maskable_ppo"
    args.seed = 0 if args.seed is None else args.seed
    hyper = parse_assignments(args.hyperparams, "--hyperparams")
    env_config = parse_assignments(args.env_config, "--env-config")
    if args.allow_import:
        env_config["allow_imports"] = True
    if args.timesteps is not None and args.timesteps < 1:
        raise ScenarioError("--timesteps", f"expected ≥ 1, got {args.timesteps}")
    if args.backend == "rllib":
        from ..agents.rllib import train_rllib

        res = train_rllib(args.env, args.scenario, args.algo, args.timesteps, args.out, seed=args.seed,
                          overrides=args.overrides, env_config=env_config, hyperparams_path=args.conf_file,
                          hyperparams=hyper, num_env_runners=args.num_env_runners, address=args.ray_address,
                          num_cpus=args.num_cpus, verbose=args.verbose, allow_imports=args.allow_import)
    else:
        from ..agents.train import train

        res = train(args.env, args.scenario, args.algo, args.timesteps, args.out, seed=args.seed,
                    overrides=args.overrides, env_config=env_config, hyperparams_path=args.conf_file,
                    hyperparams=hyper, n_envs=args.n_envs, vec_env=args.vec_env, progress_bar=not args.no_progress,
                    tensorboard_log=args.tensorboard, checkpoint_freq=args.checkpoint_freq, eval_freq=args.eval_freq,
                    eval_episodes=args.eval_episodes, num_threads=args.threads, verbose=args.verbose,
                    time_limit_s=args.time_limit, allow_imports=args.allow_import)
    return _report(args, res)


#: options a recipe fixes (refused with --recipe/--zoo), with their "not given" values
_RECIPE_FIXED = {"env": None, "scenario": None, "overrides": [], "algo": None, "timesteps": None, "seed": None,
                 "conf_file": None, "hyperparams": [], "env_config": [], "n_envs": None}


def _run_recipe(args: argparse.Namespace) -> int:
    given = [k for k, empty in _RECIPE_FIXED.items() if getattr(args, k) != empty]
    if given:
        flag = "--" + given[0].replace("_", "-").replace("overrides", "set")
        raise ScenarioError(flag, "a recipe fixes the env, scenario, algorithm, seed, timesteps and hyper-parameters; "
                                  "edit a copy of the recipe and pass --recipe FILE.yml instead")
    if args.backend != "sb3":
        raise ScenarioError("--backend", "zoo recipes train with the sb3 back-end")
    from ..agents.train import train_recipe
    from ..agents.zoo import find_recipe

    spec = args.recipe if args.recipe else f"zoo/{args.zoo}"
    rec = find_recipe(spec, args.zoo_dir, "--recipe" if args.recipe else "--zoo")
    res = train_recipe(rec, args.out, zoo_dir=args.zoo_dir, vec_env=args.vec_env, progress_bar=not args.no_progress,
                       tensorboard_log=args.tensorboard, checkpoint_freq=args.checkpoint_freq,
                       eval_freq=args.eval_freq, eval_episodes=args.eval_episodes, num_threads=args.threads,
                       verbose=args.verbose, time_limit_s=args.time_limit, allow_imports=args.allow_import)
    return _report(args, res)


def _steps_text(res) -> str:
    """``N steps``, saying why N differs from the steps asked for: stopped by ``--time-limit``, or
    rounded up to whole rollouts (``n_steps`` × ``n_envs``) by an on-policy algorithm."""
    done, asked = int(res.timesteps), int(getattr(res, "requested_timesteps", 0) or 0)
    if getattr(res, "stopped_by_time_limit", False):
        return f"(stopped by time limit after {done} of {asked} steps)"
    rollout = getattr(res, "rollout_steps", None)
    if asked and done > asked and rollout:
        return f"for {done} steps ({asked} asked, rounded up to whole rollouts of n_steps × n_envs = {rollout} steps)"
    return f"for {done} steps"


def _report(args: argparse.Namespace, res) -> int:
    summary = {"model": str(res.model_path), "sidecar": str(res.sidecar_path), "env_id": res.sidecar["env_id"],
               "algo": res.sidecar["algo"], "backend": res.sidecar["backend"], "timesteps": res.timesteps,
               "training_time_s": round(res.training_time_s, 2), "scenario": res.sidecar.get("scenario_name"),
               "scenario_hash": res.sidecar.get("scenario_hash"), "seed": res.sidecar["seed"],
               "recipe": (res.sidecar.get("recipe") or {}).get("name"),
               "requested_timesteps": getattr(res, "requested_timesteps", None),
               "stopped_by_time_limit": getattr(res, "stopped_by_time_limit", False),
               "overwrote": getattr(res, "overwrote", False),
               "checkpoint_dir": str(res.checkpoint_dir) if getattr(res, "checkpoint_dir", None) else None,
               "best_model": str(res.best_model_path) if getattr(res, "best_model_path", None) else None}
    if args.format == "json":
        print_json(summary)
    else:
        print(f"trained {summary['algo']} ({summary['backend']}) on {summary['env_id']} / {summary['scenario']} "
              f"({summary['scenario_hash']}) {_steps_text(res)} in {summary['training_time_s']:.1f} s "
              f"(seed {summary['seed']})")
        print(f"{'overwrote' if getattr(res, 'overwrote', False) else 'wrote'} {summary['model']} and "
              f"{summary['sidecar']} (the model at the last step, not the best one)")
        if getattr(res, "checkpoint_dir", None):
            print(f"wrote checkpoints (each with its sidecar) in {res.checkpoint_dir}/")
        if getattr(res, "best_model_path", None):
            print(f"wrote the best model of the validation evaluations: {res.best_model_path} (with its sidecar)")
    sys.stdout.flush()
    return 0
