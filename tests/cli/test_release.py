"""Release hygiene: licence, one version, a changelog, and runtime dependencies that are used."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

import mercure

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTION = "mercure-router"


def pyproject() -> dict:
    """The parsed pyproject.toml."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def requirement_name(requirement: str) -> str:
    """The normalised distribution name of a requirement string (``psycopg[binary]>=3`` ...)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name is not None, requirement
    return re.sub(r"[-_.]+", "-", name.group(0)).lower()


def test_licence_file_is_mit_and_declared() -> None:
    """LICENSE holds the MIT text for the project's developers; pyproject and metadata say MIT."""
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")
    assert re.search(r"Copyright \(c\) \d{4} The mercure-router developers", text)
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text
    project = pyproject()["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    metadata = importlib.metadata.metadata(DISTRIBUTION)
    assert metadata["License-Expression"] == "MIT"


def test_version_has_one_source() -> None:
    """pyproject takes the version from mercure.__version__ instead of a copy of its own."""
    config = pyproject()
    assert "version" not in config["project"]
    assert "version" in config["project"]["dynamic"]
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mercure.__version__"}


def test_cli_version_matches_the_package_metadata() -> None:
    """`mercure --version`, the installed metadata and mercure.__version__ agree."""
    out = subprocess.run(
        [sys.executable, "-m", "mercure", "--version"], capture_output=True, text=True, check=True
    ).stdout
    installed = importlib.metadata.version(DISTRIBUTION)
    assert out.strip() == f"mercure-router {installed}"
    assert installed == mercure.__version__


def test_changelog_has_an_unreleased_section() -> None:
    """CHANGELOG.md exists with a title and an Unreleased section at the top."""
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings[0].startswith("# Changelog")
    assert headings[1] == "## Unreleased"


def _imported_top_level_modules(root: Path) -> set[str]:
    """Top-level names imported anywhere under ``root``: statements and importlib calls."""
    return _imported_top_level_modules_of_files(root.rglob("*.py"))


def _imported_top_level_modules_of_files(paths: Iterable[Path]) -> set[str]:
    """Top-level names the given files import: statements and importlib calls."""
    names: set[str] = set()
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.Call) and node.args:
                # importlib.import_module("x") / __import__("x"): lazy imports count too.
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                first = node.args[0]
                if called in ("import_module", "__import__") and isinstance(
                    first, ast.Constant | ast.JoinedStr
                ):
                    text = first.value if isinstance(first, ast.Constant) else ""
                    if isinstance(first, ast.JoinedStr) and isinstance(
                        first.values[0], ast.Constant
                    ):
                        text = str(first.values[0].value)
                    if isinstance(text, str) and text:
                        names.add(text.split(".")[0])
    return names


def test_pynetdicom_is_a_test_dependency_only() -> None:
    """src/ never imports pynetdicom (not even lazily), so only the test extra requires it."""
    config = pyproject()["project"]
    runtime = {requirement_name(r) for r in config["dependencies"]}
    test = {requirement_name(r) for r in config["optional-dependencies"]["test"]}
    assert "pynetdicom" not in _imported_top_level_modules(ROOT / "src")
    assert "pynetdicom" not in runtime
    assert "pynetdicom" in test


def _with_their_requirements(names: set[str]) -> set[str]:
    """Distribution names plus everything they require at run time, transitively."""
    closure, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in closure:
            continue
        closure.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        # Requirements behind an extra ("; extra == 'x'") are not installed by the dependency.
        todo.extend(requirement_name(r) for r in requires if "extra ==" not in r)
    return closure


def test_src_imports_only_runtime_dependencies() -> None:
    """Every third-party module the product imports comes with its runtime dependencies.

    ``mercure.testing`` (the test frame, with its pytest plugin) is the exception by design:
    it needs the test extra.
    """
    config = pyproject()["project"]
    runtime = _with_their_requirements({requirement_name(r) for r in config["dependencies"]})
    providers = importlib.metadata.packages_distributions()
    product = ROOT / "src" / "mercure"
    imported: set[str] = set()
    for package in product.iterdir():
        if package.is_dir() and package.name != "testing":
            imported |= _imported_top_level_modules(package)
    imported |= _imported_top_level_modules_of_files(product.glob("*.py"))
    for name in sorted(imported):
        if name in sys.stdlib_module_names or name in ("mercure", "__future__"):
            continue
        distributions = {requirement_name(d) for d in providers.get(name, [])}
        assert distributions & runtime, f"src/ imports {name} ({distributions or 'not installed'})"
