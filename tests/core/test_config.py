"""Configuration: validation with key paths, defaults, secrets from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from mercure.core.config import load_config, parse_document, validate_document
from mercure.core.config.models import DicomTarget
from mercure.core.errors import ConfigError
from mercure.core.uids import known_transfer_syntaxes

GOOD = """
data_dir: data
targets:
  pacs: {type: dicom, host: 127.0.0.1, port: 104, aet_target: PACS}
  archive: {type: folder, folder: /srv/archive}
rules:
  ct_head:
    rule: "tags.Modality == 'CT'"
    action: route
    targets: [pacs, archive]
"""


def issues_of(text: str, environ: dict[str, str] | None = None) -> list[str]:
    """Validate a document and return its issues as printed by check-config."""
    with pytest.raises(ConfigError) as caught:
        validate_document(parse_document(text, "x.yaml"), source="x.yaml", environ=environ or {})
    return [str(issue) for issue in caught.value.issues]


def test_empty_file_is_a_valid_configuration_with_defaults(tmp_path: Path) -> None:
    """An empty file takes every default from the models."""
    (tmp_path / "mercure.yaml").write_text("")
    loaded = load_config(tmp_path / "mercure.yaml")
    assert loaded.config.router.series_complete_trigger == 60
    assert loaded.config.receiver.listeners[0].port == 11112
    assert loaded.config.data_dir == (tmp_path / "data").resolve()


def test_good_configuration_loads_targets_as_their_types() -> None:
    """Targets are a discriminated union by type."""
    loaded = validate_document(parse_document(GOOD, "x.yaml"), environ={})
    assert isinstance(loaded.config.targets["pacs"], DicomTarget)
    assert loaded.config.rules["ct_head"].targets == ["pacs", "archive"]


def test_unknown_target_is_named_with_its_key_path() -> None:
    """A rule naming a missing target gives rules.<rule>.targets[i]."""
    text = GOOD.replace("targets: [pacs, archive]", "targets: [pacs, pacs2]")
    assert issues_of(text) == ["rules.ct_head.targets[1]: unknown target 'pacs2'"]


def test_unknown_dynamic_routing_target_is_named_with_its_key_path() -> None:
    """dynamic_routing_allowed_targets must name configured targets too."""
    text = GOOD.replace(
        "targets: [pacs, archive]",
        "targets: [pacs, archive]\n    dynamic_routing: true\n"
        "    dynamic_routing_allowed_targets: [archive, elsewhere]",
    )
    assert issues_of(text) == [
        "rules.ct_head.dynamic_routing_allowed_targets[1]: unknown target 'elsewhere'"
    ]


def test_every_error_is_reported_at_once() -> None:
    """Several problems in one file are all listed, each with its path."""
    text = """
receiver:
  listeners:
    - {port: 70000, aet: "THIS AE TITLE IS TOO LONG"}
router:
  series_complete_trigger: soon
targets:
  pacs: {type: dicom, host: h, port: x}
  odd: {type: ftp, host: h}
cleaner: {sucess_retention: 3d}
"""
    issues = issues_of(text)
    paths = [issue.split(":")[0] for issue in issues]
    assert "receiver.listeners[0].port" in paths
    assert "receiver.listeners[0].aet" in paths
    assert "router.series_complete_trigger" in paths
    assert "targets.pacs.port" in paths
    assert "targets.odd" in paths
    assert "cleaner.sucess_retention: unknown key" in issues


def test_durations_accept_units() -> None:
    """`3d`, `15m` and plain seconds are all durations."""
    text = "cleaner: {success_retention: 3d, interval: 15m}\nrouter: {series_complete_trigger: 90}"
    config = validate_document(parse_document(text, "x.yaml"), environ={}).config
    assert config.cleaner.success_retention == 3 * 86400
    assert config.cleaner.interval == 900
    assert config.router.series_complete_trigger == 90


def test_secret_comes_from_environment_variable() -> None:
    """`${NAME}` is replaced by the variable; the raw document keeps the reference."""
    text = "bookkeeper: {api_key: '${BK_KEY}'}"
    loaded = validate_document(parse_document(text, "x.yaml"), environ={"BK_KEY": "s3cret"})
    assert loaded.config.bookkeeper.api_key is not None
    assert loaded.config.bookkeeper.api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(loaded.config)
    assert loaded.raw["bookkeeper"]["api_key"] == "${BK_KEY}"


def test_missing_environment_variable_is_an_error_with_path() -> None:
    """A secret that is not set is reported where it is used."""
    assert issues_of("bookkeeper: {api_key: '${NOPE}'}") == [
        "bookkeeper.api_key: environment variable NOPE is not set"
    ]


def test_action_needs_its_targets_and_modules() -> None:
    """route needs targets; process needs a module that exists."""
    text = """
