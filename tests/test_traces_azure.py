"""The built-in Azure LLM inference traces 2023 (distllm_env/data/traces/SOURCE.md)."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest

from distllm_env.errors import ScenarioError
from distllm_env.traces import AZURE_TRACES, load_trace, parse_azure_trace


@pytest.mark.parametrize("name,rows,span_s,first", [
    ("azure-conv-2023", 19_366, 3501.721937, (374, 44)),
    ("azure-code-2023", 8_819, 3435.948056, (4808, 10)),
])
def test_builtin_azure_traces_load_offline(name, rows, span_s, first):
    tr = load_trace(name)
    assert len(tr.arrival_s) == rows == len(tr.prompt_tokens) == len(tr.output_tokens)
    assert tr.arrival_s[0] == 0.0 and np.all(np.diff(tr.arrival_s) >= 0)
    assert tr.arrival_s[-1] == pytest.approx(span_s, abs=1e-6)
    assert (int(tr.prompt_tokens[0]), int(tr.output_tokens[0])) == first
    assert tr.prompt_tokens.min() >= 1 and tr.output_tokens.min() >= 1
    assert tr.client is None


def test_measured_facts_of_the_azure_traces():
    """The numbers quoted in issue 11 and docs/scenarios.md."""
    conv, code = load_trace("azure-conv-2023"), load_trace("azure-code-2023")
    for tr, cv, lo, hi in [(conv, 1.09, 37, 507), (code, 13.15, 0, 632)]:
        g = np.diff(tr.arrival_s)
        assert g.std() / g.mean() == pytest.approx(cv, abs=0.005)
        per_min = np.bincount((tr.arrival_s // 60).astype(int))
        assert (per_min.min(), per_min.max()) == (lo, hi)
    assert conv.nominal_rate_per_s == pytest.approx(5.53, abs=0.005)


def test_attribution_and_licence_ship_with_the_traces():
    d = resources.files("distllm_env").joinpath("data/traces")
    source = d.joinpath("SOURCE.md").read_text()
    assert "CC-BY 4.0" in source or "Creative Commons Attribution 4.0" in source
    assert "Splitwise" in source
    assert "Attribution 4.0" in d.joinpath("LICENSE").read_text()
    for file in AZURE_TRACES.values():
        assert d.joinpath(file).is_file()


@pytest.mark.parametrize("text,fragment", [
    ("a,b,c\n", "header"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n", "empty"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\nnot a date,1,2\n", "rows"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,0,2\n", "token counts"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,1,2\n2023-11-16 18:15:45.1,1,2\n",
     "non-decreasing"),
])
def test_malformed_azure_text_names_the_field(text, fragment):
    with pytest.raises(ScenarioError) as info:
        parse_azure_trace(text, "x.csv")
    assert info.value.path == "workload.trace" and fragment in str(info.value)


def test_unknown_trace_lists_the_builtin_names():
    with pytest.raises(ScenarioError) as info:
        load_trace("azure-conv-2024")
    assert "azure-conv-2023" in str(info.value)
