"""`supervisor.services` names services that exist in this build."""

from __future__ import annotations

from pathlib import Path

import pytest

from mercure.core.config import validate_document
from mercure.core.errors import ConfigError
from mercure.core.installed import SERVICE_NAMES, installed_services

ROOT = Path(__file__).resolve().parents[2]


def issues_of(document: dict) -> list[tuple[str, str]]:
    """(key path, message) of every issue the document has."""
    with pytest.raises(ConfigError) as caught:
        validate_document(document)
    return [(issue.path, issue.message) for issue in caught.value.issues]


def test_installed_services_are_accepted() -> None:
    """Every installed service may be named; the list keeps the administrator's choice."""
    names = installed_services()
    loaded = validate_document({"supervisor": {"services": names}})
    assert loaded.config.supervisor.services == names


def test_unknown_service_is_an_error_at_its_key_path() -> None:
    """A typo is named at supervisor.services[index], with the services there are."""
    [(path, message)] = issues_of({"supervisor": {"services": ["router", "reciever"]}})
    assert path == "supervisor.services[1]"
    assert "unknown service 'reciever'" in message
    assert "receiver" in message


def test_every_service_package_is_a_known_name() -> None:
    """The registry knows every service package in src/ (a new one must be added to it)."""
    packages = {
        p.parent.name
        for p in (ROOT / "src" / "mercure").glob("*/service.py")
        if p.parent.name != "core"  # the base class of all services
    }
    assert packages <= set(SERVICE_NAMES)
    assert packages == set(installed_services())