rules:
  a: {rule: "True", action: route}
  b: {rule: "True", action: process, processing_module: anon}
"""
    issues = issues_of(text)
    assert "rules.a: action 'route' needs at least one target" in issues
    assert "rules.b.processing_module[0]: unknown module 'anon'" in issues


def test_required_series_syntax_is_checked_when_the_document_is_validated() -> None:
    """A broken study_trigger_series is refused by the validation every save goes through
    (not only by `mercure check-config`), with its column."""
    text = """
targets: {pacs: {type: folder, folder: /srv/pacs}}
rules:
  mr:
    rule: "True"
    targets: pacs
    action_trigger: study
    study_trigger_condition: received_series
    study_trigger_series: "'T1' and ("
  ok: {rule: "True", targets: pacs, study_trigger_series: "'T1' and ('T2' or 'FLAIR')"}
"""
    [issue] = issues_of(text)
    assert issue.startswith("rules.mr.study_trigger_series: required series")
    assert "column 11" in issue  # the end of the text: a name was expected


def test_yaml_syntax_error_names_line_and_column() -> None:
    """A broken YAML file says where it broke."""
    with pytest.raises(ConfigError) as caught:
        parse_document("rules:\n  a: [unclosed\n", "x.yaml")
    assert "YAML syntax error at line" in str(caught.value)


def test_json_file_is_accepted(tmp_path: Path) -> None:
    """A .json configuration is read as JSON."""
    path = tmp_path / "mercure.json"
    path.write_text('{"router": {"series_complete_trigger": 5}}')
    assert load_config(path).config.router.series_complete_trigger == 5


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    """No configuration file: the error points to mercure init."""
    with pytest.raises(ConfigError, match="mercure init"):
        load_config(tmp_path / "absent.yaml")


def test_duplicate_listener_ports_are_rejected() -> None:
    """Two listeners cannot share a port."""
    text = "receiver: {listeners: [{name: a, port: 104}, {name: b, port: 104}]}"
    assert any("several listeners on the same port" in i for i in issues_of(text))


def test_module_volume_outside_allowed_root_is_rejected(tmp_path: Path) -> None:
    """Extra module volumes must lie under processing.volume_root."""
    text = f"""
processing: {{volume_root: {tmp_path}/models}}
modules:
  ai: {{runner: docker, image: ai:1, volumes: [{{source: /etc, target: /etc}}]}}
