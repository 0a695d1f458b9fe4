"""A rule that does not compile fails alone: a disabled one loads, a running service keeps the
previous version of the rule (logged, an event), check-config shows it as an error."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mercure.cli.main import main
from mercure.core.config import ConfigSource, load_config, save_config
from mercure.core.errors import ConfigError
from mercure.core.events import read_segment
from mercure.core.rules import FailedRule, SeriesTags
from mercure.core.rules.decision import decide
from mercure.core.service import Service

BASE = """
data_dir: data
targets:
  pacs: {{type: folder, folder: out/pacs}}
  {extra_target}
rules:
  ct:
    rule: "{ct_rule}"
    targets: pacs
  mr:
    rule: "{mr_rule}"
    targets: pacs
    disabled: {mr_disabled}
"""

GOOD_CT = "tags.Modality == 'CT'"
BROKEN = "tags.Modality == 'CT' and"


def write(
    path: Path,
    *,
    ct_rule: str = GOOD_CT,
    mr_rule: str = "tags.Modality == 'MR'",
    mr_disabled: str = "false",
    extra_target: str = "",
) -> Path:
    """Write mercure.yaml from BASE as a hand edit would (save_config, the web interface's
    way, refuses a file whose enabled rules do not compile), replacing the file by rename."""
    text = BASE.format(
        ct_rule=ct_rule, mr_rule=mr_rule, mr_disabled=mr_disabled, extra_target=extra_target
    )
    staged = path.with_name(path.name + ".new")
    staged.write_text(text, encoding="utf-8")
    staged.replace(path)
    return path


def test_disabled_rule_that_does_not_compile_lets_the_configuration_load(tmp_path: Path) -> None:
    """The broken rule is disabled: everything else is in force; the rule says why it fails."""
    loaded = load_config(write(tmp_path / "mercure.yaml", mr_rule=BROKEN, mr_disabled="true"))
    assert set(loaded.config.rules) == {"ct", "mr"}
    assert isinstance(loaded.compiled_rules["mr"], FailedRule)
    reason = loaded.rule_errors["mr"]
    assert "syntax error at column" in reason
    assert "the rule is disabled" in reason
    decision = decide(loaded.config, loaded.compiled_rules, SeriesTags({"Modality": "CT"}))
    assert decision.fired == ["ct"] and not decision.errors


def test_enabled_rule_that_does_not_compile_stops_the_start(tmp_path: Path) -> None:
    """At start-up there is no earlier version to keep: the configuration is refused, as before."""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path / "mercure.yaml", mr_rule=BROKEN))
    assert [issue.path for issue in caught.value.issues] == ["rules.mr.rule"]


def test_check_config_shows_a_disabled_broken_rule_as_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config loads the file, prints the rule's error with its key path, exits 1."""
    config = write(tmp_path / "mercure.yaml", mr_rule=BROKEN, mr_disabled="true")
    assert main(["check-config", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert ": ok (2 rules" in out
    assert "error: rules.mr.rule:" in out and "the rule is disabled" in out


def test_reload_keeps_the_previous_version_of_a_rule_that_no_longer_compiles(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The rest of the new file is in force (a new target); the broken rule runs as it was."""
    config = write(tmp_path / "mercure.yaml")
    source = ConfigSource(config)
    write(config, ct_rule=BROKEN, extra_target="lab: {type: folder, folder: out/lab}")
    with caplog.at_level(logging.ERROR, logger="mercure.core.config.source"):
        loaded = source.poll()
    assert loaded is not None and "lab" in loaded.config.targets
    assert loaded.config.rules["ct"].rule == BROKEN
    assert loaded.compiled_rules["ct"].source == GOOD_CT
    assert "previous version of the rule stays in force" in loaded.rule_errors["ct"]
    assert "rule ct does not compile" in caplog.text
    decision = decide(loaded.config, loaded.compiled_rules, SeriesTags({"Modality": "CT"}))
    assert decision.fired == ["ct"]


def test_reload_with_a_new_rule_that_does_not_compile_never_fires_it(tmp_path: Path) -> None:
    """A rule without an earlier version fails (false, with its reason) and the rest loads."""
    config = write(tmp_path / "mercure.yaml", mr_rule=BROKEN, mr_disabled="true")
    source = ConfigSource(config)
    write(config, mr_rule=BROKEN, mr_disabled="false")
    loaded = source.poll()
    assert loaded is not None and not loaded.config.rules["mr"].disabled
    assert "never fires until it is fixed" in loaded.rule_errors["mr"]
    decision = decide(loaded.config, loaded.compiled_rules, SeriesTags({"Modality": "MR"}))
    assert decision.fired == []
    assert decision.errors["mr"].startswith("the rule does not compile:")


class _Idle(Service):
    """A service that is only constructed, never run: enough to call check_config()."""

    name = "idle"


def test_saving_an_enabled_rule_that_does_not_compile_is_refused(tmp_path: Path) -> None:
    """The web interface's way of saving still refuses it (only hand edits get that far)."""
    config = write(tmp_path / "mercure.yaml")
    with pytest.raises(ConfigError):
        save_config(config, config.read_text().replace(GOOD_CT, BROKEN))
    assert GOOD_CT in config.read_text()


def test_running_service_reports_the_kept_rule_as_an_event(tmp_path: Path) -> None:
    """The reload emits config.reloaded and a rule.error (severity error) naming the rule."""
    config = write(tmp_path / "mercure.yaml")
    service = _Idle(ConfigSource(config))
    write(config, ct_rule=BROKEN)
    assert service.check_config()
    service.outbox.seal()
    events = [e for seg in service.outbox.sealed_segments() for e in read_segment(seg)]
    [error] = [e for e in events if e.kind == "rule.error"]
    assert error.severity == "error" and error.data["rule"] == "ct"
    assert "previous version of the rule stays in force" in error.message
    service.outbox.close()
