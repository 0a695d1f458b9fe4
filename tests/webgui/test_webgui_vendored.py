"""The vendored front-end libraries are exactly the files VENDORED.json records."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mercure.webgui

VENDOR = Path(mercure.webgui.__file__).parent / "static" / "vendor"
ROOT = Path(__file__).resolve().parents[2]


def test_every_vendored_file_matches_its_recorded_checksum() -> None:
    """Each file named in VENDORED.json has its sha256, and no other file is in vendor/."""
    manifest = json.loads((VENDOR / "VENDORED.json").read_text())
    recorded = {}
    for package in manifest["packages"]:
        assert package["name"] and package["version"] and package["licence"]
        for name, entry in package["files"].items():
            recorded[name] = entry["sha256"]
    actual = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in VENDOR.iterdir()
        if path.name != "VENDORED.json"
    }
    assert actual == recorded


def test_versions_are_pinned_in_the_refresh_script() -> None:
    """The script pins the exact versions VENDORED.json records (refreshing changes both)."""
    script = (ROOT / "scripts" / "refresh-frontend.sh").read_text()
    manifest = json.loads((VENDOR / "VENDORED.json").read_text())
    for package in manifest["packages"]:
        assert f'"{package["name"]}@{package["version"]} ' in script


def test_each_library_ships_its_licence() -> None:
    """Every package brings its licence text along."""
    manifest = json.loads((VENDOR / "VENDORED.json").read_text())
    for package in manifest["packages"]:
        assert any(name.endswith("LICENSE") for name in package["files"]), package["name"]


def test_every_template_and_static_file_is_package_data() -> None:
    """pyproject's package-data patterns take every template and static file into the wheel."""
    import fnmatch
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["mercure.webgui"]
    package = VENDOR.parent.parent
    files = [
        path.relative_to(package).as_posix()
        for folder in ("templates", "static")
        for path in (package / folder).rglob("*")
        if path.is_file()
    ]
    assert files
    for name in files:
        assert any(
            fnmatch.fnmatch(name, p) and name.count("/") == p.count("/") for p in patterns
        ), name
