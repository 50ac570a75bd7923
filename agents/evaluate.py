"""Evaluating a trained model (or a user's policy) against the baselines of its decision
(``distllm-env evaluate``; docs/agents.md).

:func:`evaluate` runs the learned policy (:func:`~.learned.learned_policy`: a routing or placement
policy driven by the model) and every baseline of the same decision through
:func:`distllm_env.compare.compare` on paired held-out seeds (default 10 000 …), with **equal
allocation delays** for all policies (``auto``, the default: 0 for all; ``equal:SECONDS``: that delay
for all, the learned policy included; docs/contracts.md §4), and reports, per baseline, the relative
reduction of mean per-token time 1 − learned / baseline (positive = the learned policy is faster).
A baseline that cannot run on the scenario (e.g. PETALS placement on ``tiny``) is reported as failed,
with its one-line reason, in the table and every output; the others still run.

Baselines of a decision are paired with the rest of the model's env:

* RequestRouting: every router registered at run time (``shortest``, ``petals``, ``ws-rr``,
  ``ws-rr-load``, ``opt-rr``, ``rr-ilp``, ``random``, ``round-robin``, and ``lookahead`` once
  registered) on the env's placement (the sidecar's ``config["placement"]``, else the scenario's
  default, i.e. CG-BP): specs ``PLACEMENT+ROUTER``;
* BlockPlacement: every registered placement (``cg-bp-tuned`` included once registered) except
  ``milp`` (it runs to its time limit, about a minute per seed; add it with ``policies=["+milp"]``) with the
  env's router (``config["router"]``, else WS-RR).  Baseline placements keep their own cache policy
  (PETALS its fixed pool); the learned placement uses the env's (``leftover`` by default).

:data:`STRONG_BASELINES` (the strongest non-learned baselines: ``opt-rr``, ``ws-rr-load``,
``lookahead``; ``cg-bp-tuned``) are always part of the default list when registered; a narrowed
``policies=`` list that leaves them out gets a note saying so.  ``--allocation-delays scenario`` charges the
learned policy family ``default`` and the baselines their families' delays: the table then gets a note that
the comparison is not fair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..compare import CompareResult, compare, construct_policy, parse_allocation_delays
from ..errors import ScenarioError
from ..imports import load_object
from ..registry import default_placement, default_routing
from ..scenario import load_scenario
from .learned import LearnedModel, learned_policy
from .sidecar import ModelMismatchError
from .wrappers import EVAL_SEED_BASE

#: placement baselines left out by default (minutes per seed)
SLOW_PLACEMENTS = ("milp",)
#: baselines kept in the default tables although slow on long workloads: name -> measured cost (a note
#: under the table when the scenario has >= EXPENSIVE_NOTE_REQUESTS requests)
EXPENSIVE_BASELINES = {"lookahead": "rolls the future out for each candidate chain: measured 129 s per seed on "
                                    "azure-conv-swarm (1 000 requests; ws-rr: 1.2 s)"}
EXPENSIVE_NOTE_REQUESTS = 500
#: the strongest non-learned baselines per decision, in every default table when registered (issue 13)
STRONG_BASELINES = {"RequestRouting": ("opt-rr", "ws-rr-load", "lookahead"), "BlockPlacement": ("cg-bp-tuned",)}


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

    ``policies`` replaces the default list; an item written ``+NAME`` (e.g. ``+milp``) is added to the
    list instead (to the defaults when every item is ``+NAME``); an item containing ``+`` (after its
    leading one) or ``:`` is used as a full compare spec.  ``allow_imports``: the scenario's
    ``policy_defaults`` may name a ``module:Class`` import path (as in
    :func:`distllm_env.compare.compare`).

    Raises:
        ScenarioError: ``decision`` is neither ``RequestRouting`` nor ``BlockPlacement`` (path
            ``--model``), or the scenario's default policy of the other decision is an import path
            and ``allow_imports`` is false (path ``policy_defaults.<kind>``)."""
    from .. import registry     # looked up now: routers/placements registered after import count too

    cfg = dict(env_config or {})
    if decision == "RequestRouting":
        other = cfg.get("placement") or default_placement(scenario, allow_imports=allow_imports)
        names = list(registry.ROUTING_POLICIES)
        pair = lambda name: f"{other}+{name}"  # noqa: E731
    elif decision == "BlockPlacement":
        other = cfg.get("router") or default_routing(scenario, allow_imports=allow_imports)
        names = [n for n in registry.PLACEMENT_POLICIES if n not in SLOW_PLACEMENTS]
        pair = lambda name: f"{name}+{other}"  # noqa: E731
    else:
        raise ScenarioError("--model", f"no simulator baselines for decision {decision!r}; evaluate ClientSplit "
                                       "models on the env (distllm_env.envs.policies.SplitEnvPolicy)")
    listed, added = split_extra_policies(policies)
    as_spec = lambda p: p if ("+" in p or ":" in p) else pair(p)  # noqa: E731
    if listed:
        out = [as_spec(p) for p in listed]
    else:
        names += [n for n in STRONG_BASELINES[decision] if n not in names and n in _registered(decision)]
        out = [pair(n) for n in names]
    return out + [s for s in map(as_spec, added) if s not in out]


