"""Mutations of the parsed scenario data (issue 9 kinds 1, 3, 4, 5, 6, 8): numbers without bounds,
plausible perturbations, type swaps, key deletion, unknown keys and names, topology and workload edits,
broken calibration files, policy import paths (security payloads) and ``--set`` overrides.  Each takes a
:class:`fuzz_core.Draft` and records what it did with ``Draft.note``."""

from __future__ import annotations

import copy
import math
from typing import Any

from distllm_env.policies import PLACEMENT_POLICIES, ROUTING_POLICIES
from fuzz_core import MARKER, Draft, _dotted, _flow, _get, _is_number, _set, _walk

NUMERIC_VALUES: tuple[Any, ...] = (0, -1, 1e300, 1e-300, 5e-324, math.nan, math.inf, -math.inf, 2 ** 64,
                                   "float-for-int", True, False)
SWAP_VALUES: tuple[Any, ...] = ("fuzz", [1, 2], {"a": 1}, None, "")
UNKNOWN_NAME = "NoSuch-Fuzz9"

# security payloads: a class whose construction with the given options creates MARKER
SECURITY_PAYLOADS: tuple[tuple[str, dict], ...] = (
    ("subprocess:Popen", {"args": ["touch", MARKER]}),
    ("logging:FileHandler", {"filename": MARKER}),
    ("zipfile:ZipFile", {"file": MARKER, "mode": "w"}),
)
# import paths that resolve to something that is not a policy
NON_POLICY_PATHS = ("os:getcwd", "builtins:object", "pathlib:Path", "math:pi", "collections:OrderedDict",
                    "no_such_module_fuzz:Thing")



def _risky_targets(data: dict) -> list[tuple]:
    """Fields whose values are scaled or used as counts (issue 9 kind 3), created if absent."""
    out: list[tuple] = []
    if isinstance(data.get("servers"), list) and data["servers"] and isinstance(data["servers"][0], dict):
        out.append(("servers", 0, "memory_gb"))
    for section, keys in (("models", ("params_per_block", "num_blocks", "d_model", "max_sequence_tokens")),
                          ("gpus", ("memory_gb", "bf16_tflops", "max_blocks"))):
        if isinstance(data.get(section), dict):
            out += [(section, name, k) for name, spec in data[section].items() if isinstance(spec, dict)
                    for k in keys]
    if isinstance(data.get("simulator"), dict):
        out.append(("simulator", "allocation_delay_s", "default"))
    return out


def m_numeric(d: Draft) -> None:
    leaves = [(p, v) for p, v in _walk(d.data) if _is_number(v)]
    risky = _risky_targets(d.data)
    if risky and (d.rng.random() < 0.3 or not leaves):
        p = d.choice(risky)
        try:
            parent = _get(d.data, p[:-1])
        except (KeyError, IndexError, TypeError):
            parent = None
        if not isinstance(parent, dict):
            _get(d.data, p[:-2])[p[-2]] = parent = {}
        leaves = [(p, parent.setdefault(p[-1], 1))]
    if not leaves:
        return m_unknown_key(d)
    p, old = d.choice(leaves)
    new = d.choice(NUMERIC_VALUES)
    if new == "float-for-int":
        new = old + 0.5 if isinstance(old, int) else old
    _set(d.data, p, new)
    # NaN is never a valid value; an option of a policy the run does not use may be ignored, though
    d.note("numeric", _dotted(p), f"={new!r}",
           must_fail=isinstance(new, float) and math.isnan(new) and "options" not in p)


def m_perturb(d: Draft) -> None:
    """A plausible edit (a number scaled by a log-uniform factor in [1/10, 10], integers kept ≥ 1), so
    that a share of the cases run the simulator and its result is checked."""
    leaves = [(p, v) for p, v in _walk(d.data) if _is_number(v) and "num_requests" not in p]
    if not leaves:
        return m_key_delete(d)
    p, old = d.choice(leaves)
    factor = float(10 ** d.rng.uniform(-1, 1))
    new = max(1, int(round(old * factor))) if isinstance(old, int) else old * factor
    _set(d.data, p, new)
    d.note("perturb", _dotted(p), f"={new!r} (was {old!r})")


