"""The repository cites only documents it contains (issue 10, item 7).

Forbidden: the founding documents kept outside the repository — the old contract and design files
(upper-case ``CONTRACTS`` / ``DESIGN`` Markdown names), the research notes (the word "reference" followed by a
section sign, ``<note>.md``) and paths into ``../shared``.  This file spells those names only in pieces, so
that a plain text search for them over the repository finds nothing.
Also, every ``<name>.md §N`` citation must name a Markdown file of the repository.
The one-off migration that rewrote the old citations ran in the commit that added this test.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".cff", ".toml"}
SKIP_DIRS = {".git", "__pycache__", ".ci-venv", ".venv", "build", "dist", ".pytest_cache", ".hypothesis"}
#: Files that must spell the forbidden names: this test.
EXEMPT = {"tests/test_citations.py"}

#: the forbidden citations, assembled so that this file itself never spells them whole
OLD_CONTRACT = "CONTRACTS" + ".md"
OLD_NOTE = "reference" + " §"

FORBIDDEN = [
    (OLD_CONTRACT, re.compile(r"CONTRACTS\.md")),
    ("DESIGN*.md", re.compile(r"DESIGN(?:-dynamics)?\.md")),
    (OLD_NOTE, re.compile(r"\breference\s+§")),
    ("research note", re.compile(r"\b(?:geo_distributed_inference|split_inference|gym_ecosystem|petals_and_peers|"
                                 r"serving_dynamics)\.md")),
    ("../shared", re.compile(r"\.\./shared|/work/shared")),
]
#: ``name.md §N`` (a section citation of a Markdown document).
MD_SECTION = re.compile(r"(?<![\w/.-])([\w./-]+\.md)`?\s+§")


def repo_files():
    for path in sorted(ROOT.rglob("*")):
        parts = path.relative_to(ROOT).parts
        if any(p in SKIP_DIRS or p.endswith(".egg-info") for p in parts):
            continue
        rel = path.relative_to(ROOT).as_posix()
        if path.is_file() and path.suffix in SUFFIXES and rel not in EXEMPT:
            yield rel, path


FILES = list(repo_files())
MD_FILES = {p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*.md")
            if not any(x in SKIP_DIRS for x in p.relative_to(ROOT).parts)}


def _hits(text: str) -> list[str]:
    out = []
    for label, rx in FORBIDDEN:
        for m in rx.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            out.append(f"{line}: {label} ({m.group(0)!r})")
    for m in MD_SECTION.finditer(text):
        name = m.group(1).removeprefix("./")
        if any(rx.search(name) for _, rx in FORBIDDEN):
            continue  # already reported above
        if not (name in MD_FILES or f"docs/{name}" in MD_FILES
                or any(f.rsplit("/", 1)[-1] == name for f in MD_FILES)):
            line = text.count("\n", 0, m.start()) + 1
            out.append(f"{line}: {name} is not in the repository")
    return out


def test_the_rules_catch_what_they_should():
    assert _hits(f"see {OLD_CONTRACT} §4 and DESIGN-dynamics.md") != []
    assert _hits(f"({OLD_NOTE}2.3)") != [] and _hits("(reference petals_and_peers.md §A.3)") != []
    assert _hits("cd ../shared/data") != []
    assert _hits("docs/nonexistent.md §3") != []
    assert _hits("(docs/contracts.md §4; docs/model.md §4.3; arXiv 2512.21884 eq. (3))") == []
    assert _hits("reference policies for the simulator") == []


def test_repository_docs_that_are_cited_exist():
    for doc in ("docs/contracts.md", "docs/model.md", "docs/architecture.md"):
        assert (ROOT / doc).is_file(), doc


def test_no_citation_of_a_document_outside_the_repository():
    bad = {rel: hits for rel, path in FILES if (hits := _hits(path.read_text(errors="replace")))}
    total = sum(len(h) for h in bad.values())
    detail = "\n".join(f"  {rel}:{h}" for rel, hits in sorted(bad.items()) for h in hits[:3])
    assert not bad, (f"{total} citation(s) of documents not in the repository, in {len(bad)} file(s) "
                     f"(cite docs/contracts.md, docs/model.md or docs/architecture.md instead):\n{detail}")