"""
    issues = issues_of(text)
    assert len(issues) == 1 and issues[0].startswith("modules.ai.volumes[0].source:")


def test_rule_syntax_error_names_rule_and_column() -> None:
    """A broken rule expression is a config error at rules.<name>.rule with its column."""
    text = GOOD.replace("\"tags.Modality == 'CT'\"", "\"tags.Modality == 'CT' and\"")
    [issue] = issues_of(text)
    assert issue.startswith("rules.ct_head.rule: syntax error at column")


def test_forbidden_rule_construct_is_a_config_error() -> None:
    """A rule that tries to reach Python internals is refused when the config loads."""
    text = GOOD.replace("\"tags.Modality == 'CT'\"", "\"tags.__class__ == 'CT'\"")
    [issue] = issues_of(text)
    assert issue.startswith("rules.ct_head.rule:") and "__class__" in issue


def test_extra_sop_classes_default_empty_and_private_uids_load() -> None:
    """A listener accepts only the standard classes unless told; private UIDs load as given."""
    [default] = validate_document({}, source="x.yaml").config.receiver.listeners
    assert default.extra_sop_classes == [] and default.accept_unknown_sop_classes is False
    text = (
        "receiver: {listeners: [{name: a, accept_unknown_sop_classes: true, "
        "extra_sop_classes: ['1.3.12.2.1107.5.9.1', '2.25.0', '1.2.840.10008.5.1.4.1.1.2']}]}"
    )
    [listener] = validate_document(
        parse_document(text, "x.yaml"), source="x.yaml"
    ).config.receiver.listeners
    assert listener.extra_sop_classes == [
        "1.3.12.2.1107.5.9.1",
        "2.25.0",
        "1.2.840.10008.5.1.4.1.1.2",
    ]
    assert listener.accept_unknown_sop_classes is True


@pytest.mark.parametrize(
    ("uid", "problem"),
    [
        ("'1.3.12.2.1107.5.09.1'", "not a valid UID: component '09' has a leading zero"),
        ("'1.3.12.x.1'", "not a valid UID: component 'x' is not made of the digits 0-9"),
        ("'1.3..1'", "not a valid UID: empty component"),
        ("'1.3.12.'", "not a valid UID: empty component"),
        ("''", "not a valid UID: it is empty"),
        ("'" + "1." * 32 + "1'", "not a valid UID: 65 characters, at most 64 are allowed"),
        ("1.2", "a UID must be a string: put it in quotes"),
    ],
)
def test_invalid_extra_sop_class_is_named_with_its_key_path(uid: str, problem: str) -> None:
    """Each bad UID is reported at receiver.listeners[i].extra_sop_classes[j], saying why."""
    text = (
        f"receiver: {{listeners: [{{name: a, extra_sop_classes: ['1.3.12.2.1107.5.9.1', {uid}]}}]}}"
    )
    [issue] = issues_of(text)
    assert issue.startswith(f"receiver.listeners[0].extra_sop_classes[1]: {problem}")


def test_extra_sop_class_naming_another_service_is_refused() -> None:
    """A query/retrieve or worklist model is no storage class, even when listed as extra."""
    text = (
        "receiver: {listeners: [{name: a, extra_sop_classes: "
        "['1.2.840.10008.5.1.4.1.2.2.1', '1.2.840.10008.5.1.4.31']}]}"
    )
    assert issues_of(text) == [
        "receiver.listeners[0].extra_sop_classes[0]: not a storage SOP class: the standard "
        "defines it as 'Study Root Query/Retrieve Information Model - FIND' "
        "(got '1.2.840.10008.5.1.4.1.2.2.1')",
        "receiver.listeners[0].extra_sop_classes[1]: not a storage SOP class: the standard "
        "defines it as 'Modality Worklist Information Model - FIND' (got '1.2.840.10008.5.1.4.31')",
    ]


def test_listener_transfer_syntaxes_must_be_known_ones() -> None:
    """A typo or a SOP class in a listener's transfer_syntaxes is named at its key path."""
    text = (
        "receiver: {listeners: [{name: a, transfer_syntaxes: ['1.2.840.10008.1.2.1', "
        "'1.2.840.10008.1.2.4.5O', '1.2.840.10008.5.1.4.1.1.2', '1.2.3', "
        "'1.2.840.10008.1.2.4.50']}]}"
    )
    assert issues_of(text) == [
        "receiver.listeners[0].transfer_syntaxes[1]: not a valid UID: component '5O' is not "
        "made of the digits 0-9 (got '1.2.840.10008.1.2.4.5O')",
        "receiver.listeners[0].transfer_syntaxes[2]: not a transfer syntax the receiver knows "
        "(the standard defines it as 'CT Image Storage'); see docs/receiver.md for the list "
        "(got '1.2.840.10008.5.1.4.1.1.2')",
        "receiver.listeners[0].transfer_syntaxes[3]: not a transfer syntax the receiver knows; "
        "see docs/receiver.md for the list (got '1.2.3')",
    ]


def test_receiver_docs_list_every_known_transfer_syntax() -> None:
    """docs/receiver.md names each syntax a listener may list (and accepts by default)."""
    docs = (Path(__file__).parents[2] / "docs" / "receiver.md").read_text()
    missing = [uid for uid in sorted(known_transfer_syntaxes()) if f"`{uid}`" not in docs]
    assert missing == []


