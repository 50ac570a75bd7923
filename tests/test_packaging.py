"""Everything the package needs ships in the wheel: every source folder is a listed package and every
data file matches a package-data pattern (pyproject.toml), so a fresh ``pip install .`` behaves like
the editable install the tests run on."""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _package_of(folder: Path) -> str | None:
    """The dotted package a source folder installs as, through ``package-dir``."""
    rel = folder.relative_to(ROOT).as_posix()
    for pkg, src in sorted(CONFIG["package-dir"].items(), key=lambda kv: -len(kv[1])):
        if rel == src or rel.startswith(src + "/"):
            return pkg + rel[len(src):].replace("/", ".")
    return None


def _source_folders():
    for src in CONFIG["package-dir"].values():
        for path in sorted((ROOT / src).rglob("*")):
            if path.is_dir() and "__pycache__" not in path.parts and any(path.iterdir()):
                yield path
        yield ROOT / src


def test_every_source_folder_is_a_listed_package():
    listed = set(CONFIG["packages"])
    missing = sorted({pkg for folder in _source_folders()
                      if (pkg := _package_of(folder)) and any(folder.glob("*.py")) and pkg not in listed})
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_every_data_file_matches_a_package_data_pattern():
    listed = set(CONFIG["packages"])
    patterns = CONFIG.get("package-data", {})
    unshipped = []
    for folder in _source_folders():
        pkg = _package_of(folder)
        for f in folder.iterdir():
            if not f.is_file() or f.suffix in (".py", ".pyc") or f.name.startswith("."):
                continue
            ok = pkg in listed and any(fnmatch.fnmatch(f.name, pat) for pat in patterns.get(pkg, ()))
            if not ok:
                unshipped.append(f.relative_to(ROOT).as_posix())
    assert not unshipped, f"data files that a wheel would not ship: {unshipped}"
