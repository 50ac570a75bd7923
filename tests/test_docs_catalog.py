"""The generated catalog lists of docs/scenarios.md match the code (issue 10, item 3).

Regenerate with ``python -m distllm_env.catalog_docs docs/scenarios.md``.
"""

from pathlib import Path

import pytest

from distllm_env.catalog import default_catalog
from distllm_env.catalog_docs import BEGIN, END, render_catalog_tables, update_markdown
from distllm_env.topology import REPETITA_TOPOLOGIES, geo_topology, known_regions, world_cities

DOC = Path(__file__).resolve().parents[1] / "docs" / "scenarios.md"


def test_generated_tables_are_in_sync():
    text = DOC.read_text()
    assert update_markdown(text) == text, (
        "docs/scenarios.md is out of date: run `python -m distllm_env.catalog_docs docs/scenarios.md`")


def test_tables_name_every_key_the_code_accepts():
    generated = render_catalog_tables()
    cat = default_catalog()
    for key in [*cat.gpus, *cat.models, *cat.devices, *known_regions(), *REPETITA_TOPOLOGIES,
                *(c.name for c in world_cities())]:
        assert f"`{key}`" in generated, key


def test_documented_geo_node_name_is_the_generated_one():
    topo = geo_topology(cities=["London", "Paris", "New_York", "Tokyo"])
    assert topo.nodes[3] == "n3_Tokyo" and topo.nodes[2] == "n2_New_York"
    assert "`n{i}_{City}`" in render_catalog_tables()


def test_measured_pairs_are_marked_bold_and_derived_ones_not():
    generated = render_catalog_tables()
    assert "**3.22**" in generated and "**16.25**" in generated  # BLOOM-176B on A100-80GB / MIG-1g.10gb
    tau_rows = [ln for ln in generated.splitlines() if ln.startswith("| `") and ln.count("|") == 11]
    assert len(tau_rows) == len(default_catalog().models)
    assert sum(row.count("**") for row in tau_rows) == 2 * 2


def test_update_markdown_needs_both_markers():
    with pytest.raises(ValueError):
        update_markdown("no markers here")
    with pytest.raises(ValueError):
        update_markdown(f"{END}\n{BEGIN}\n")
    once = update_markdown(f"before\n{BEGIN}\nSTALE\n{END}\nafter\n")
    assert once.startswith("before\n") and once.endswith(f"{END}\nafter\n") and "STALE" not in once
    assert update_markdown(once) == once
