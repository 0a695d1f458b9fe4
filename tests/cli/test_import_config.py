"""`mercure import-config`: mercure 0.4.1's mercure.json and users.json, converted and checked.

Fixtures in mercure_import/: default_mercure.json (mercure's configuration/default_mercure.json
transcribed), full_mercure.json (every target type, every rule and module option, notification
settings, and one key mercure never had), users.json (mercure's format: crypt hashes, flags as
strings).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mercure.cli import main
from mercure.core.config.loader import validate_document
from mercure.core.errors import ConfigError
from mercure.core.rules import SeriesTags
from mercure.core.rules.decision import decide
from mercure.core.rules.required import parse_required_series
from mercure.migrate import ImportReport, Outcome, import_mercure_config, import_mercure_users

FIXTURES = Path(__file__).with_name("mercure_import")
DEFAULT = FIXTURES / "default_mercure.json"
FULL = FIXTURES / "full_mercure.json"
USERS = FIXTURES / "users.json"
SECRET_VALUES = [
    "influx-token-value-1234",
    "bookkeeper-key-value-5678",
    "sftp-password-value-9",
    "rsync-password-value-8",
    "xnat-password-value-7",
    "dicomweb-token-value-6",
    "AKIAEXAMPLEKEYID",
    "s3-secret-value-5",
    "module-token-value-4",
    "settings-key-value-3",
    "rule-setting-value-2",
    "secretpath",
    "hooks.example.org",
    "$6$rounds",
]
NESTED = ("targets", "rules", "modules", "dicom_receiver", "features", "processing_logs")


def _input_keys(source: dict[str, Any]) -> set[str]:
    """Every key the report must account for: top level, and inside named entries."""
    keys = set()
    for key, value in source.items():
        keys.add(key)
        if key in ("targets", "rules", "modules"):
            for name, entry in value.items():
                keys.update(f"{key}.{name}.{field}" for field in entry)
        elif key in NESTED and isinstance(value, dict):
            keys.update(f"{key}.{sub}" for sub in value)
    return keys


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mercure", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("fixture", [DEFAULT, FULL], ids=["default", "full"])
def test_every_input_key_is_accounted_for(fixture: Path) -> None:
    """Each key of mercure.json is mapped, changed or dropped; every drop says why."""
    source = json.loads(fixture.read_text())
    report = import_mercure_config(source).report
    assert _input_keys(source) <= report.keys()
    for entry in report.by_outcome(Outcome.DROPPED) + report.by_outcome(Outcome.CHANGED):
        assert entry.note, entry.key


def test_unknown_key_is_reported_not_silently_dropped() -> None:
    """A key mercure never had appears in the report as not carried, with the reason."""
    report = import_mercure_config(json.loads(FULL.read_text())).report
    [entry] = [e for e in report.entries if e.key == "a_key_mercure_never_had"]
    assert entry.outcome is Outcome.DROPPED
    assert "unknown" in entry.note


def test_default_configuration_keeps_mercure_behaviour_explicitly() -> None:
    """Defaults that differ from mercure's are written out with mercure's value."""
    document = import_mercure_config(json.loads(DEFAULT.read_text())).document
    listener = document["receiver"]["listeners"][0]
    assert listener["port"] == 11112
    assert listener["transfer_syntaxes"] == ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1",
                                             "1.2.840.10008.1.2.2"]  # fmt: skip
    assert document["dispatch"] == {
        "retry_base_delay": 900,
        "retry_max_delay": 900,
        "retry_jitter": 0.0,
        "retry_attempts": 5,
    }
    assert document["cleaner"]["success_retention"] == 259200
    assert document["cleaner"]["error_retention"] == "36500d"
    assert document["data_dir"] == "/opt/mercure/data-router"
    assert "api_key" not in document.get("bookkeeper", {})


def test_full_configuration_rule_and_module_defaults_are_explicit() -> None:
    """study_force_completion_action and module network access keep mercure's meaning."""
    result = import_mercure_config(json.loads(FULL.read_text()))
    rules = result.document["rules"]
    assert rules["ct_route"]["study_force_action"] == "discard"
    assert rules["mr_process"]["study_force_action"] == "proceed"
    assert rules["mr_process"]["processing_settings"] == [
        {"threshold": 0.7, "password": "${MERCURE_RULE_MR_PROCESS_PASSWORD}"}
    ]
    assert rules["ct_route"]["notification_channels"] == ["ct_route-webhook", "ct_route-email"]
    module = result.document["modules"]["inverter"]
    assert module["network"] is True
    assert module["volumes"] == [{"source": "/opt/models", "target": "/models"}]
    assert module["docker_arguments"] == {"shm_size": "2g"}
    assert module["settings"] == {
        "threshold": 0.5,
        "service": {"api_key": "${MERCURE_MODULE_INVERTER_API_KEY}"},
    }
    channels = result.document["notifications"]
    assert channels["ct_route-email"]["to"] == ["lab@example.org", "pi@example.org"]
    assert channels["ct_route-email"]["include_phi"] is True
    assert channels["mr_process-webhook"]["body"] == '{"text": "{{ rule }} {{ event }}"}'
    assert result.document["targets"]["pacs_tls"]["tls"]["ca_certificate"] == (
        "/etc/mercure/tls/ca.pem"
    )


