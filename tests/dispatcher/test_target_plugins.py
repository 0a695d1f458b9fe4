"""Target types are plug-ins found through the entry point group ``mercure.targets``: the
built-in ones as registered in pyproject.toml, and a site's own in a separate package
(tests/dispatcher/plugin_example), found, validated, tested and sent through end to end."""

from __future__ import annotations

import asyncio
import importlib
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dispatch_site import Site

from mercure.core.config import validate_document
from mercure.core.config.models import FolderTarget
from mercure.core.config.reference import render_reference
from mercure.core.config.targettypes import BUILTIN, GROUP, installed_types, registry, reload
from mercure.core.datafolder import Stage
from mercure.core.errors import ConfigError
from mercure.dispatcher.targets import run_test
from mercure.testing.series import generate_series

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = Path(__file__).resolve().parent / "plugin_example"


@contextmanager
def on_path(folder: Path) -> Iterator[None]:
    """Packages (and their .dist-info) in ``folder`` are installed while the block runs."""
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    reload()
    try:
        yield
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m.startswith("mercure_target_example")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        reload()


def dist_info(folder: Path, name: str, entry_points: dict[str, str]) -> Path:
    """A package's metadata as pip writes it, declaring ``entry_points`` in the group."""
    info = folder / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{lines}")
    return folder


def test_builtin_types_in_pyproject_are_the_fallback_table() -> None:
    """pyproject.toml registers exactly the built-in types of targettypes.BUILTIN."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"][GROUP] == dict(BUILTIN)


def test_builtin_types_load_through_their_entry_points(tmp_path: Path) -> None:
    """With pyproject's entry points installed, every built-in type comes from them, not from
    the fallback for stale metadata."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    folder = dist_info(tmp_path, "mercure-router-entry-points", project["entry-points"][GROUP])
    with on_path(folder):
        sources = {name: kind.source for name, kind in installed_types().items()}
    assert set(sources) >= set(BUILTIN)
    assert all(sources[name] != "built-in" for name in BUILTIN), sources


def test_site_plugin_is_found_validated_tested_and_sent_through(site: Site, tmp_path: Path) -> None:
    """A separate package's type: its config validates, its class is imported only when
    used, test-target runs its steps, and a task is delivered through it."""
    drop = tmp_path / "drop"
    drop.mkdir()
    with on_path(EXAMPLE):
        assert installed_types()["example"].source == "mercure-target-example"
        loaded = validate_document(
            {"targets": {"lab": {"type": "example", "folder": str(drop), "label": "lab"}}}
        )
        assert type(loaded.config.targets["lab"]).__name__ == "ExampleTarget"
        assert "mercure_target_example.plugin" not in sys.modules
        with pytest.raises(ConfigError, match=r"targets\.lab\.label"):
            validate_document({"targets": {"lab": {"type": "example", "folder": "x", "label": ""}}})
        assert "## `targets.<name> (type=example)`" in render_reference()

        report = asyncio.run(run_test("lab", loaded.config.targets["lab"]))
        assert report.ok and report.type == "example"
        assert [step.name for step in report.steps] == ["folder"]

        series = generate_series(tmp_path / "series", "tiny", 3)
        site.configure({"lab": {"type": "example", "folder": str(drop), "label": "lab"}})
        task_id = site.add_task(series.paths, ["lab"])
        site.run_until_finished(task_id)
        assert site.where(task_id) == Stage.SUCCESS
        assert sorted(p.name for p in drop.iterdir()) == sorted(
            f"lab-{p.name}" for p in series.paths
        )
        assert "mercure_target_example.plugin" in sys.modules
    assert "example" not in installed_types()


def test_unknown_type_names_the_installed_ones() -> None:
    """A type no package provides: the error is at the target and lists what is installed."""
    with pytest.raises(ConfigError) as caught:
        validate_document({"targets": {"pacs": {"type": "dicomm", "host": "x"}}})
    [issue] = caught.value.issues
    assert issue.path == "targets.pacs"
    assert issue.message.startswith("unknown target type 'dicomm'; the installed types are: ")
    assert "dicom, dicomweb, dummy, folder, rsync, s3, sftp, xnat" in issue.message
    with pytest.raises(ConfigError, match="`type` is missing; the installed types are"):
        validate_document({"targets": {"pacs": {"host": "x"}}})


def test_plugin_that_cannot_be_loaded_says_why(tmp_path: Path) -> None:
    """An entry point whose module is missing: its type is reported unusable, with the reason,
    and every other type still works."""
    folder = dist_info(tmp_path, "broken-plugin", {"broken": "no_such_module_here:Model"})
    with on_path(folder):
        assert "broken" in registry().broken
        with pytest.raises(ConfigError) as caught:
            validate_document({"targets": {"x": {"type": "broken"}}})
        message = caught.value.issues[0].message
        assert "target type 'broken' is installed but unusable" in message
        assert "no_such_module_here" in message
        validate_document({"targets": {"f": {"type": "folder", "folder": str(tmp_path)}}})


def test_a_package_cannot_take_a_builtin_type_name(tmp_path: Path) -> None:
    """An entry point named after a built-in type is ignored: `folder` stays our folder."""
    folder = dist_info(tmp_path, "usurper", {"folder": "mercure_target_example:ExampleTarget"})
    with on_path(folder):
        loaded = validate_document({"targets": {"f": {"type": "folder", "folder": "/srv/x"}}})
        assert isinstance(loaded.config.targets["f"], FolderTarget)
        assert "mercure_target_example" not in sys.modules


def test_plugin_model_without_its_literal_type_is_refused(tmp_path: Path) -> None:
    """An entry point pointing at a model whose `type` is not Literal[<its name>]."""
    folder = dist_info(tmp_path, "mislabelled", {"other": "mercure_target_example:ExampleTarget"})
    folder_with_example = tmp_path
    (folder_with_example / "mercure_target_example").symlink_to(EXAMPLE / "mercure_target_example")
    with on_path(folder):
        reason = registry().broken["other"]
    assert "must declare type: Literal['other']" in reason