def test_relative_folder_target_is_resolved_against_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`folder: archive` means beside mercure.yaml (like data_dir), whatever the current folder."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "mercure.yaml").write_text(
        "targets:\n"
        "  archive: {type: folder, folder: archive/out}\n"
        "  absolute: {type: folder, folder: /srv/archive}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    targets = load_config(site / "mercure.yaml").config.targets
    assert targets["archive"].folder == (site / "archive" / "out").resolve()  # type: ignore[union-attr]
    assert targets["absolute"].folder == Path("/srv/archive")  # type: ignore[union-attr]


URL_PASSWORD = "hunter2-in-url"


@pytest.mark.parametrize(
    ("section", "key", "advice"),
    [
        (
            "targets:\n  web: {type: dicomweb, url: '%s'}\n",
            "targets.web.url",
            "auth: basic with username and password, or auth: bearer with token",
        ),
        (
            "targets:\n  s3: {type: s3, bucket: b, endpoint_url: '%s'}\n",
            "targets.s3.endpoint_url",
            "access_key_id and secret_access_key",
        ),
        ("bookkeeper: {url: '%s'}\n", "bookkeeper.url", "bookkeeper.api_key"),
        ("processing: {docker_url: '%s'}\n", "processing.docker_url", "TLS"),
    ],
)
def test_credentials_in_urls_are_refused_without_repeating_them(
    section: str, key: str, advice: str
) -> None:
    """`user:password@` in any URL setting is an error at its key path that points to the auth
    settings, and the message does not echo the password."""
    url = f"https://alice:{URL_PASSWORD}@pacs.example.org:8443/dicom-web"
    (issue,) = issues_of(section % url)
    assert issue.startswith(f"{key}: credentials in the URL are not allowed")
    assert advice in issue
    assert URL_PASSWORD not in issue and "alice" not in issue


def test_a_user_name_alone_in_a_url_is_refused_too() -> None:
    """`user@host` is a credential as well (a token is often passed as the user name)."""
    (issue,) = issues_of("targets:\n  web: {type: dicomweb, url: 'https://tok3n@h/dicom-web'}\n")
    assert issue.startswith("targets.web.url: credentials in the URL are not allowed")
    assert "tok3n" not in issue


def test_dicomweb_url_must_be_http_or_https() -> None:
    """A URL without scheme or with another one is named, not discovered at the first send."""
    (issue,) = issues_of("targets:\n  web: {type: dicomweb, url: 'orthanc:8042/dicom-web'}\n")
    assert issue.startswith("targets.web.url: not an http:// or https:// URL")


def test_check_config_refuses_url_credentials_without_printing_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mercure check-config` fails on a DICOMweb URL with a password and never prints it."""
    from mercure.cli import main

    config = tmp_path / "mercure.yaml"
    config.write_text(
        f"targets:\n  web: {{type: dicomweb, url: 'http://u:{URL_PASSWORD}@127.0.0.1/dw'}}\n"
    )
    assert main(["check-config", "--config", str(config)]) == 1
    captured = capsys.readouterr()
    assert "targets.web.url: credentials in the URL are not allowed" in captured.err
    assert URL_PASSWORD not in captured.err + captured.out


def test_module_settings_are_checked_against_its_settings_schema() -> None:
    """A module's settings_schema is a JSON Schema its settings must satisfy; each problem is
    named with its key path, and a schema that is no JSON Schema is refused as such."""
    schema = {
        "type": "object",
        "properties": {"threshold": {"type": "number", "minimum": 0}},
        "required": ["threshold"],
    }

    def issues(settings: dict[str, object], module_schema: object) -> list[str]:
        document = {
            "modules": {
                "seg": {
                    "runner": "command",
                    "command": ["true"],
                    "settings": settings,
                    "settings_schema": module_schema,
                }
            }
        }
        try:
            validate_document(document, environ={})
        except ConfigError as exc:
            return [str(issue) for issue in exc.issues]
        return []

    assert issues({"threshold": 0.5}, schema) == []
    assert issues({"threshold": -1}, schema) == [
        "modules.seg.settings.threshold: -1 is less than the minimum of 0"
    ]
    assert issues({}, schema) == ["modules.seg.settings: 'threshold' is a required property"]
    assert issues({}, {"type": "no-such-type"}) == [
        "modules.seg.settings_schema.type: not a JSON Schema: 'no-such-type' is not valid "
        "under any of the given schemas"
    ]
