"""``distllm-env train``: train an agent on a ``distllm/*`` environment (docs/agents.md).

    distllm-env train --env distllm/RequestRouting-v0 --scenario paper-gtsce --algo maskable_ppo \\
        --timesteps 200000 --out models/routing.zip

writes ``models/routing.zip`` and the sidecar ``models/routing.json`` (docs/contracts.md §5).  SB3 and torch
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
    p.add_argument("--env", required=True, help="environment id, e.g. distllm/RequestRouting-v0")
    p.add_argument("--scenario", default=None, help="preset name or YAML path (default: the id's own scenario)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override a scenario field (repeatable)")
    p.add_argument("--algo", default="maskable_ppo", choices=("ppo", "maskable_ppo", "a2c", "dqn"),
                   help="algorithm (default maskable_ppo)")
    p.add_argument("--timesteps", type=int, default=None, help="environment steps (default: the YAML's n_timesteps)")
    p.add_argument("--out", required=True, metavar="PATH.zip",
                   help="model file (.zip); the sidecar PATH.json is written next to it (rllib: a checkpoint directory "
                        "PATH without .zip); missing parent folders are created")
    p.add_argument("--seed", type=int, default=0, help="training seed in [0, 10000) (default 0)")
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
                   help="mask-aware evaluation on validation seeds [9000, 10000) every STEPS steps (0: off)")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS", help="stop training after SECONDS")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--backend", choices=("sb3", "rllib"), default="sb3", help="training back-end (default sb3)")
    p.add_argument("--num-env-runners", type=int, default=0,
                   help="rllib: number of EnvRunner actors (0: sample in the driver)")
    p.add_argument("--ray-address", default=None,
                   help="rllib: address of an existing Ray cluster (e.g. auto or ray://host:10001); default: start a "
                        "local Ray, or use RAY_ADDRESS")
    p.add_argument("--num-cpus", type=int, default=None, help="rllib: CPUs of the local Ray instance")
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
                    num_threads=args.threads, verbose=args.verbose, time_limit_s=args.time_limit,
                    allow_imports=args.allow_import)
    summary = {"model": str(res.model_path), "sidecar": str(res.sidecar_path), "env_id": res.sidecar["env_id"],
               "algo": res.sidecar["algo"], "backend": res.sidecar["backend"], "timesteps": res.timesteps,
               "training_time_s": round(res.training_time_s, 2), "scenario": res.sidecar.get("scenario_name"),
               "scenario_hash": res.sidecar.get("scenario_hash"), "seed": res.sidecar["seed"]}
    if args.format == "json":
        print_json(summary)
    else:
        print(f"trained {summary['algo']} ({summary['backend']}) on {summary['env_id']} / {summary['scenario']} "
              f"({summary['scenario_hash']}) for {summary['timesteps']} steps in {summary['training_time_s']:.1f} s "
              f"(seed {summary['seed']})")
        print(f"wrote {summary['model']} and {summary['sidecar']}")
    sys.stdout.flush()
    return 0
