"""The MILP family's hardening (issues 9 and 10): module layout without import cycles, option errors
with field paths, |R| caps, the wall-clock deadline during model building, determinism, quiet
output (nothing from HiGHS on stdout), and servers that no client can reach."""

from __future__ import annotations

import ast
import json
import logging
import subprocess
import sys
import time
import warnings
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import yaml

from distllm_env import load_scenario, simulate
from distllm_env.errors import ScenarioError, SolverTimeout
from distllm_env.offline import OfflineProblem
from distllm_env.policies import make_placement, make_routing

from distllm_env.baselines import milp, milp_routing
from distllm_env.baselines.exhaustive import solve_exhaustive
from distllm_env.baselines.milp import MAX_LINK_REQUESTS, MAX_REQUESTS, MILPPlacement, RoutingILPRouter, solve_bprr
from distllm_env.baselines.milp_arcflow import ArcFlowModel
from distllm_env.baselines.milp_common import BuildTimeout, Deadline
from distllm_env.baselines.milp_link import LinkModel

ROOT = Path(__file__).resolve().parents[1]


def hand_problem(requests: int) -> OfflineProblem:
    """As in test_milp.py: the joint optimum of 2 requests is 3.8 s, the stand-alone bound 2.8 s."""
    return OfflineProblem(num_blocks=4, block_bytes=10, kv_block_bytes=1, memory_bytes=[45, 25], max_blocks=[4, 4],
                          tau_s=[0.01, 0.01], token_cost_s=[[0.1, 0.05]], requests=[requests], output_tokens=10)


# -- layout ---------------------------------------------------------------------------------------------

def _baselines_import_graph() -> nx.DiGraph:
    """Edges between the modules of baselines/ from every import statement (any nesting level)."""
    g = nx.DiGraph()
    for path in sorted((ROOT / "baselines").glob("*.py")):
        mod = path.stem
        g.add_node(mod)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                name = node.module or ""
                if node.level == 1:
                    target = name.split(".")[0] if name else None
                    if target is None:              # from . import x
                        for alias in node.names:
                            g.add_edge(mod, alias.name)
                    else:
                        g.add_edge(mod, target)
                elif name.startswith("distllm_env.baselines."):
                    g.add_edge(mod, name.split(".")[2])
    return g


def test_milp_modules_have_no_import_cycle_and_routing_ilp_has_its_own_module():
    g = _baselines_import_graph()
    cycles = [c for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert not cycles, cycles
    assert g.has_edge("milp_heuristic", "milp_routing") and not g.has_edge("milp_heuristic", "milp")
    assert not any(g.has_edge("milp_routing", m) for m in ("milp", "milp_bprr", "milp_heuristic"))
    # the public import paths keep working and name the same objects
    assert milp.RoutingILPRouter is milp_routing.RoutingILPRouter
    assert milp.solve_routing_ilp is milp_routing.solve_routing_ilp
    assert type(make_routing("rr-ilp")) is RoutingILPRouter
    assert type(make_placement("milp")) is MILPPlacement


def test_decode_cost_comes_from_perf_only():
    # no module of the family writes t + τ·m itself (the formula lives in distllm_env.perf)
    for name in ("exhaustive", "milp", "milp_arcflow", "milp_bounds", "milp_bprr", "milp_link", "milp_routing"):
        src = (ROOT / "baselines" / f"{name}.py").read_text()
        code = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("#", "*", "\"", "(")))
        for pattern in ("tau_s[j] * ell", "tau[j] * ell", "tau[j] * (last", "tau_s[dst] * blocks"):
            assert pattern not in code, (name, pattern)


# -- options and caps -----------------------------------------------------------------------------------

@pytest.mark.parametrize("policy, options, field", [
    ("milp", {"formulation": "gurobi"}, "formulation"),
    ("milp", {"sessions": 0}, "sessions"),
    ("milp", {"sessions": "many"}, "sessions"),
    ("milp", {"sessions": True}, "sessions"),
    ("milp", {"sessions": MAX_REQUESTS + 1}, "sessions"),
    ("milp", {"sessions": MAX_LINK_REQUESTS + 1, "formulation": "literal"}, "sessions"),
    ("milp", {"time_limit_s": 0}, "time_limit_s"),
    ("milp", {"time_limit_s": float("nan")}, "time_limit_s"),
    ("milp", {"time_limit_s": "60"}, "time_limit_s"),
    ("milp", {"mip_rel_gap": 1.5}, "mip_rel_gap"),
    ("milp", {"strict": "yes"}, "strict"),
    ("milp", {"warm_start": 1}, "warm_start"),
    ("milp", {"random_seed": -1}, "random_seed"),
    ("rr-ilp", {"method": "simplex"}, "method"),
    ("rr-ilp", {"method": ["dag"]}, "method"),
])
def test_bad_options_raise_scenario_error_naming_the_field(policy, options, field):
    make = make_routing if policy == "rr-ilp" else make_placement
    with pytest.raises(ScenarioError) as err:
        make(policy, options=options)
    assert err.value.path == f"policy_defaults.options.{policy}.{field}"
    assert "\n" not in str(err.value) and "expected" in str(err.value)


