"""The core, the record layer and the judging component type-check clean under mypy.

``make lint`` checks the whole package against the allow-list in pyproject.toml; these tests
keep the two bottom layers and the judging component off that list and clean, in a few seconds (the rest of the package,
with torch and transformers behind it, takes the better part of a minute without a cache).
"""

from __future__ import annotations

import sys
from pathlib import Path

from mypy import api

if sys.version_info >= (3, 11):
    import tomllib
else:  # mypy itself depends on tomli before 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CLEAN = ["limakit.core", "limakit.records", "limakit.judging"]


def _allow_listed() -> list[str]:
    """The module patterns whose errors the project's mypy settings ignore."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns: list[str] = []
    for override in config["tool"]["mypy"].get("overrides", []):
        if override.get("ignore_errors"):
            modules = override["module"]
            patterns += [modules] if isinstance(modules, str) else modules
    return patterns


def _covers(pattern: str, package: str) -> bool:
    """Whether ``pattern`` (``a.b`` or ``a.b.*``) silences a module in ``package``."""
    base = pattern.removesuffix(".*")
    inside = base == package or base.startswith(package + ".")
    return inside or (pattern.endswith(".*") and package.startswith(base + "."))


def test_covers_reads_patterns_as_mypy_does():
    assert _covers("limakit.core.*", "limakit.core")
    assert _covers("limakit.*", "limakit.core")
    assert _covers("limakit.core.files", "limakit.core")
    assert not _covers("limakit", "limakit.core")
    assert not _covers("limakit.corex.*", "limakit.core")
    assert not _covers("limakit.evaluation.*", "limakit.core")


def test_clean_layers_are_not_allow_listed():
    patterns = _allow_listed()
    assert patterns  # read from pyproject.toml
    assert [(p, pkg) for p in patterns for pkg in CLEAN if _covers(p, pkg)] == []


def test_clean_layers_type_check(tmp_path):
    paths = [str(ROOT.joinpath(*pkg.split("."))) for pkg in CLEAN]
    config = str(ROOT / "pyproject.toml")
    stdout, stderr, status = api.run(
        ["--config-file", config, "--cache-dir", str(tmp_path), *paths]
    )
    assert status == 0, stdout + stderr
    assert "no issues found" in stdout
