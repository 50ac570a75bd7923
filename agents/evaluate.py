"""Evaluating a trained model (or a user's policy) against the baselines of its decision
(``distllm-env evaluate``; docs/agents.md).

:func:`evaluate` runs the learned policy (:func:`~.learned.learned_policy`: a routing or placement
policy driven by the model) and every baseline of the same decision through
:func:`distllm_env.compare.compare` on paired held-out seeds (default 10 000 …), with **equal (zero)
allocation delays** for all policies (docs/contracts.md §4), and reports, per baseline, the relative
reduction of mean per-token time 1 − learned / baseline (positive = the learned policy is faster).

Baselines of a decision are paired with the rest of the model's env:

* RequestRouting: every registered router (``shortest``, ``petals``, ``ws-rr``, ``opt-rr``, ``rr-ilp``,
  ``random``, ``round-robin``) on the env's placement (the sidecar's ``config["placement"]``, else the
  scenario's default, i.e. CG-BP): specs ``PLACEMENT+ROUTER``;
* BlockPlacement: every registered placement except ``milp`` (it runs to its time limit, about a
  minute per seed; ask for it with ``policies=``) with the env's router (``config["router"]``, else
  WS-RR).  Baseline placements keep their own cache policy (PETALS its fixed pool); the learned
  placement uses the env's (``leftover`` by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..compare import CompareResult, compare, construct_policy
from ..errors import ScenarioError
from ..imports import load_object
from ..registry import PLACEMENT_POLICIES, ROUTING_POLICIES, default_placement, default_routing
from ..scenario import load_scenario
from .learned import LearnedModel, learned_policy
from .sidecar import ModelMismatchError
from .wrappers import EVAL_SEED_BASE

#: placement baselines left out by default (minutes per seed)
SLOW_PLACEMENTS = ("milp",)


@dataclass
class EvaluationResult:
    compare: CompareResult
    policy_label: str
    margins: list[dict]
    model: dict | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def meta(self) -> dict:
        return self.compare.meta | {"evaluated_policy": self.policy_label, "model": self.model, "notes": self.notes}

    def to_dict(self) -> dict:
        return {"meta": self.meta, "results": self.compare.results, "margins": self.margins,
                "per_seed": self.compare.per_seed}


def baseline_specs(decision: str, scenario, env_config: dict | None = None,
                   policies: Sequence[str] | None = None, allow_imports: bool = False) -> list[str]:
    """Compare specs of the baselines of ``decision`` paired with the env's other decision.

    ``policies`` narrows (or, with names outside the defaults such as ``milp``, extends) the list; an
    item containing ``+`` or ``:`` is used as a full compare spec.  ``allow_imports``: the scenario's
    ``policy_defaults`` may name a ``module:Class`` import path (as in
    :func:`distllm_env.compare.compare`).

    Raises:
        ScenarioError: ``decision`` is neither ``RequestRouting`` nor ``BlockPlacement`` (path
            ``--model``), or the scenario's default policy of the other decision is an import path
            and ``allow_imports`` is false (path ``policy_defaults.<kind>``)."""
    cfg = dict(env_config or {})
    if decision == "RequestRouting":
        other = cfg.get("placement") or default_placement(scenario, allow_imports=allow_imports)
        names = list(ROUTING_POLICIES)
        pair = lambda name: f"{other}+{name}"  # noqa: E731
    elif decision == "BlockPlacement":
        other = cfg.get("router") or default_routing(scenario, allow_imports=allow_imports)
        names = [n for n in PLACEMENT_POLICIES if n not in SLOW_PLACEMENTS]
        pair = lambda name: f"{name}+{other}"  # noqa: E731
    else:
        raise ScenarioError("--model", f"no simulator baselines for decision {decision!r}; evaluate ClientSplit "
                                       "models on the env (distllm_env.envs.policies.SplitEnvPolicy)")
    if policies:
        out = []
        for p in policies:
            out.append(p if ("+" in p or ":" in p) else pair(p))
        return out
    return [pair(n) for n in names]


def _user_policy(spec: Any):
    # place/route checked on the class before it is constructed (an imported non-policy never runs)
    return construct_policy(load_object(spec) if isinstance(spec, str) else spec, spec)


def evaluate(model: "str | Path | LearnedModel | None" = None, scenario: Any = None, seeds: Sequence[int] | None = None,
             *, policy: Any = None, overrides: Sequence[str] = (), policies: Sequence[str] | None = None,
             env_id: str | None = None, decision: str | None = None,
             allow_imports: bool = False) -> EvaluationResult:
    """Evaluate a trained ``model`` (or a user ``policy``: ``module:Class`` or an object with ``place``
    and/or ``route``) against the baselines of its decision on ``scenario`` + ``overrides`` (None: the
    model's training scenario) over ``seeds`` (default 10 000 … 10 004), all allocation delays 0.

    ``env_id``: when given, the model's sidecar must name the same id.  ``allow_imports=True`` (CLI
    ``--allow-import``) lets the scenario's ``policy_defaults.placement/routing`` be a
    ``module:Class`` import path, as for :func:`distllm_env.compare.compare`; otherwise such a
    scenario is refused.

    Raises:
        ScenarioError: both or neither of ``model`` and ``policy``; no seeds; ``policy`` without a
            ``scenario``; a bad scenario or override (:func:`distllm_env.load_scenario`); an import
            path in the scenario's ``policy_defaults`` without ``allow_imports``.
        ModelMismatchError: ``env_id`` differs from the model's, or the model's observation/action
            space does not fit ``scenario``.
        PolicyLoadError: ``policy`` cannot be imported or constructed without arguments, or has
            neither ``place`` nor ``route``."""
    if (model is None) == (policy is None):
        raise ScenarioError("--model", "give exactly one of a model (--model PATH) or a policy (--policy module:Class)")
    seeds = list(range(EVAL_SEED_BASE, EVAL_SEED_BASE + 5)) if seeds is None else [int(s) for s in seeds]
    if not seeds:
        raise ScenarioError("--seeds", "expected at least one seed")
    notes: list[str] = []
    model_info = None
    env_config: dict = {}
    if model is not None:
        lm = model if isinstance(model, LearnedModel) else LearnedModel(model)
        if env_id is not None:
            from .envs import check_env_id

            if check_env_id(env_id) != lm.env_id:
                raise ModelMismatchError("--env", f"the model was trained on {lm.env_id!r}, not on {env_id!r} "
                                                  f"(sidecar {lm.path.name[:-4] if lm.path.suffix == '.zip' else lm.path.name}.json)")
        if scenario is None:
            scenario = lm.sidecar.get("scenario_raw") or lm.sidecar.get("scenario")
            overrides = list(lm.sidecar.get("overrides") or ()) + list(overrides or ())
        sc = load_scenario(scenario, overrides)
        lm.make_env(sc).close()   # refuses a mismatched observation/action space on this scenario
        if sc.hash != lm.sidecar.get("scenario_hash"):
            notes.append(f"evaluated on scenario {sc.name} ({sc.hash}), trained on {lm.sidecar.get('scenario_name')} "
                         f"({lm.sidecar.get('scenario_hash')}): a generalisation test")
        if lm.sidecar.get("version") and lm.sidecar["version"] != __import__("distllm_env").__version__:
            notes.append(f"model trained with distllm-env {lm.sidecar['version']}")
        pol = learned_policy(lm)
        decision = lm.decision
        env_config = dict(lm.sidecar["env_config"])
        model_info = lm.summary()
        bad = [s for s in seeds if s < EVAL_SEED_BASE]
        if bad:
            notes.append(f"seeds {bad[:3]}… are below {EVAL_SEED_BASE}: they may have been used in training")
    else:
        if scenario is None:
            raise ScenarioError("--scenario", "required with --policy")
        sc = load_scenario(scenario, overrides)
        pol = _user_policy(policy)
        has_place, has_route = callable(getattr(pol, "place", None)), callable(getattr(pol, "route", None))
        if decision is None:
            decision = "RequestRouting" if has_route and not has_place else "BlockPlacement" if has_place and not has_route \
                else None
        if decision is None:    # both decisions: against the compare presets
            specs = list(policies) if policies else ["petals", "proposed", "cg-bprr", "opt-order", "opt-number",
                                                      "opt-rr"]
        else:
            specs = baseline_specs(decision, sc, env_config, policies, allow_imports)
    if model is not None:
        specs = baseline_specs(decision, sc, env_config, policies, allow_imports)
    # a user policy given by import path is labelled by that path, as compare() labels it
    first = policy if model is None and isinstance(policy, str) else pol
    res = compare(sc, [first, *specs], seeds, allocation_delays={}, allow_imports=allow_imports)
    label = res.policies[0].label
    margins = _margins(res, label)
    return EvaluationResult(res, label, margins, model_info, notes)


def _margins(res: CompareResult, label: str) -> list[dict]:
    by = {(r["policy"], r["seed"]): r["mean_per_token_time_s"] for r in res.per_seed}
    mine = np.array([by[(label, s)] for s in res.seeds], dtype=float)
    out = []
    for p in res.policies[1:]:
        base = np.array([by[(p.label, s)] for s in res.seeds], dtype=float)
        ratio = mine / base
        out.append({"baseline": p.label, "learned_mean_s": float(np.mean(mine)), "baseline_mean_s": float(np.mean(base)),
                    "reduction": float(1 - np.mean(mine) / np.mean(base)),
                    "seeds_won": int(np.sum(mine < base * (1 - 1e-9))), "seeds_tied": int(np.sum(np.isclose(mine, base))),
                    "ratio_min": float(np.min(ratio)), "ratio_max": float(np.max(ratio))})
    return out


def write_outputs(result: EvaluationResult, paths: Sequence[str | Path]) -> list[Path]:
    """``.png``: the compare plot (paired per-seed differences against the evaluated policy, and the
    absolute means; caption: version, scenario hash, seeds, delays); ``.json``:
    :meth:`EvaluationResult.to_dict`; ``.csv``: the results rows as a plain table, with ``meta``,
    ``margins`` and ``per_seed`` in the sidecar ``F.csv.json``.

    Raises:
        ScenarioError: (path ``--out``) a suffix other than .png, .json or .csv."""
    import json

    from ..compare import RESULT_COLUMNS
    from ..outputs import json_safe, sidecar_json, write_csv

    written = []
    for p in paths:
        p = Path(p)
        suffix = p.suffix.lower()
        p.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".json":
            p.write_text(json.dumps(json_safe(result.to_dict()), indent=1) + "\n")
        elif suffix == ".csv":
            write_csv(p, result.compare.to_csv(), sidecar_json(result.meta, RESULT_COLUMNS, margins=result.margins,
                                                               per_seed=result.compare.per_seed))
        elif suffix == ".png":
            result.compare.write(p)
        else:
            raise ScenarioError("--out", f"expected a .png, .json or .csv file, got {str(p)!r}")
        written.append(p)
    return written


__all__ = ["EvaluationResult", "SLOW_PLACEMENTS", "baseline_specs", "evaluate", "write_outputs"]
