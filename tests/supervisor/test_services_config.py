"""`supervisor.services` names services that exist in this build, and the docs say no more."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mercure.cli import main
from mercure.cli.main import STARTER, build_parser
from mercure.core.config import validate_document
from mercure.core.errors import ConfigError
from mercure.core.installed import SERVICE_NAMES, installed_services, is_installed

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


@pytest.mark.skipif(is_installed("webgui"), reason="the web interface is installed")
def test_webgui_is_refused_while_it_is_not_installed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`webgui` is a known name but not in this version: check-config says so, not ignored."""
    config = tmp_path / "mercure.yaml"
    config.write_text("supervisor:\n  services: [receiver, webgui]\n")
    assert main(["check-config", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "supervisor.services[1]: service 'webgui' is not installed in this version" in err


def test_every_service_package_is_a_known_name() -> None:
    """The registry knows every service package in src/ (a new one must be added to it)."""
    packages = {
        p.parent.name
        for p in (ROOT / "src" / "mercure").glob("*/service.py")
        if p.parent.name != "core"  # the base class of all services
    }
    assert packages <= set(SERVICE_NAMES)
    assert packages == set(installed_services())


# --- the documentation says only what this version does ----------------------------------
_CLAIMS = re.compile(r"web interface|webgui|web gui|\bseven\b", re.IGNORECASE)
_QUALIFIED = re.compile(r"\byet\b|next version|will ", re.IGNORECASE)
_KEY_ONLY = re.compile(r"[#`\s]*(webgui|WebGuiConfig)[`:\s]*(port:\s*\d+\s*)?")
"""The configuration section's name on its own (a heading, a table cell, the YAML key)."""
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n\s*\n|\|")


def documentation_texts() -> dict[str, str]:
    """README, every page in docs/, the starter configuration and every command's --help."""
    texts = {"README.md": (ROOT / "README.md").read_text(encoding="utf-8")}
    for page in sorted((ROOT / "docs").glob("*.md")):
        texts[f"docs/{page.name}"] = page.read_text(encoding="utf-8")
    texts["starter.yaml"] = STARTER.read_text(encoding="utf-8")
    parser = build_parser()
    texts["mercure --help"] = parser.format_help()
    stack = [parser]
    while stack:
        current = stack.pop()
        for action in current._actions:
            if hasattr(action, "choices") and isinstance(action.choices, dict):
                for name, child in action.choices.items():
                    texts[f"mercure ... {name} --help"] = child.format_help()
                    stack.append(child)
    return texts


def unqualified_claims(text: str) -> list[str]:
    """Sentences that speak of the web interface (or seven services) as if it existed."""
    # A YAML comment block or a wrapped Markdown paragraph is one text: join its lines.
    joined = re.sub(r"\n\s*#\s*", " ", text)
    return [
        " ".join(sentence.split())
        for sentence in _SENTENCE_END.split(joined)
        if _CLAIMS.search(sentence)
        and not _QUALIFIED.search(sentence)
        and not _KEY_ONLY.fullmatch(sentence)
    ]


@pytest.mark.skipif(is_installed("webgui"), reason="the web interface is installed")
@pytest.mark.parametrize("name", sorted(documentation_texts()))
def test_docs_do_not_promise_the_web_interface(name: str) -> None:
    """Until the web interface is served, every sentence about it says that it is not yet."""
    assert unqualified_claims(documentation_texts()[name]) == []


def test_the_sentence_check_catches_a_plain_claim() -> None:
    """The check itself: a plain claim is caught, a qualified one is not."""
    assert unqualified_claims("Run it. The web interface shows the queues.\n") == [
        "The web interface shows the queues."
    ]
    assert unqualified_claims("The web interface (not served yet) will show queues.") == []
    assert unqualified_claims("# a comment about the\n# webgui port\nwebgui:\n") != []
    assert (
        unqualified_claims("## `webgui`\n\n| `webgui` | WebGuiConfig |\nwebgui:\n  port: 1\n") == []
    )
