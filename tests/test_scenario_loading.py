"""Scenario files are inert, bounded data, decoded safely (docs/scenarios.md, "Trust boundary and
limits"): the YAML reader, `--set` numeric forms, overflow after unit scaling, count maxima and the
topology / catalog papercuts.  Each kind is exercised on several fields or forms, not one example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from distllm_env import limits
from distllm_env.errors import ScenarioError
from distllm_env.instance import build_instance, validate_scenario
from distllm_env.scenario import load_scenario
from distllm_env.yaml_safe import load_yaml_bytes, load_yaml_file, load_yaml_text
from tests.conftest import preset_dict

TINY = Path(__file__).resolve().parents[1] / "scenarios" / "tiny.yaml"


def _tiny_text() -> str:
    return TINY.read_text()


def _write(tmp_path, text: "str | bytes", name: str = "s.yaml") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


def _one_line_error(fn, *args) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        fn(*args)
    assert "\n" not in str(info.value)
    assert len(str(info.value)) < 400
    return info.value


# --------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data,byte,offset", [(b"name: caf\xe9\n", 0xE9, 9), (b"\xff\xfe", 0xFF, 0),
                                              (b"model: toy\ndescription: \x80abc\n", 0x80, 24)])
def test_non_utf8_file_names_the_byte_and_offset(tmp_path, data, byte, offset):
    p = _write(tmp_path, data)
    err = _one_line_error(load_scenario, str(p))
    assert str(err) == f"{p}: not UTF-8 text (byte 0x{byte:02x} at offset {offset})"


def test_utf8_with_bom_and_non_ascii_text_load(tmp_path):
    p = _write(tmp_path, ("\ufeff" + _tiny_text().replace("name: tiny", "name: café")).encode())
    assert load_scenario(str(p)).name == "café"


@pytest.mark.parametrize("text", [
    "description: " + "[" * 5000 + "]" * 5000,
    "description: " + "{a: " * 3000 + "1" + "}" * 3000,
    "a:\n" + "".join("  " * i + "- \n" for i in range(1, 200)),
    "description: " + "[" * 5000,                       # unterminated as well
])
def test_deep_nesting_is_refused_without_recursion(text):
    err = _one_line_error(load_yaml_text, text, "deep.yaml")
    assert f"nested deeper than {limits.MAX_YAML_DEPTH} levels" in str(err)


def test_nesting_up_to_the_limit_is_fine():
    depth = limits.MAX_YAML_DEPTH - 1
    assert load_yaml_text("[" * depth + "1" + "]" * depth) is not None


@pytest.mark.parametrize("field", ["description", "name"])
def test_alias_bomb_in_a_scalar_field_is_refused(tmp_path, field):
    bomb = "".join(f"l{i}: &l{i} [*l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}]\n"
                   for i in range(1, 12))
    text = "x: &l0 lol\n" + bomb + f"{field}: *l11\n"
    err = _one_line_error(load_yaml_text, text, "bomb.yaml")
    assert "aliases" in str(err) and "bomb.yaml line 2" in str(err)


def test_alias_bomb_in_policy_options_is_refused(tmp_path):
    text = _tiny_text() + ("policy_defaults:\n  options:\n    ws-rr: &a {x: [1, 2, 3]}\n"
                           "    cg-bp: {y: [*a, *a, *a, *a]}\n")
    err = _one_line_error(load_scenario, str(_write(tmp_path, text)))
    assert err.path == "policy_defaults.options.cg-bp.y.0" and "aliases (*a)" in str(err)


@pytest.mark.parametrize("text", ["a: &a [*a]", "a: &a {b: *a}", "&a [*a, *a]"])
def test_recursive_alias_is_refused(text):
    err = _one_line_error(load_yaml_text, text, "rec.yaml")
    assert "aliases" in str(err)


def test_merge_key_through_an_alias_is_refused():
    err = _one_line_error(load_yaml_text, "base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n", "m.yaml")
    assert err.path == "other.<<"


def test_duplicate_top_level_key_names_key_and_lines(tmp_path):
    text = _tiny_text() + "model: toy-8L\n"
    err = _one_line_error(load_scenario, str(_write(tmp_path, text)))
    assert err.path == "model"
    first = 1 + _tiny_text().splitlines().index(next(ln for ln in _tiny_text().splitlines() if ln.startswith("model:")))
    assert f"first at line {first}" in str(err) and f"line {len(_tiny_text().splitlines()) + 1}" in str(err)


@pytest.mark.parametrize("text,path,line", [
    ("workload:\n  num_requests: 3\n  arrival_rate_per_s: 1\n  num_requests: 5\n", "workload.num_requests", 4),
    ("servers:\n  - {gpu: a, node: b, gpu: c}\n", "servers.0.gpu", 2),
    ("a: {b: {c: 1, c: 2}}\n", "a.b.c", 1),
])
def test_duplicate_nested_keys_name_the_dotted_path(text, path, line):
    err = _one_line_error(load_yaml_text, text, "dup.yaml")
    assert err.path == path and f"dup.yaml line {line}" in str(err) and "duplicate key" in str(err)


@pytest.mark.parametrize("text,line,col", [
    ("a: {b: [1, 2}\n", 1, 13),
    ("a: 1\n b: 2\nc: [\n", 2, 3),
    ("model: toy\n\tservers: []\n", 2, 1),
    ("a: 'unterminated\n", 2, 1),
])
def test_yaml_syntax_error_is_one_line_with_file_line_and_column(tmp_path, text, line, col):
    p = _write(tmp_path, text)
    err = _one_line_error(load_scenario, str(p))
    assert str(err).startswith(f"{p}: invalid YAML at line {line}, column {col}: ")


@pytest.mark.parametrize("text", ["a: !!python/object/apply:os.system [ls]", "a: !!python/name:os.system",
                                  "a: !!binary aGk=", "a: !!set {x, y}", "a: !local x", "a: !!omap [{x: 1}]"])
def test_object_building_tags_are_refused(text):
    err = _one_line_error(load_yaml_text, text, "tag.yaml")
    assert "not allowed" in str(err)


def test_only_plain_data_types_come_back():
    data = load_yaml_text("a: 2024-01-01\nb: 1\nc: 1.5\nd: null\ne: [true, x]\n")
    assert data == {"a": "2024-01-01", "b": 1, "c": 1.5, "d": None, "e": [True, "x"]}


def test_oversized_file_and_huge_integer_literal_are_refused(tmp_path):
    p = _write(tmp_path, b"description: " + b"x" * (limits.MAX_YAML_BYTES + 1))
    assert "larger than" in str(_one_line_error(load_yaml_file, p))
    assert "too large" in str(_one_line_error(load_yaml_text, "a: " + "9" * 6000))


def test_agent_yaml_helper_reads_files_and_bytes(tmp_path):
    p = _write(tmp_path, "ppo:\n  n_steps: 1e3\n", "a.yml")
    assert load_yaml_file(p) == {"ppo": {"n_steps": 1000.0}}
    assert load_yaml_bytes(b"x: .5") == {"x": 0.5}
    assert "cannot read" in str(_one_line_error(load_yaml_file, tmp_path / "missing.yml"))


# --------------------------------------------------------------------------------------------------
# Numbers: --set forms, strings, finiteness after scaling, maxima
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [("1e3", 1000.0), ("1E-3", 1e-3), (".5", 0.5), ("2.5e+1", 25.0),
                                            ("-0.5e1", -5.0), ("3", 3)])
def test_set_accepts_numeric_forms(value, expected):
    from distllm_env.scenario import parse_override

    assert parse_override(f"x={value}")[1] == expected


def test_set_numeric_forms_reach_the_fields():
    sc = load_scenario("tiny", ["workload.arrival_rate_per_s=1E-3", "workload.num_requests=1e3",
                                "network.token_overhead_ms=.5"])
    assert sc.workload.arrival_rate_per_s == 1e-3 and sc.workload.num_requests == 1000
    assert sc.network.token_overhead_s == pytest.approx(0.5e-3)


def test_number_fields_accept_float_literal_strings(tiny_dict):
    tiny_dict["workload"]["arrival_rate_per_s"] = "2e-1"
    tiny_dict["workload"]["num_requests"] = "1e2"
    sc = load_scenario(tiny_dict)
    assert sc.workload.arrival_rate_per_s == 0.2 and sc.workload.num_requests == 100
    tiny_dict["workload"]["arrival_rate_per_s"] = "fast"
    assert _one_line_error(load_scenario, tiny_dict).path == "workload.arrival_rate_per_s"


@pytest.mark.parametrize("override,field", [
    ("servers.0.memory_gb=1.0e+300", "servers.0.memory_gb"),
    ("gpus.toy-gpu.memory_gb=1e300", "gpus.toy-gpu.memory_gb"),
    ("gpus.toy-gpu.bf16_tflops=1e300", "gpus.toy-gpu.bf16_tflops"),
    ("gpus.toy-gpu.memory_bandwidth_gbps=1e308", "gpus.toy-gpu.memory_bandwidth_gbps"),
    ("models.toy-8L.params_per_block=1e30", "models.toy-8L.params_per_block"),
    ("models.toy-8L.params_per_block=1000000000000000000000000000000", "models.toy-8L.params_per_block"),
    ("network.token_overhead_ms=1e308", "network.token_overhead_ms"),
    ("gpus.toy-gpu.calibration.toy-8L.tau_decode_ms=1e-320", "gpus.toy-gpu.calibration.toy-8L.tau_decode_ms"),
    ("simulator.allocation_delay_s={petals: 1e12}", "simulator.allocation_delay_s.petals"),
])
def test_huge_numbers_are_refused_after_scaling(override, field):
    err = _one_line_error(load_scenario, "tiny", [override])
    assert err.path == field


def test_scaled_values_stay_finite_for_devices():
    d = preset_dict("tiny")
    d["devices"] = {"phone": {"peak_tflops": 1e300, "memory_gb": 8, "uplink_mbps": 1, "downlink_mbps": 1}}
    assert _one_line_error(load_scenario, d).path == "devices.phone.peak_tflops"


@pytest.mark.parametrize("override,field", [
    ("workload.num_requests=1000000000", "workload.num_requests"),
    ("workload.num_requests=18446744073709551616", "workload.num_requests"),
    ("topology.clusters.sizes=[1, 2, 18446744073709551616]", "topology.clusters.sizes.2"),
    ("topology.clusters.sizes=[1000, 1000, 1000]", "topology.clusters.sizes"),
    ("topology={geo: {num_nodes: 1000000}}", "topology.geo.num_nodes"),
    ("servers={count: 1e9, gpu_mix: {toy-gpu: 1}}", "servers.count"),
    ("clients={count: 100000}", "clients.count"),
    ("models.toy-8L.num_blocks=1e9", "models.toy-8L.num_blocks"),
    ("models.toy-8L.d_model=1e12", "models.toy-8L.d_model"),
    ("models.toy-8L.max_sequence_tokens=1e12", "models.toy-8L.max_sequence_tokens"),
    ("workload.output_tokens={dist: uniform, low: 1, high: 1e15}", "workload.output_tokens.high"),
    ("gpus.toy-gpu.max_blocks=1e18", "gpus.toy-gpu.max_blocks"),
    ("servers.0.node=99999999999999999999", "servers.0.node"),
])
def test_counts_above_their_maximum_are_refused(override, field):
    err = _one_line_error(load_scenario, "tiny", [override])
    assert err.path == field
    assert "≤" in str(err) or "at most" in str(err) or "[0," in str(err)


def test_split_budget_and_requests_have_maxima():
    err = _one_line_error(load_scenario, "splitllm-edge", ["split.budget_steps=1e7"])
    assert err.path == "split.budget_steps"
    err = _one_line_error(load_scenario, "splitllm-edge", ["split.num_requests=1e9"])
    assert err.path == "split.num_requests"


@pytest.mark.parametrize("rate", ["1.0e-300", "5.0e-324", "0", "-1", "1e-10", "1e7", ".inf", ".nan"])
def test_arrival_rate_must_keep_arrival_times_finite(rate):
    err = _one_line_error(load_scenario, "tiny", [f"workload.arrival_rate_per_s={rate}"])
    assert err.path == "workload.arrival_rate_per_s"


def test_smallest_arrival_rate_gives_finite_arrivals_within_the_horizon():
    from distllm_env.workload import generate_requests

    sc = load_scenario("tiny", [f"workload.arrival_rate_per_s={limits.MIN_ARRIVAL_RATE_PER_S}",
                                "workload.num_requests=1"])
    reqs = generate_requests(build_instance(sc, 0), 0)
    assert [r.arrival_s for r in reqs] == [0.0]
    # five requests at that rate would arrive around 5·10^9 s, past the horizon: refused, not rounded
    with pytest.raises(ScenarioError) as err:
        load_scenario("tiny", [f"workload.arrival_rate_per_s={limits.MIN_ARRIVAL_RATE_PER_S}",
                               "workload.num_requests=5"])
    assert err.value.path == "workload.arrival_rate_per_s" and "horizon" in str(err.value)


@pytest.mark.parametrize("preset,overrides", [
    ("tiny", ["workload.time_scale=1e-300"]),                          # poisson, scaled
    ("azure-conv-swarm", ["workload.time_scale=1e-300"]),              # a trace window, scaled
    ("azure-conv-swarm", ["workload.time_scale=1e-7"]),                # ~10^10 s span
])
def test_time_scale_that_pushes_arrivals_past_the_horizon_is_refused(preset, overrides):
    # found by benchmarks/fuzz.py: arrivals near 3e299 s were recorded completed in zero time
    with pytest.raises(ScenarioError) as err:
        load_scenario(preset, overrides)
    assert err.value.path == "workload.time_scale" and "horizon" in str(err.value)


@pytest.mark.parametrize("rows,fragment", [
    ("0,10,5\ninf,10,5\n", "finite"),
    ("0,10,5\nnan,10,5\n", "finite"),
    ("2,10,5\n1,10,5\n", "non-decreasing"),
    ("0,10,99999999999999999999999\n", "[1, "),
    ("0,10,5,-1\n", "client"),
])
def test_trace_values_are_checked(tmp_path, tiny_dict, rows, fragment):
    from distllm_env.traces import load_trace

    header = "arrival_s,prompt_tokens,output_tokens" + (",client" if rows.count(",") > rows.count("\n") * 2 else "")
    trace = _write(tmp_path, header + "\n" + rows, "t.csv")
    load_trace.cache_clear()
    tiny_dict["workload"] = {"arrival": "trace", "trace": str(trace)}
    err = _one_line_error(load_scenario, tiny_dict)
    assert err.path == "workload.trace" and fragment in str(err)


def test_published_gap_trace_with_overflowing_sum_is_refused(tmp_path, tiny_dict):
    from distllm_env.traces import load_trace

    trace = _write(tmp_path, "0\t1e308\t1e308\n", "gaps.txt")
    load_trace.cache_clear()
    tiny_dict["workload"] = {"arrival": "trace", "trace": str(trace)}
    assert "finite" in str(_one_line_error(load_scenario, tiny_dict))


def test_echoed_values_are_truncated():
    long = "x" * 10_000
    for override in (f"servers.0.gpu={long}", f"model={long}", f"workload.arrival={long}",
                     f"workload.num_requests={long}", f"topology={{geo: {{cities: [{long}]}}}}"):
        with pytest.raises(ScenarioError) as info:
            validate_scenario("tiny", [override])
        assert long[:100] not in str(info.value) and len(str(info.value)) < 1200


# --------------------------------------------------------------------------------------------------
# Topology / catalog papercuts, unused bandwidth keys, limits table
# --------------------------------------------------------------------------------------------------

def _graph(tmp_path, edges: str, n_edges: int) -> Path:
    return _write(tmp_path, "NODES 2\nlabel x y\n0_a 0 0\n1_b 1 1\n\n"
                            f"EDGES {n_edges}\nlabel src dest weight bw delay\n" + edges, "g.graph")


@pytest.mark.parametrize("edges,n,line", [("e0 0 1 1 1 100\ne1 1 7 1 1 100\n", 2, 9),
                                          ("e0 -1 0 1 1 100\n", 1, 8),
                                          ("e0 0 1 1 1 abc\n", 1, 8)])
def test_graph_edge_errors_name_the_file_and_line(tmp_path, tiny_dict, edges, n, line):
    g = _graph(tmp_path, edges, n)
    tiny_dict["topology"] = {"repetita": str(g)}
    tiny_dict["servers"] = [{"gpu": "toy-gpu", "node": "0_a"}]
    tiny_dict["clients"] = [{"node": "1_b"}]
    from distllm_env.topology import load_repetita

    load_repetita.cache_clear()
    err = _one_line_error(validate_scenario, tiny_dict)
    assert err.path == "topology" and f"{g}: line {line}:" in str(err)


@pytest.mark.parametrize("content", ["null", "[1, 2]", "3", '"text"', '{"e": null}', '{"e": [1]}'])
def test_petals_json_that_is_not_an_object_is_a_scenario_error(tmp_path, content):
    p = _write(tmp_path, content, "cal.json")
    d = preset_dict("tiny")
    d["gpus"]["toy-gpu"]["calibration"] = {"toy-8L": {"petals_json": str(p), "entry": "e"}}
    err = _one_line_error(load_scenario, d)
    assert err.path == "gpus.toy-gpu.calibration.toy-8L"


@pytest.mark.parametrize("regions,bad", [(["europe", "northamerica", "asia"], "northamerica"), (["mars"], "mars")])
def test_unknown_regions_are_refused_with_the_known_list(tiny_dict, regions, bad):
    from distllm_env.topology import known_regions

    tiny_dict["topology"] = {"geo": {"num_nodes": 10, "regions": regions}}
    err = _one_line_error(load_scenario, tiny_dict)
    assert err.path.startswith("topology.geo.regions.") and repr(bad) in str(err)
    assert all(r in str(err) for r in known_regions())


def test_known_regions_are_accepted(tiny_dict):
    from distllm_env.topology import known_regions

    tiny_dict["topology"] = {"geo": {"num_nodes": 12, "regions": list(known_regions())[:2]}}
    tiny_dict["servers"] = {"count": 3, "gpu_mix": {"toy-gpu": 1}}
    tiny_dict["clients"] = {"count": 1}
    sc = validate_scenario(tiny_dict)
    assert sc.topology.regions == tuple(list(known_regions())[:2])


@pytest.mark.parametrize("key", ["intra_bandwidth_gbps", "inter_bandwidth_gbps"])
def test_unused_cluster_bandwidth_keys_are_refused(key):
    err = _one_line_error(load_scenario, "tiny", [f"topology.clusters.{key}=1"])
    assert err.path == f"topology.clusters.{key}" and "docs/model.md" in str(err)


def test_docs_limits_table_matches_the_constants():
    text = (Path(__file__).resolve().parents[1] / "docs" / "scenarios.md").read_text()
    section = text.split("## Trust boundary and limits", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| ([0-9.e+-]+) \|", section, flags=re.M))
    assert set(rows) == set(limits.ALL_LIMITS)
    for name, value in limits.ALL_LIMITS.items():
        assert float(rows[name]) == value, name


def test_scenario_package_never_imports_instance():
    """Parsing builds no instance: no module of distllm_env/scenario/ imports distllm_env.instance
    (which imports the scenario package), so the two cannot form an import cycle."""
    import ast

    root = Path(__file__).resolve().parents[1] / "distllm_env" / "scenario"
    for file in root.glob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module not in ("instance", "distllm_env.instance"), file.name
                assert not (node.level >= 1 and node.module is None
                            and any(a.name == "instance" for a in node.names)), file.name
