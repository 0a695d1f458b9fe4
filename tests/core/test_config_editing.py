"""Editing mercure.yaml from a program: comments kept, secrets masked, stale saves refused."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest
import yaml

from mercure.core.config.editing import (
    KEEP,
    MASK,
    ConfigChanged,
    ConfigFile,
    Document,
    describe_changes,
    is_secret_path,
    masked_text,
    save_text,
    unmask,
)
from mercure.core.config.history import list_changes, list_versions, version_path
from mercure.core.errors import ConfigError

STARTER = Path(__file__).resolve().parents[2] / "src" / "mercure" / "cli" / "starter.yaml"

HAND_EDITED = """\
# Our router. Ask Jane before changing the rules.
data_dir: /srv/mercure   # the big disk

router:
    series_complete_trigger: 90s   # CT01 is slow
    study_complete_trigger: 15m

# Targets
targets:
    pacs:
        type: dicom
        host: pacs.example.org
        aet_target: PACS
    archive:   # research copy
        type: sftp
        host: sftp.example.org
        user: mercure
        password: hunter2-secret
# Rules below
rules:
    ct:
        rule: "tags.Modality == 'CT'"
        targets:
            - pacs
"""


def test_starter_file_round_trips_unchanged() -> None:
    """Reading and writing the starter file changes not one byte."""
    text = STARTER.read_text()
    assert Document(text, "mercure.yaml").dump() == text


def test_a_change_keeps_comments_order_and_indentation() -> None:
    """Changing one value and adding an entry keeps every comment, the key order, the
    four-space indentation and the way values were written."""
    document = Document(HAND_EDITED, "mercure.yaml")
    document.set(("router", "series_complete_trigger"), "120s")
    document.set(("rules", "mr"), {"rule": "tags.Modality == 'MR'", "targets": ["pacs"]})
    text = document.dump()
    assert "# Our router. Ask Jane before changing the rules." in text
    assert "data_dir: /srv/mercure   # the big disk" in text
    assert re.search(r"\n    series_complete_trigger: 120s +# CT01 is slow\n", text)
    assert "    archive:   # research copy" in text
    assert "# Rules below\nrules:" in text
    assert "        rule: \"tags.Modality == 'CT'\"" in text  # quotes kept
    assert "    mr:\n        rule: tags.Modality == 'MR'\n" in text
    assert list(yaml.safe_load(text)) == ["data_dir", "router", "targets", "rules"]
    lines = [line for line in text.splitlines() if "series_complete_trigger" not in line]
    expected = [line for line in HAND_EDITED.splitlines() if "series_complete_trigger" not in line]
    assert lines[: len(expected)] == expected


def test_removing_an_entry_keeps_the_comment_above_the_next_key() -> None:
    """The comment lines above a key stay above it when the entry before it is removed."""
    document = Document(HAND_EDITED, "mercure.yaml")
    document.delete(("targets", "archive"))
    text = document.dump()
    assert "# Rules below\nrules:" in text
    assert "archive" not in text and "research copy" not in text


def test_rename_keeps_position_and_comment() -> None:
    """A renamed entry stays where it was, with its comment."""
    document = Document(HAND_EDITED, "mercure.yaml")
    document.rename(("targets", "archive"), "research")
    plain = document.plain()
    assert list(plain["targets"]) == ["pacs", "research"]
    assert re.search(r"\n    research: +# research copy\n", document.dump())
    with pytest.raises(KeyError, match="exists already"):
        document.rename(("targets", "research"), "pacs")


def test_new_strings_are_quoted_where_the_services_would_misread_them() -> None:
    """A time, 'yes' or an octal-looking string is written so that PyYAML reads a string."""
    document = Document("offpeak: {}\n", "mercure.yaml")
    document.set(("offpeak",), {"start": "22:00", "end": "06:00"})
    document.set(("appliance_name",), "yes")
    document.set(("comment",), "0777")
    plain = yaml.safe_load(document.dump())
    assert plain == {
        "offpeak": {"start": "22:00", "end": "06:00"},
        "appliance_name": "yes",
        "comment": "0777",
    }


def test_keep_leaves_a_secret_as_stored() -> None:
    """KEEP (a secret field left empty) keeps the stored value, and writes nothing where none
    is stored."""
    document = Document(HAND_EDITED, "mercure.yaml")
    document.set(
        ("targets", "archive"),
        {"type": "sftp", "host": "sftp2.example.org", "user": "mercure", "password": KEEP},
    )
    document.set(("targets", "pacs", "password"), KEEP)
    assert document.get(("targets", "archive", "password")) == "hunter2-secret"
    assert document.get(("targets", "archive", "host")) == "sftp2.example.org"
    assert not document.has(("targets", "pacs", "password"))


def test_json_files_stay_json() -> None:
    """A configuration written as JSON is edited and written as JSON."""
    document = Document('{"router": {"series_complete_trigger": 10}}', "mercure.json")
    document.set(("router", "series_complete_trigger"), 20)
    assert document.dump().lstrip().startswith("{")
    assert document.plain() == {"router": {"series_complete_trigger": 20}}


def test_syntax_error_names_the_line() -> None:
    """A broken file is refused with where it is broken."""
    with pytest.raises(ConfigError, match="line 2"):
        Document("router:\n  series_complete_trigger: 1: 2\n", "mercure.yaml")


def test_secrets_are_masked_and_put_back() -> None:
    """The masked text hides the password but shows ${ENV} references; a text that still holds
    the mask gets the stored secret back."""
    text = HAND_EDITED + "bookkeeper:\n    api_key: ${BK_KEY}\n"
    shown = masked_text(text, "mercure.yaml")
    assert "hunter2" not in shown
    assert f"password: {MASK}" in shown
    assert "api_key: ${BK_KEY}" in shown
    edited = Document(shown.replace("pacs.example.org", "pacs2.example.org"), "mercure.yaml")
    unmask(edited, Document(text, "mercure.yaml"))
    assert edited.get(("targets", "archive", "password")) == "hunter2-secret"
    assert edited.get(("targets", "pacs", "host")) == "pacs2.example.org"


def test_a_mask_with_nothing_stored_behind_it_is_refused() -> None:
    """Moving a masked secret to a new place cannot carry it along: the user must type it."""
    edited = Document(
        HAND_EDITED.replace("archive:", "archive2:").replace("hunter2-secret", MASK),
        "mercure.yaml",
    )
    with pytest.raises(ConfigError, match=r"targets\.archive2\.password"):
        unmask(edited, Document(HAND_EDITED, "mercure.yaml"))


def test_unparseable_text_is_not_shown() -> None:
    """A version that is not YAML may hold a secret in plain sight: it is not shown at all."""
    shown = masked_text("password: hunter2-secret\n  broken: [", "mercure.yaml")
    assert "hunter2" not in shown
    assert "cannot be shown" in shown


def test_secret_paths() -> None:
    """Passwords, tokens, keys, database URLs and module environments are secret."""
    assert is_secret_path(("targets", "x", "password"))
    assert is_secret_path(("bookkeeper", "database_url"))
    assert is_secret_path(("bookkeeper", "previous_api_keys", 0))
    assert is_secret_path(("modules", "ai", "environment", "TOKEN"))
    assert not is_secret_path(("targets", "x", "user"))


def test_described_changes_never_show_a_secret() -> None:
    """The summary names what changed, and says a secret changed without its value."""
    old = yaml.safe_load(HAND_EDITED)
    new = yaml.safe_load(
        HAND_EDITED.replace("hunter2-secret", "new-secret-42").replace("90s", "2m")
    )
    new["rules"]["mr"] = {"rule": "x", "targets": ["pacs"]}
    del new["targets"]["pacs"]["aet_target"]
    changes = describe_changes(old, new)
    assert 'router.series_complete_trigger: "90s" -> "2m"' in changes
    assert "targets.archive.password changed" in changes
    assert "targets.pacs.aet_target removed" in changes
    assert "rules.mr added" in changes
    assert not any("secret" in line for line in changes if "password" not in line)
    assert not any("new-secret-42" in line or "hunter2" in line for line in changes)


def _write(tmp_path: Path, text: str = HAND_EDITED) -> Path:
    path = tmp_path / "mercure.yaml"
    path.write_text(text.replace("/srv/mercure", str(tmp_path / "data")))
    os.chmod(path, 0o640)
    return path


def test_save_records_who_and_what_and_keeps_the_previous_version(tmp_path: Path) -> None:
    """A save archives the old file, writes the new one with the same permissions, and
    records the user, the summary and the changes."""
    path = _write(tmp_path)
    opened = ConfigFile.read(path)
    new = opened.text.replace("90s", "2m")
    saved = save_text(path, new, expected_version=opened.version, user="jane", summary="slower")
    assert path.read_text() == new
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert saved.version == ConfigFile.read(path).version != opened.version
    assert saved.loaded.config.router.series_complete_trigger == 120
    (change,) = list_changes(path)
    assert (change.user, change.summary) == ("jane", "slower")
    assert change.changes == ['router.series_complete_trigger: "90s" -> "2m"']
    archived = version_path(path, change.previous or "")
    assert archived.read_text() == opened.text
    assert os.stat(archived).st_mode & 0o777 == 0o600
    assert list_versions(path) == [archived]


def test_a_stale_save_is_refused(tmp_path: Path) -> None:
    """A save made from an old version is refused and changes nothing."""
    path = _write(tmp_path)
    opened = ConfigFile.read(path)
    save_text(path, opened.text.replace("90s", "2m"), expected_version=opened.version, user="a")
    current = path.read_text()
    with pytest.raises(ConfigChanged, match=r"changed since you opened it.*last saved by a"):
        save_text(path, opened.text.replace("90s", "3m"), expected_version=opened.version, user="b")
    assert path.read_text() == current
    assert len(list_changes(path)) == 1


def test_two_saves_at_once_one_wins(tmp_path: Path) -> None:
    """Two savers starting from the same version: exactly one succeeds."""
    path = _write(tmp_path)
    opened = ConfigFile.read(path)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def save(n: int) -> None:
        barrier.wait()
        try:
            save_text(
                path,
                opened.text.replace("90s", f"{n + 1}m"),
                expected_version=opened.version,
                user=f"u{n}",
            )
            outcomes.append("saved")
        except ConfigChanged:
            outcomes.append("refused")

    threads = [threading.Thread(target=save, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused"] * 7 + ["saved"]
    assert len(list_versions(path)) == 1


def test_an_invalid_save_changes_nothing(tmp_path: Path) -> None:
    """The validation of check-config refuses with the key path; nothing is written."""
    path = _write(tmp_path)
    opened = ConfigFile.read(path)
    bad = opened.text.replace("- pacs", "- nowhere")
    with pytest.raises(ConfigError, match=r"rules\.ct\.targets"):
        save_text(path, bad, expected_version=opened.version, user="jane")
    assert path.read_text() == opened.text
    assert list_versions(path) == [] and list_changes(path) == []


def test_version_path_takes_only_listed_names(tmp_path: Path) -> None:
    """Only a name the history lists is found: no paths, no `..`."""
    path = _write(tmp_path)
    for name in ("../mercure.yaml", "/etc/passwd", ".changes.jsonl", ".lock"):
        with pytest.raises(FileNotFoundError):
            version_path(path, name)
