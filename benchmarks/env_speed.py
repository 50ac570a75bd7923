"""Steps per second of every ``distllm/*`` environment id (docs/envs.md, "Speed").

Each id is stepped with a masked-random policy (uniform over ``info["action_mask"]``) for about
``--seconds`` seconds of wall time, resetting with seeds 0, 1, 2, … at the end of each episode, so
the rate includes the resets an RL run pays.  Reported per id: steps/s, mean reset time, mean step
time, episodes.  Targets (issue 5): RequestRouting on paper-clustered ≥ 2,000 steps/s and on
paper-gtsce ≥ 200 steps/s; issue 13 item 7: RequestRouting on paper-clustered through the default
training wrapper ``RoutingFeatures`` ≥ 5,000 steps/s (the rows marked ``+RoutingFeatures``, measured
for every RequestRouting id in ``WRAPPED``).

    python benchmarks/env_speed.py                       # every registered id
    python benchmarks/env_speed.py --ids distllm/RequestRouting-PaperClustered-v0 --seconds 10
    python benchmarks/env_speed.py --json speed.json
    python benchmarks/env_speed.py --azure                # the Azure presets only (issue 11)
    python benchmarks/env_speed.py --wrapped-only         # only the +RoutingFeatures rows

Wall-clock numbers depend on the machine and on what else runs on it; re-run before quoting them.
The ``/cpu-s`` column (steps per second of this process's CPU time) is less sensitive to a shared
machine.  Every registered ``RequestRouting-Azure*`` id has the issue-11 target of 2,000 steps/s.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import gymnasium as gym
import numpy as np

import distllm_env
from distllm_env.envs import registered_ids

TARGETS = {
    "distllm/RequestRouting-PaperClustered-v0": 2000.0,
    "distllm/RequestRouting-PaperGtsce-v0": 200.0,
    "distllm/RequestRouting-AzureConvSwarm-v0": 2000.0,
    "distllm/RequestRouting-AzureCodeSwarm-v0": 2000.0,
    "distllm/RequestRouting-AzureConvSerial-v0": 2000.0,
}
#: targets of the rows stepped through :class:`~distllm_env.agents.wrappers.RoutingFeatures` (issue 13 item 7)
WRAPPED_TARGETS = {"distllm/RequestRouting-PaperClustered-v0": 5000.0}
#: the ids also measured through RoutingFeatures
WRAPPED = ("distllm/RequestRouting-PaperClustered-v0", "distllm/RequestRouting-AzureConvSwarm-v0",
           "distllm/RequestRouting-AzureConvSerial-v0", "distllm/RequestRouting-AzureCodeSwarm-v0")
WRAP_SUFFIX = " +RoutingFeatures"


def azure_ids() -> list[str]:
    """The RequestRouting ids of every registered Azure preset (whatever the presets are called now)."""
    return [k for k in registered_ids() if k.startswith("distllm/RequestRouting-Azure")]


def measure(env_id: str, seconds: float, seed0: int = 0, config: dict | None = None, wrapped: bool = False) -> dict:
    env = gym.make(env_id, disable_env_checker=True, **({"config": config} if config else {}))
    if wrapped:
        from distllm_env.agents.wrappers import RoutingFeatures

        env = RoutingFeatures(env)
    rng = np.random.default_rng(12345)
    # warm-up: imports, first placement, caches
    _, info = env.reset(seed=seed0)
    steps = episodes = 0
    reset_t = step_t = 0.0
    seed = seed0
    start = time.perf_counter()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    _, info = env.reset(seed=seed)
    reset_t += time.perf_counter() - t0
    while time.perf_counter() - start < seconds:
        a = int(rng.choice(np.flatnonzero(info["action_mask"])))
        t0 = time.perf_counter()
        _, _, terminated, truncated, info = env.step(a)
        step_t += time.perf_counter() - t0
        steps += 1
        if terminated or truncated:
            episodes += 1
            seed += 1
            t0 = time.perf_counter()
            _, info = env.reset(seed=seed)
            reset_t += time.perf_counter() - t0
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    env.close()
    return {"env_id": env_id + (WRAP_SUFFIX if wrapped else ""), "steps": steps, "episodes": episodes, "wall_s": wall, "cpu_s": cpu,
            "steps_per_s": steps / wall if wall > 0 else float("nan"),
            "steps_per_cpu_s": steps / cpu if cpu > 0 else float("nan"),
            "step_ms": 1e3 * step_t / max(steps, 1), "reset_ms": 1e3 * reset_t / (episodes + 1),
            "target_steps_per_s": (WRAPPED_TARGETS if wrapped else TARGETS).get(env_id)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ids", nargs="*", default=None, help="env ids (default: every registered distllm/* id)")
    ap.add_argument("--seconds", type=float, default=3.0, help="wall time per id (default 3)")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--azure", action="store_true", help="only the RequestRouting ids of the Azure presets")
    ap.add_argument("--wrapped-only", action="store_true", help="only the RoutingFeatures rows")
    args = ap.parse_args(argv)
    ids = args.ids or (azure_ids() if args.azure else registered_ids())
    runs = [] if args.wrapped_only else [(i, False) for i in ids]
    known = set(registered_ids())
    runs += [(i, True) for i in WRAPPED if i in known and (i in ids or (args.wrapped_only and not args.ids))]
    print(f"distllm-env {distllm_env.__version__}, gymnasium {gym.__version__}, numpy {np.__version__}, "
          f"Python {platform.python_version()} on {platform.machine()}; masked-random policy, "
          f"{args.seconds:g} s per id (resets included)")
    print(f"{'env id':64s} {'steps/s':>9s} {'/cpu-s':>8s} {'step ms':>8s} {'reset ms':>9s} {'episodes':>8s}  target")
    rows, failed = [], False
    for env_id, wrapped in runs:
        row = measure(env_id, args.seconds, wrapped=wrapped)
        rows.append(row)
        tgt = row["target_steps_per_s"] or (2000.0 if env_id.startswith("distllm/RequestRouting-Azure")
                                            and not wrapped else None)
        row["target_steps_per_s"] = tgt
        verdict = ""
        if tgt is not None:
            ok = row["steps_per_s"] >= tgt
            failed |= not ok
            verdict = f"≥ {tgt:g}: {'met' if ok else 'MISSED'}"
        print(f"{row['env_id']:64s} {row['steps_per_s']:9.0f} {row['steps_per_cpu_s']:8.0f} {row['step_ms']:8.3f} {row['reset_ms']:9.1f} "
              f"{row['episodes']:8d}  {verdict}")
        sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"version": distllm_env.__version__, "seconds_per_id": args.seconds, "rows": rows}, fh, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