def test_no_secret_value_reaches_the_output_or_the_report(tmp_path: Path) -> None:
    """Secrets become ${VARIABLE} references; the report names variables, not values."""
    output = tmp_path / "mercure.yaml"
    run = _run_cli("import-config", str(FULL), "--users", str(USERS), "-o", str(output))
    assert run.returncode == 0, run.stderr
    written = output.read_text()
    for value in SECRET_VALUES:
        assert value not in written
        assert value not in run.stdout + run.stderr
    document = yaml.safe_load(written)
    assert document["targets"]["xnat"]["password"] == "${MERCURE_TARGET_XNAT_PASSWORD}"
    assert "MERCURE_TARGET_XNAT_PASSWORD  (from targets.xnat.password" in run.stdout
    assert (
        f"mercure user add tech --role viewer --must-change-password --config {output}"
        in run.stdout
    )


def test_a_login_in_a_url_becomes_login_fields_and_a_variable() -> None:
    """mercure accepts https://user:secret@host/; the secret must not reach the file."""
    source = {
        "targets": {
            "web": {"target_type": "dicomweb", "url": "https://bob:s3cr%40t@pacs.example.org:8443/dicom-web"},
            "xnat": {"target_type": "xnat", "host": "https://ann:pw-value@xnat.example.org",
                     "project_id": "P1", "user": "", "password": ""},
        }
    }  # fmt: skip
    result = import_mercure_config(source)
    web, xnat = result.document["targets"]["web"], result.document["targets"]["xnat"]
    assert web["url"] == "https://pacs.example.org:8443/dicom-web"
    assert (web["username"], web["password"], web["auth"]) == (
        "bob",
        "${MERCURE_TARGET_WEB_PASSWORD}",
        "basic",
    )
    assert (xnat["host"], xnat["user"]) == ("https://xnat.example.org", "ann")
    assert xnat["password"] == "${MERCURE_TARGET_XNAT_PASSWORD}"
    assert "s3cr" not in json.dumps(result.document) and "pw-value" not in json.dumps(
        result.document
    )
    assert {s.origin for s in result.report.secrets} == {"targets.web.url", "targets.xnat.host"}


def test_default_import_passes_check_config(tmp_path: Path) -> None:
    """mercure's default configuration, imported, passes the real `mercure check-config`."""
    output = tmp_path / "mercure.yaml"
    assert _run_cli("import-config", str(DEFAULT), "-o", str(output)).returncode == 0
    check = _run_cli("--config", str(output), "check-config")
    assert check.returncode == 0, check.stderr
    assert ": ok (0 rules, 0 targets, 0 modules, 1 listeners)" in check.stdout


def _variables(report: ImportReport) -> dict[str, str]:
    values = {secret.variable: "stand-in-value" for secret in report.secrets}
    values.update({v: "https://hooks.example.org/x" for v in values if v.endswith("WEBHOOK_URL")})
    return values