def m_type_swap(d: Draft) -> None:
    leaves = [(p, v) for p, v in _walk(d.data) if not isinstance(v, (dict, list))]
    p, old = d.choice(leaves)
    new = d.choice(SWAP_VALUES)
    _set(d.data, p, copy.deepcopy(new))
    d.note("type-swap", _dotted(p), f"={new!r}")


def m_key_delete(d: Draft) -> None:
    keys = [(p, v) for p, v in _walk(d.data) if isinstance(p[-1], str)]
    keys += [((k,), v) for k, v in d.data.items()]
    p, _ = d.choice(keys)
    parent = _get(d.data, p[:-1])
    if p[-1] in parent:
        del parent[p[-1]]
    d.note("key-delete", _dotted(p), "")


def m_unknown_key(d: Draft) -> None:
    maps = [((), d.data)] + [(p, v) for p, v in _walk(d.data) if isinstance(v, dict)]
    p, node = d.choice(maps)
    node["fuzz_unknown_key"] = 1
    # policy options are passed through to the chosen policy: an unused one may be legitimately ignored
    d.note("unknown-key", _dotted(p + ("fuzz_unknown_key",)), "", must_fail="options" not in p)


def m_unknown_name(d: Draft) -> None:
    cands: list[tuple] = [("model",)]
    for p, v in _walk(d.data):
        if p[-1] in ("gpu", "device", "repetita") and isinstance(v, str):
            cands.append(p)
        if len(p) >= 2 and p[-2] in ("cities", "regions"):
            cands.append(p)
        if len(p) >= 2 and p[-2] == "gpu_mix":
            cands.append(p + ("<key>",))
        if p[-1] == "model" and "requests" in p:
            cands.append(p)
        if p[-1] == "arrival":
            cands.append(p)
        if p[-1] == "reservation":
            cands.append(p)
    topo = d.data.get("topology", {})
    if isinstance(topo, dict) and "geo" in topo and "regions" not in topo["geo"]:
        cands.append(("topology", "geo", "regions", "<new>"))
    p = d.choice(cands)
    if p[-1] == "<key>":
        mix = _get(d.data, p[:-2])
        mix[UNKNOWN_NAME] = mix.pop(p[-2])
    elif p[-1] == "<new>":
        d.data["topology"]["geo"]["regions"] = ["europe", UNKNOWN_NAME.lower()]
    else:
        _set(d.data, p, UNKNOWN_NAME)
    d.note("unknown-name", _dotted(p), f"={UNKNOWN_NAME}", must_fail=True)


def m_topology(d: Draft) -> None:
    how = d.choice(["sizes-huge", "sizes-zero", "geo-huge", "geo-regions", "graph-disconnected",
                    "graph-bad-edge", "graph-garbage", "rtt-inf", "geo-cities-empty"])
    topo = d.data.get("topology")
    if how == "sizes-huge":
        d.data["topology"] = {"clusters": {"sizes": [1, 2, int(d.choice([10 ** 6, 2 ** 64, 10 ** 9]))]}}
    elif how == "sizes-zero":
        d.data["topology"] = {"clusters": {"sizes": [1, 0, 2]}}
    elif how == "geo-huge":
        d.data["topology"] = {"geo": {"num_nodes": int(d.choice([10 ** 5, 10 ** 6, 2 ** 64]))}}
    elif how == "geo-regions":
        d.data["topology"] = {"geo": {"num_nodes": 12, "regions": ["europe", "northamerica", "asia"]}}
    elif how == "rtt-inf":
        d.data["topology"] = {"clusters": {"sizes": [1, 2, 2], "inter_rtt_ms": d.choice([math.inf, 1e300])}}
    elif how == "geo-cities-empty":
        d.data["topology"] = {"geo": {"cities": []}}
    else:
        nodes = ["n0 0 0", "n1 1 1", "n2 2 2", "n3 3 3", "n4 4 4"]
        edges = [(0, 1), (1, 2), (2, 3)] if how == "graph-disconnected" else [(0, 1), (1, 2), (2, 3), (3, 4)]
        if how == "graph-bad-edge":
            edges.append((3, 9))
        lines = [f"NODES {len(nodes)}", "label x y", *nodes, "", f"EDGES {2 * len(edges)}",
                 "label src dest weight bw delay"]
        k = 0
        for a, b in edges:
            for s, t in ((a, b), (b, a)):
                lines.append(f"e{k} {s} {t} 1 1000000 5000")
                k += 1
        text = "\n".join(lines) + "\n" if how != "graph-garbage" else "NODES x\nEDGES\n\x00\n"
        d.case.aux_files["fuzz.graph"] = text.encode()
        d.data["topology"] = {"repetita": "fuzz.graph"}
        # client at node 0; servers on the island 1..3 and (disconnected case) one alone at node 4
        srv = d.data.get("servers")
        gpu = "A100-80GB"
        if isinstance(srv, list) and srv and isinstance(srv[0], dict) and isinstance(srv[0].get("gpu"), str):
            gpu = srv[0]["gpu"]
        elif isinstance(srv, dict) and isinstance(srv.get("gpu_mix"), dict) and srv["gpu_mix"]:
            gpu = str(next(iter(srv["gpu_mix"])))
        d.data["servers"] = [{"gpu": gpu, "node": f"n{i}"} for i in (1, 2, 3, 4)]
        d.data["clients"] = [{"node": "n0"}]
        if how == "graph-disconnected" and d.rng.random() < 0.5:   # every router must avoid the lone server
            d.case.placement = d.choice(["even", "cg-bp", "random", "opt-order"])
            d.case.routing = d.choice(sorted(ROUTING_POLICIES))
    # tiny's model fits on the three reachable servers, so the run must succeed without the unreachable
    # one (issue 9 kind 5: unreachable servers are excluded from planning)
    d.note("topology", "topology", f" {how} (was {_flow(topo)[:60]})",
           must_fail=how in ("sizes-zero", "graph-bad-edge", "graph-garbage", "geo-cities-empty"),
           keeps_valid=how == "graph-disconnected" and d.case.preset == "tiny")