def _registered(decision: str) -> dict:
    from .. import registry

    return registry.ROUTING_POLICIES if decision == "RequestRouting" else registry.PLACEMENT_POLICIES


def missing_strong_baselines(decision: str | None, specs: Sequence[str]) -> list[str]:
    """The registered :data:`STRONG_BASELINES` of ``decision`` that no spec in ``specs`` uses."""
    if decision not in STRONG_BASELINES:
        return []
    used = {part for s in specs for part in str(s).replace("+", " ").split()}
    return [n for n in STRONG_BASELINES[decision] if n in _registered(decision) and n not in used]


#: top-level scenario sections whose change makes an evaluation a generalisation test (the network the
#: policy acts on); a change of ``workload`` or ``simulator`` only (e.g. ``--set workload.num_requests=30``) is not
STRUCTURAL_SECTIONS = ("model", "topology", "servers", "clients", "network")


def _structural_changes(sidecar: dict, sc) -> list[str]:
    """The :data:`STRUCTURAL_SECTIONS` in which ``sc`` differs from the training scenario that the
    model's sidecar names (its ``scenario_raw``, else ``scenario`` + ``overrides``); all of them when that
    scenario cannot be rebuilt (e.g. a YAML file no longer there)."""
    try:
        trained = load_scenario(sidecar.get("scenario_raw") or sidecar.get("scenario"), sidecar.get("overrides") or ())
    except Exception:       # noqa: BLE001 - unknown training scenario: say the evaluation may generalise
        return ["unknown training scenario"]
    return [k for k in STRUCTURAL_SECTIONS if trained.raw.get(k) != sc.raw.get(k)]


