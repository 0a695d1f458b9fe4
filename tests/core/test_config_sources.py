"""Retrieve sources checked against the listeners: C-MOVE destinations, AE title mix-ups."""

from __future__ import annotations

from pathlib import Path

import pytest

from mercure.cli import main
from mercure.core.config import parse_document, validate_document
from mercure.core.errors import ConfigError

LISTENERS = """
receiver:
  listeners:
    - {name: main, port: 11112, aet: ROUTER}
    - {name: retrieve, port: 11113, aet: ROUTER_QR}
"""


def issues_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate_document(parse_document(text, "x.yaml"), source="x.yaml", environ={})
    return [str(issue) for issue in caught.value.issues]


def test_move_destination_must_be_a_listener_ae_title() -> None:
    """A C-MOVE destination no listener answers to is an error naming the listeners' titles."""
    text = LISTENERS + (
        "sources:\n  pacs: {type: dicom, host: pacs, aet_target: PACS, "
        "retrieve_method: c-move, move_destination: ELSEWHERE}\n"
    )
    assert issues_of(text) == [
        "sources.pacs.move_destination: 'ELSEWHERE' is not the AE title of a listener "
        "(receiver.listeners: ROUTER, ROUTER_QR)"
    ]


def test_move_destination_of_a_listener_or_empty_loads() -> None:
    """The second listener's title, or none (the first listener's), is accepted."""
    for destination in ("ROUTER_QR", "null"):
        text = LISTENERS + (
            "sources:\n  pacs: {type: dicom, host: pacs, aet_target: PACS, "
            f"retrieve_method: c-move, move_destination: {destination}}}\n"
        )
        loaded = validate_document(parse_document(text, "x.yaml"), source="x.yaml", environ={})
        assert loaded.config.sources["pacs"].type == "dicom"


def test_c_move_without_listeners_is_an_error() -> None:
    """With no listener at all, nothing could receive a C-MOVE."""
    text = (
        "receiver: {listeners: []}\n"
        "sources:\n  pacs: {type: dicom, host: pacs, aet_target: PACS, retrieve_method: c-move}\n"
    )
    (issue,) = issues_of(text)
    assert issue.startswith("sources.pacs.retrieve_method: c-move needs a listener")


def test_check_config_warns_about_own_ae_title_and_ignored_destination(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """aet_source equal to aet_target, and a C-GET source's move_destination, are warnings."""
    config = tmp_path / "mercure.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n" + LISTENERS + "sources:\n"
        "  same: {type: dicom, host: pacs, aet_target: MERCURE, aet_source: MERCURE}\n"
        "  get: {type: dicom, host: pacs, aet_target: PACS, move_destination: ROUTER}\n"
    )
    assert main(["check-config", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "warning: sources.same.aet_source: our AE title equals the PACS's ('MERCURE')" in out
    assert "warning: sources.get.move_destination: ignored: retrieve_method is c-get" in out