def test_bad_option_in_the_cli_exits_2_with_one_line(capsys):
    from distllm_env.cli import main
    rc = main(["simulate", "--scenario", "tiny", "--placement", "milp", "--routing", "shortest",
               "--set", "policy_defaults.options.milp.formulation=gurobi"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "policy_defaults.options.milp.formulation" in err


def test_request_caps_are_clean_errors_before_any_model_is_built():
    p = hand_problem(1)
    big = OfflineProblem(p.num_blocks, p.block_bytes, p.kv_block_bytes, p.memory_bytes, p.max_blocks, p.tau_s,
                         p.token_cost_s, [MAX_LINK_REQUESTS + 1], p.output_tokens)
    with pytest.raises(ScenarioError) as err:
        solve_bprr(big, "literal")
    assert err.value.path == "problem.requests" and str(MAX_LINK_REQUESTS) in str(err.value)
    # the link model's size also grows with N²: 200 reachable servers × 10 requests is over the column cap
    N = 200
    wide = OfflineProblem(num_blocks=4, block_bytes=10, kv_block_bytes=1, memory_bytes=[45] * N, max_blocks=[4] * N,
                          tau_s=[0.01] * N, token_cost_s=[[0.1] * N], requests=[10], output_tokens=10)
    t0 = time.perf_counter()
    with pytest.raises(ScenarioError, match="columns per request") as err:
        solve_bprr(wide, "rlt")
    assert err.value.path == "problem.requests"
    assert time.perf_counter() - t0 < 30          # a sanity guard, not a speed target: nothing was built
    with pytest.raises(ScenarioError, match="time_limit_s"):
        solve_bprr(p, time_limit_s=float("inf"))
    with pytest.raises(ScenarioError, match="formulation"):
        solve_bprr(p, "gurobi")


# -- the deadline ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("build", [lambda p, d: ArcFlowModel(p, deadline=d), lambda p, d: LinkModel(p, "literal", d),
                                   lambda p, d: LinkModel(p, "rlt", d)])
def test_model_builders_stop_at_the_deadline(build):
    p = hand_problem(2)
    with pytest.raises(BuildTimeout):
        build(p, Deadline(time.perf_counter() - 1.0))
    build(p, Deadline())                         # no limit: builds


def test_time_limit_during_the_build_returns_the_incumbent_or_raises(monkeypatch):
    from distllm_env.baselines import milp_bprr

    def expired(*args, **kwargs):
        raise BuildTimeout("test: the deadline passed")

    p = hand_problem(2)
    monkeypatch.setattr(milp_bprr, "LinkModel", expired)
    sol = solve_bprr(p, "rlt", time_limit_s=30)            # CG-BPRR's start is the incumbent
    assert sol.status == "time_limit" and not sol.proven_optimal
    assert sol.solver_status == "build_time_limit" and sol.rounds == 0
    assert not sol.deterministic and any("time limit" in n for n in sol.notes)
    assert p.is_feasible(sol.placement, sol.routes) and sol.objective_s >= 3.8 - 1e-9
    with pytest.raises(SolverTimeout) as err:
        solve_bprr(p, "rlt", time_limit_s=30, strict=True)
    assert err.value.incumbent is not None and err.value.incumbent.objective_s == sol.objective_s
    with pytest.raises(SolverTimeout) as err:
        solve_bprr(p, "rlt", time_limit_s=30, warm_start=False)
    assert err.value.incumbent is None


def test_highs_is_not_started_once_the_deadline_has_passed():
    m = LinkModel(hand_problem(2), "rlt").model
    res = m.solve(deadline=time.perf_counter() - 1.0)
    assert res.status == "time_limit" and not res.ran and not res.has_solution
    ok = m.solve(deadline=time.perf_counter() + 60.0)
    assert ok.ran and ok.status == "optimal" and ok.objective == pytest.approx(0.38)


# -- determinism and quiet output -------------------------------------------------------------------------

def test_same_problem_same_answer_and_the_flag_says_so():
    from tests.test_milp import random_problem
    for seed in (5, 11, 24):                     # memory-binding: HiGHS has to branch
        p = random_problem(seed)
        a = solve_bprr(p, "arcflow", warm_start=False, time_limit_s=None)
        b = solve_bprr(p, "arcflow", warm_start=False, time_limit_s=None)
        assert a.deterministic and b.deterministic and not a.notes
        assert a.placement == b.placement and a.routes == b.routes and a.node_count == b.node_count
        assert a.objective_s == b.objective_s == pytest.approx(solve_exhaustive(p).objective_s)