def split_extra_policies(policies: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """``(listed, added)``: ``--policies`` items as given, and those written ``+NAME`` (added to the
    default list instead of replacing it; the ``+`` removed)."""
    listed, added = [], []
    for p in policies or ():
        p = str(p).strip()
        if p.startswith("+") and len(p) > 1:
            added.append(p[1:].strip())
        elif p:
            listed.append(p)
    return listed, added


def _user_policy(spec: Any):
    # place/route checked on the class before it is constructed (an imported non-policy never runs)
    return construct_policy(load_object(spec) if isinstance(spec, str) else spec, spec)


def evaluate(model: "str | Path | LearnedModel | None" = None, scenario: Any = None, seeds: Sequence[int] | None = None,
             *, policy: Any = None, overrides: Sequence[str] = (), policies: Sequence[str] | None = None,
             env_id: str | None = None, decision: str | None = None, allocation_delays: Any = None,
             allow_imports: bool = False, workers: int = 1, backend: str = "process",
             ray_address: str | None = None) -> EvaluationResult:
    """Evaluate a trained ``model`` (or a user ``policy``: ``module:Class`` or an object with ``place``
    and/or ``route``) against the baselines of its decision on ``scenario`` + ``overrides`` (None: the
    model's training scenario) over ``seeds`` (default 10 000 … 10 004).  ``allocation_delays``: a rule
    (:func:`distllm_env.compare.parse_allocation_delays`): ``auto`` / None (default) and ``zero`` charge
    no delay, ``equal:SECONDS`` the same delay to every policy (the learned one included), ``scenario``
    the scenario's per-family delays (the learned policy: family ``default``; when that differs from a
    baseline's delay a note says the comparison is not fair).  ``policies``: replaces the default
    baselines; items written ``+NAME`` are added to them instead (:func:`split_extra_policies`).  A baseline that fails
    on the scenario is reported (``status`` ``failed: …``, a ``margins`` row with ``status``) and the
    rest still runs; the evaluated policy failing raises its error.

    ``env_id``: when given, the model's sidecar must name the same id.  ``allow_imports=True`` (CLI
    ``--allow-import``) lets the scenario's ``policy_defaults.placement/routing`` be a
    ``module:Class`` import path, as for :func:`distllm_env.compare.compare`; otherwise such a
    scenario is refused.  ``workers`` / ``backend`` / ``ray_address``: seeds in parallel, with results
    identical to the serial run (:func:`distllm_env.parallel.map_seeds`; a model that cannot be sent to
    worker processes runs serially, with a warning).

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
    rule = parse_allocation_delays(allocation_delays)
    seeds = list(range(EVAL_SEED_BASE, EVAL_SEED_BASE + 5)) if seeds is None else [int(s) for s in seeds]
    if not seeds:
        raise ScenarioError("--seeds", "expected at least one seed")
    notes: list[str] = []
    model_info = None
    env_config: dict = {}
    if model is not None:
        lm = model if isinstance(model, LearnedModel) else LearnedModel(model, env_id=env_id, scenario=scenario,
                                                                        overrides=overrides)
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
            changed = _structural_changes(lm.sidecar, sc)
            if changed:
                notes.append(f"evaluated on scenario {sc.name} ({sc.hash}), trained on {lm.sidecar.get('scenario_name')} "
                             f"({lm.sidecar.get('scenario_hash')}); it differs from the training scenario in: "
                             f"{', '.join(changed)}: a generalisation test")
        if lm.sidecar.get("version") and lm.sidecar["version"] != __import__("distllm_env").__version__:
            notes.append(f"model trained with distllm-env {lm.sidecar['version']}")
        pol = learned_policy(lm, allocation_delays=rule)
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
            listed, added = split_extra_policies(policies)
            specs = listed or ["petals", "proposed", "proposed-load", "cg-bprr", "opt-order", "opt-number", "opt-rr"]
            specs += [a for a in added if a not in specs]
        else:
            specs = baseline_specs(decision, sc, env_config, policies, allow_imports)
    if model is not None:
        specs = baseline_specs(decision, sc, env_config, policies, allow_imports)
    # a user policy given by import path is labelled by that path, as compare() labels it
    first = policy if model is None and isinstance(policy, str) else pol
    if decision == "BlockPlacement" and not split_extra_policies(policies)[0]:
        slow = [n for n in SLOW_PLACEMENTS if not any(n in str(spec).replace("+", " ").split() for spec in specs)]
        if slow:
            notes.append(f"left out by default: {slow} (runs to its solver time limit, about a minute per "
                         f"seed); add it with --policies +{slow[0]}")
    if sc.workload.num_requests >= EXPENSIVE_NOTE_REQUESTS:
        for name, cost in EXPENSIVE_BASELINES.items():
            if any(name in str(spec).replace("+", " ").split() for spec in specs):
                notes.append(f"{name} is slow on this scenario ({cost}); leave it out with --policies at the cost "
                             "of a table without the strongest baseline")
    missing = missing_strong_baselines(decision, specs)
    if missing:
        notes.append(f"the strongest non-learned baselines {missing} are not in this table (--policies narrowed it)")
    res = compare(sc, [first, *specs], seeds, allocation_delays=rule, allow_imports=allow_imports, workers=workers,
                  backend=backend, ray_address=ray_address, keep_going=True)
    label = res.policies[0].label
    if label in res.failures:         # the evaluated policy itself: its own error, as without keep_going
        f = res.failures[label]
        if f.error is not None:
            raise f.error
        raise RuntimeError(f"{label}: {f.reason}")
    for lbl, f in res.failures.items():
        notes.append(f"baseline {lbl} failed on this scenario: {f.reason}")
    per = res.meta["allocation_delay_per_policy_s"]
    if len(set(per.values())) > 1:      # e.g. --allocation-delays scenario on paper-*: not like for like
        notes.append(f"not a fair comparison: allocation delays differ ({', '.join(f'{k} {v:g} s' for k, v in per.items())}); "
                     f"{label} is family default, charged {per[label]:g} s, while the baselines are charged their "
                     "families' fitted constants, so the margins measure the constants as well as the policies; use "
                     "the default (auto: 0 for all) or equal:SECONDS for a like-for-like comparison")
    margins = _margins(res, label)
    return EvaluationResult(res, label, margins, model_info, notes)


def _margins(res: CompareResult, label: str) -> list[dict]:
    by = {(r["policy"], r["seed"]): r["mean_per_token_time_s"] for r in res.per_seed}
    mine = np.array([by[(label, s)] for s in res.seeds], dtype=float)
    out = []
    for p in res.policies[1:]:
        if p.label in res.failures:
            out.append({"baseline": p.label, "learned_mean_s": float(np.mean(mine)), "baseline_mean_s": float("nan"),
                        "reduction": float("nan"), "seeds_won": 0, "seeds_tied": 0, "ratio_min": float("nan"),
                        "ratio_max": float("nan"), "status": f"failed: {res.failures[p.label].reason}"})
            continue
        base = np.array([by[(p.label, s)] for s in res.seeds], dtype=float)
        ratio = mine / base
        out.append({"baseline": p.label, "learned_mean_s": float(np.mean(mine)), "baseline_mean_s": float(np.mean(base)),
                    "reduction": float(1 - np.mean(mine) / np.mean(base)),
                    "seeds_won": int(np.sum(mine < base * (1 - 1e-9))), "seeds_tied": int(np.sum(np.isclose(mine, base))),
                    "ratio_min": float(np.min(ratio)), "ratio_max": float(np.max(ratio)), "status": "ok"})
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


__all__ = ["EXPENSIVE_BASELINES", "EvaluationResult", "SLOW_PLACEMENTS", "STRONG_BASELINES", "STRUCTURAL_SECTIONS",
           "baseline_specs", "evaluate", "missing_strong_baselines", "split_extra_policies", "write_outputs"]