def m_workload(d: Draft) -> None:
    how = d.choice(["num-huge", "rate-tiny", "rate-huge", "delay-huge", "prompt-huge", "trace-csv", "trace-null"])
    w = d.data.setdefault("workload", {})
    if not isinstance(w, dict):
        d.data["workload"] = w = {}
    must_fail = False
    if how == "num-huge":
        w["num_requests"] = int(d.choice([10 ** 6, 10 ** 9, 2 ** 64]))
        detail = f"num_requests={w['num_requests']}"
    elif how == "rate-tiny":
        w["arrival_rate_per_s"] = d.choice([1e-300, 5e-324, 1e-30])
        detail = f"arrival_rate_per_s={w['arrival_rate_per_s']!r}"
    elif how == "rate-huge":
        w["arrival_rate_per_s"] = d.choice([1e300, 1e12])
        detail = f"arrival_rate_per_s={w['arrival_rate_per_s']!r}"
    elif how == "delay-huge":
        sim = d.data.setdefault("simulator", {})
        if not isinstance(sim, dict):
            d.data["simulator"] = sim = {}
        sim["backoff"] = True
        sim["allocation_delay_s"] = {"petals": d.choice([1e8, 1e12, 1e300]), "default": d.choice([1e8, 1e12])}
        w["arrival_rate_per_s"] = d.choice([w.get("arrival_rate_per_s", 1.0), 1e3])   # overload: requests retry
        d.case.placement, d.case.routing = d.choice(["petals", "even"]), "petals"
        detail = f"allocation_delay_s={sim['allocation_delay_s']}"
    elif how == "prompt-huge":
        w["prompt_tokens"] = int(d.choice([10 ** 6, 2 ** 64, 10 ** 30]))
        detail = f"prompt_tokens={w['prompt_tokens']}"
    else:
        w.pop("prompt_tokens", None), w.pop("output_tokens", None)
        w["arrival"], w["trace"] = "trace", "fuzz.csv"
        w["num_requests"] = 3
        rows = (["0.0,10,5", "nan,10,5", "1.0,10,5"] if how == "trace-csv" else ["0.0,0,5", "-1,10,5", "1,10,5"])
        d.case.aux_files["fuzz.csv"] = ("arrival_s,prompt_tokens,output_tokens\n" + "\n".join(rows) + "\n").encode()
        must_fail = True
        detail = f"trace rows {rows}"
    d.note("workload", "workload", f" {how}: {detail}", must_fail=must_fail)