def test_full_import_passes_check_config(tmp_path: Path) -> None:
    """The full configuration, imported, passes the real `mercure check-config`."""
    output = tmp_path / "mercure.yaml"
    imported = _run_cli("import-config", str(FULL), "-o", str(output))
    assert imported.returncode == 0, imported.stderr
    report = import_mercure_config(json.loads(FULL.read_text())).report
    check = _run_cli("--config", str(output), "check-config", env=_variables(report))
    assert check.returncode == 0, check.stderr


# (mercure rule, series tags, fires in mercure?) — mercure's semantics: a rule that raises
# (a missing tag, a bad conversion) does not fire.
CT = {"Modality": "CT", "StudyDescription": "CT HEAD", "SeriesDescription": "AXIAL 5mm"}
MR = {"Modality": "MR", "StudyDescription": "BRAIN ROUTINE", "SeriesDescription": "T1 sag",
      "SliceThickness": "1.0"}  # fmt: skip
SR = {"Modality": "SR"}
US = {"Modality": "US", "StudyDescription": ""}
ROUTING_RULES = {
    "ct": ("tags.Modality == 'CT'", ["pacs"], {}),
    "mr_thin": ("@Modality@ == 'MR' and float(tags.SliceThickness) < 2", ["share"], {}),
    "brain": ("'BRAIN' in tags.StudyDescription.upper()", ["pacs"], {"priority": "urgent"}),
    "sr_out": ("tags.Modality == 'SR'", [], {"action": "discard"}),
    "off": ("True", ["share"], {"disabled": "True"}),  # older mercure: flags as strings
    "rest": ("True", ["share"], {"fallback": True}),
}
# series tags -> (rules that fire, targets routed to), as mercure's router decides
EXPECTED = [
    (CT, ["ct"], ["pacs"]),
    (MR, ["mr_thin", "brain"], ["share", "pacs"]),
    ({**MR, "SliceThickness": "5"}, ["brain"], ["pacs"]),
    ({"Modality": "MR"}, ["rest"], ["share"]),  # missing tags: neither MR rule fires
    (SR, ["sr_out"], []),
    (US, ["rest"], ["share"]),
]


def test_imported_rules_route_series_as_mercure_does() -> None:
    """The same series fire the same rules and reach the same targets after the import."""
    source = json.loads(DEFAULT.read_text())
    source["targets"] = {
        "pacs": {"target_type": "dicom", "ip": "10.0.0.1", "port": "104", "aet_target": "P"},
        "share": {"target_type": "folder", "folder": "/mnt/share"},
    }
    source["rules"] = {
        name: {"rule": rule, "target": targets, "action": "route", **extra}
        for name, (rule, targets, extra) in ROUTING_RULES.items()
    }
    source["rules"]["ct"] |= {
        "notification_webhook": "https://hooks.example.org/T0/B0/secretpath",
        "notification_payload": '"text": "@rule@ @event@"',
        "notification_email": "lab@example.org",
        "notification_email_body": "{{ rule }}: {{ event }} for MRN {{ mrn }}, ACC {{ acc }}",
    }
    result = import_mercure_config(source)
    environ = {s.variable: "https://hooks.example.org/x" for s in result.report.secrets}
    loaded = validate_document(result.document, environ=environ)  # templates rendered too
    assert loaded.config.rules["ct"].notification_channels == ["ct-webhook", "ct-email"]
    for name, (rule, _targets, _extra) in ROUTING_RULES.items():
        assert loaded.config.rules[name].rule == rule
    for tags, fired, targets in EXPECTED:
        decision = decide(loaded.config, loaded.compiled_rules, tags)
        assert (decision.fired, decision.route_targets) == (fired, targets), tags


CORPUS_FILE = Path(__file__).parents[1] / "core" / "data" / "mercure_rules_corpus.yaml"