def test_single_thread_runs_after_other_code_started_highs_with_more_threads():
    # HiGHS's thread pool is global to the process; a fresh process keeps this test independent
    code = ("import highspy\n"
            "h = highspy.Highs(); h.setOptionValue('output_flag', False); h.addVar(0, 1); h.run()\n"
            "from distllm_env.offline import OfflineProblem\n"
            "from distllm_env.baselines.milp import solve_bprr\n"
            "p = OfflineProblem(4, 10, 1, [45, 25], [4, 4], [0.01, 0.01], [[0.1, 0.05]], [2], 10)\n"
            "s = solve_bprr(p, 'rlt', warm_start=False)\n"
            "print(round(s.objective_s, 9), s.solver_status)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "3.8 optimal"


def test_highs_log_goes_to_the_logger_or_a_file_never_to_stdout(capfd, caplog, tmp_path):
    p = hand_problem(2)
    with caplog.at_level(logging.INFO, logger="distllm_env.highs"):
        solve_bprr(p, "rlt", warm_start=False, log=True)
    assert any("HiGHS" in r.getMessage() or "MIP" in r.getMessage() for r in caplog.records)
    log_file = tmp_path / "highs.log"
    solve_bprr(p, "rlt", warm_start=False, log=log_file)
    assert log_file.stat().st_size > 0
    solve_bprr(p, "arcflow", warm_start=False)
    out = capfd.readouterr().out
    assert out == ""


def test_cli_json_output_is_pure_json_with_the_milp():
    # a fresh process: HiGHS prints its banner on the first solver object of a process
    proc = subprocess.run([sys.executable, "-m", "distllm_env.cli", "simulate", "--scenario", "tiny",
                           "--placement", "milp", "--routing", "shortest", "--format", "json",
                           "--set", "policy_defaults.options.milp.sessions=4"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["meta"]["placement"] == "milp"
    assert doc["placement_notes"] == []                 # proven optimal, no clock stopped it
    assert "HiGHS" not in proc.stdout


# -- servers no client can reach ----------------------------------------------------------------------------

def test_unreachable_server_is_left_out_of_the_problem():
    # server 2 has t = inf for the only client: the MILP runs on servers 0 and 1 and says so
    p = OfflineProblem(num_blocks=4, block_bytes=10, kv_block_bytes=1, memory_bytes=[45, 25, 45],
                       max_blocks=[4, 4, 4], tau_s=[0.01, 0.01, 0.01], token_cost_s=[[0.1, 0.05, np.inf]],
                       requests=[2], output_tokens=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for formulation in ("arcflow", "rlt", "literal"):
            sol = solve_bprr(p, formulation)
            assert sol.excluded_servers == [2] and any("[2]" in n and "unreachable" in n for n in sol.notes)
            assert sol.placement.counts[2] == 0 and p.is_feasible(sol.placement, sol.routes)
            assert sol.objective_s == pytest.approx(3.8) and sol.proven_optimal


def _island_scenario(tmp_path) -> dict:
    """The client and three servers on one island, a fourth server alone (issue 9, item 5)."""
    graph = tmp_path / "island.graph"
    graph.write_text("NODES 5\nlabel x y\n0_c 0 0\n1_a 0 0\n2_b 0 0\n3_d 0 0\n4_alone 0 0\n\n"
                     "EDGES 6\nlabel src dest weight bw delay\n"
                     "e0 0 1 10 1 5000\ne1 1 2 10 1 5000\ne2 2 3 10 1 5000\n"
                     "e3 1 0 10 1 5000\ne4 2 1 10 1 5000\ne5 3 2 10 1 5000\n")
    d = yaml.safe_load((ROOT / "scenarios" / "tiny.yaml").read_text())
    d["topology"] = {"repetita": str(graph)}
    d["servers"] = [{"gpu": "toy-gpu", "node": n} for n in ("1_a", "2_b", "3_d", "4_alone")]
    d["clients"] = [{"node": "0_c"}]
    return d


def test_partly_disconnected_topology_simulates_like_even(tmp_path):
    sc = load_scenario(_island_scenario(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = simulate(sc, placement=make_placement("milp", options={"sessions": 3}), routing="shortest", seed=0)
    even = simulate(sc, placement="even", routing="shortest", seed=0)
    diag = res.placement_result.diagnostics
    assert diag["excluded_servers"] == [3] and any("unreachable" in n for n in diag["notes"])
    assert res.placement_result.placement.counts[3] == 0
    assert not res.placement_result.placement.uncovered_ranges()
    assert len(res.records) == len(even.records) == sc.workload.num_requests
    assert all(r.completed and np.isfinite(r.completion_s) for r in res.records)
    assert sum(r.completed for r in even.records) == sum(r.completed for r in res.records)


def test_partly_disconnected_topology_through_the_cli(tmp_path, capsys):
    from distllm_env.cli import main
    path = tmp_path / "island.yaml"
    path.write_text(yaml.safe_dump(_island_scenario(tmp_path)))
    rc = main(["simulate", "--scenario", str(path), "--placement", "milp", "--routing", "shortest", "--format", "json",
               "--set", "policy_defaults.options.milp.sessions=3"])
    out = capsys.readouterr().out
    assert rc == 0
    doc = json.loads(out)
    assert any("unreachable" in n and "[3]" in n for n in doc["placement_notes"])
    assert doc["summary"]["num_completed"] == doc["summary"]["num_requests"]