def m_calibration(d: Draft) -> None:
    """A scenario-local GPU calibrated from a petals_json file holding garbage (kind 8)."""
    content = d.choice([b"null", b"[]", b"{}", b'{"x": "y"}', b"\xff\xfe", b'{"a": 1e999}'])
    d.case.aux_files["fuzz_petals.json"] = content
    model = d.data.get("model") if isinstance(d.data.get("model"), str) else "BLOOM-176B"
    d.data.setdefault("gpus", {})
    if not isinstance(d.data["gpus"], dict):
        d.data["gpus"] = {}
    d.data["gpus"]["A100-80GB"] = {"calibration": {model: {"petals_json": "fuzz_petals.json", "entry": "x"}}}
    d.note("calibration", f"gpus.A100-80GB.calibration.{model}.petals_json", f" content {content!r}", must_fail=True)


def m_policy_import(d: Draft) -> None:
    pd = d.data.get("policy_defaults")
    if not isinstance(pd, dict):
        d.data["policy_defaults"] = pd = {}
    role = d.choice(["placement", "routing"])
    if d.rng.random() < 0.7:
        path, opts = d.choice(SECURITY_PAYLOADS)
        d.case.security = True
        if d.rng.random() < 0.5:
            pd[role] = path
            pd.setdefault("options", {})
            if not isinstance(pd["options"], dict):
                pd["options"] = {}
            pd["options"][path] = copy.deepcopy(opts)
            d.note("policy-import", f"policy_defaults.{role}", f"={path} (security payload)", must_fail=True)
        else:
            d.case.overrides += [f"policy_defaults.{role}={path}",
                                 f"policy_defaults.options.{path}={_flow(opts)}"]
            d.note("policy-import", "--set", f" policy_defaults.{role}={path} (security payload)", must_fail=True)
        if role == "placement":
            d.case.placement = None
        else:
            d.case.routing = None
    else:
        path = d.choice(NON_POLICY_PATHS)
        if d.rng.random() < 0.5:
            pd[role] = path
        else:
            setattr(d.case, role, path)     # as if given on the command line
        d.note("policy-import", f"policy_defaults.{role}", f"={path} (not a policy)", must_fail=True)


def m_policy_options(d: Draft) -> None:
    pd = d.data.get("policy_defaults")
    if not isinstance(pd, dict):
        d.data["policy_defaults"] = pd = {}
    place = d.choice(sorted(PLACEMENT_POLICIES))
    route = d.choice(sorted(ROUTING_POLICIES))
    opts = d.choice([{"time_limit_s": math.nan}, {"time_limit_s": -1}, {"time_limit_s": 1e-300},
                     {"sessions": 10 ** 9}, {"sessions": "many"}, {"fuzz_kwarg": 1}, {"formulation": "literal"},
                     {"seed": 2 ** 64}])
    pd["placement"], pd["routing"] = place, route
    pd["options"] = {place: opts, route: dict(opts)}
    d.note("policy-options", "policy_defaults.options", f" {place}/{route} {opts}")


SET_VALUES = ("1e3", "1.0e+300", "nan", ".inf", "-1", "0", "[1, 2]", "{a: 1}", "", "x", "1000000000",
              "18446744073709551616", "true", "5e-324", "0x10", "[[[[[[[[1]]]]]]]]", "&a [*a]")
BAD_SET_PATHS = ("nope.x=1", "servers.99.gpu=T4", "name.x=1", "=1", "novalue", "servers.x.gpu=T4",
                 "workload..num_requests=3", "topology.clusters.sizes.-99=1")


def m_set_override(d: Draft) -> None:
    if d.rng.random() < 0.25:
        text = d.choice(BAD_SET_PATHS)
        d.case.overrides.append(text)
        d.note("set-override", "--set", f" {text!r}")
        return
    # never undo an earlier mutation that makes the case invalid, nor a security payload
    protected = [m.path for m in d.case.mutations if m.must_fail] + (["policy_defaults"] if d.case.security else [])
    leaves = [p for p, v in _walk(d.data) if not isinstance(v, (dict, list))
              and not any(_dotted(p).startswith(q) or q.startswith(_dotted(p)) for q in protected)]
    if not leaves:
        text = d.choice(BAD_SET_PATHS)
        d.case.overrides.append(text)
        d.note("set-override", "--set", f" {text!r}")
        return
    p = d.choice(leaves)
    value = d.choice(SET_VALUES)
    d.case.overrides.append(f"{_dotted(p)}={value}")
    d.note("set-override", "--set", f" {_dotted(p)}={value}")

