"""The README's Python examples run as written (blocks naming a user's own package are skipped)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S) if "my_pkg" not in b]


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})


def test_readme_has_exactly_the_two_setup_commands():
    setup = README.read_text().split("## Set-up", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [ln for ln in setup.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert commands == ["pip install -e . && distllm-env simulate --scenario paper-clustered",
                        'pip install torch==2.13.0 && pip install -e ".[dev,rl]" && python -m pytest -q']
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1] in ci