def test_imported_corpus_rules_fire_as_in_mercure() -> None:
    """mercure's rule corpus (mc-rules' table), imported as rules, gives mercure's results:
    selection rules fire alike, required series complete alike, and rules mercure can never
    evaluate are still refused after the import."""
    corpus = yaml.safe_load(CORPUS_FILE.read_text(encoding="utf-8"))
    source = json.loads(DEFAULT.read_text())
    source["targets"] = {"out": {"target_type": "folder", "folder": "/mnt/out"}}
    rules: dict[str, Any] = {}
    for i, row in enumerate(corpus["selection"]):
        rules[f"sel{i}"] = {"rule": row["expression"], "target": "out"}
    for i, row in enumerate(corpus["required_series"]):
        rules[f"req{i}"] = {
            "rule": "True",
            "target": "out",
            "action_trigger": "study",
            "study_trigger_condition": "received_series",
            "study_trigger_series": row["expression"],
        }
    source["rules"] = rules
    loaded = validate_document(import_mercure_config(source).document)
    for i, row in enumerate(corpus["selection"]):
        tags = SeriesTags(corpus["tag_sets"][row["tags"]])
        assert loaded.compiled_rules[f"sel{i}"].evaluate(tags).value is row["expected"], row
    for i, row in enumerate(corpus["required_series"]):
        required = parse_required_series(loaded.config.rules[f"req{i}"].study_trigger_series)
        assert required.satisfied_by(row["series"]) is row["expected"], row
    for row in corpus["config_errors"]:
        source["rules"] = {"bad": {"rule": row["expression"], "target": "out"}}
        with pytest.raises(ConfigError) as caught:
            validate_document(import_mercure_config(source).document)
        assert row["reason"] in str(caught.value), row


def test_users_keep_their_roles_and_not_their_hashes() -> None:
    """Admins stay admins, others become viewers; hashes and bad names are reported."""
    report = ImportReport()
    users = import_mercure_users(json.loads(USERS.read_text()), report)
    assert [(u.name, u.role) for u in users] == [("admin", "admin"), ("tech", "viewer")]
    assert all("--must-change-password" in u.command() for u in users)
    dropped = {e.key: e.note for e in report.by_outcome(Outcome.DROPPED)}
    assert "hashes are not carried" in dropped["users.admin.password"]
    assert "not a valid user name" in dropped["users.bad name"]
    assert {"users.tech.is_admin", "users.tech.change_password"} <= report.keys()


def test_bad_input_names_the_file_and_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Input that is not JSON, not a JSON object, not a port or not named entries is refused,
    saying where."""
    broken = tmp_path / "mercure.json"
    broken.write_text("{not json")
    assert main(["import-config", str(broken)]) == 1
    assert f"{broken}: not JSON (line 1" in capsys.readouterr().err
    broken.write_text(json.dumps({"modules": {"m": {"docker_tag": "x", "environment": "[1"}}}))
    assert main(["import-config", str(broken)]) == 1
    assert "modules.m.environment: not a JSON object" in capsys.readouterr().err
    broken.write_text(json.dumps({"targets": {"pacs": {"target_type": "dicom", "port": "1o4"}}}))
    assert main(["import-config", str(broken)]) == 1
    assert "targets.pacs.port: '1o4' is not a port number" in capsys.readouterr().err
    broken.write_text(json.dumps({"rules": ["r1"]}))
    assert main(["import-config", str(broken)]) == 1
    assert "rules: must be an object of entries by name" in capsys.readouterr().err


def test_changed_values_carry_their_reason_as_a_comment(tmp_path: Path) -> None:
    """Above each value written to keep mercure's behaviour, the YAML says why."""
    output = tmp_path / "mercure.yaml"
    assert main(["import-config", str(FULL), "-o", str(output)]) == 0
    text = output.read_text()
    force = text.index("study_force_action: discard")
    assert "# mercure: rules.ct_route.study_force_completion_action: absent" in text[:force]
    assert "#   MERCURE_TARGET_XNAT_PASSWORD  (targets.xnat.password)" in text
    assert yaml.safe_load(text)["offpeak"] == {"start": "21:30", "end": "05:45"}


def test_existing_output_is_kept_without_force(tmp_path: Path) -> None:
    """-o does not overwrite a file unless --force is given."""
    output = tmp_path / "mercure.yaml"
    output.write_text("keep: me\n")
    assert main(["import-config", str(DEFAULT), "-o", str(output)]) == 1
    assert output.read_text() == "keep: me\n"
    assert main(["import-config", str(DEFAULT), "-o", str(output), "--force"]) == 0
    assert yaml.safe_load(output.read_text())["appliance_name"] == "master"
