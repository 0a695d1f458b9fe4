"""Notifications in core: channels in the configuration, the queue, triggers and templates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mercure.core.config import parse_document, validate_document
from mercure.core.config.models import MercureConfig
from mercure.core.datafolder import DataFolder
from mercure.core.errors import ConfigError
from mercure.core.notifications.queue import (
    Notification,
    enqueue,
    queued,
    read_notification,
    write_notification,
)
from mercure.core.notifications.templates import (
    FIELDS,
    PHI_FIELDS,
    SAMPLE,
    TemplateProblem,
    check_template,
    render,
    template_fields,
)
from mercure.core.notifications.triggers import due_channels, notify_task, task_facts
from mercure.core.task import Task, TaskInfo, TaskProcessing

CONFIG = """
notifications:
  teams:
    type: webhook
    url: https://hooks.example.org/T0/B0/the-token
  lab:
    type: email
    host: smtp.example.org
    sender: mercure@example.org
    to: [lab@example.org]
targets:
  archive: {type: folder, folder: /srv/archive}
rules:
  ct:
    rule: "tags.Modality == 'CT'"
    targets: archive
    notification_channels: [teams, lab]
"""


def config_of(text: str) -> MercureConfig:
    return validate_document(parse_document(text, "x.yaml"), environ={}).config


def issues_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate_document(parse_document(text, "x.yaml"), source="x.yaml", environ={})
    return [str(issue) for issue in caught.value.issues]


def a_task(**info: object) -> Task:
    fields: dict[str, object] = {
        "action": "route",
        "uid": "1.2.3.4",
        "applied_rule": "ct",
        "patient_name": "DOE^JANE",
        "mrn": "123",
        "acc": "A1",
    }
    fields.update(info)
    return Task(id="20261204T101500000000Z-1a2b3c4d", info=TaskInfo.model_validate(fields))


def test_channels_and_rule_fields_load_with_mercures_trigger_defaults() -> None:
    """mercure's defaults: reception, completion and error notify; on request does not."""
    config = config_of(CONFIG)
    rule = config.rules["ct"]
    assert rule.notification_channels == ["teams", "lab"]
    assert rule.notification_trigger_reception and rule.notification_trigger_completion
    assert rule.notification_trigger_error and not rule.notification_trigger_completion_on_request
    assert config.notifications["teams"].type == "webhook"


def test_webhook_url_is_a_secret_and_must_be_http() -> None:
    """A chat webhook's token is in its path: the URL is masked, never echoed in an error."""
    config = config_of(CONFIG)
    assert "the-token" not in repr(config.notifications["teams"])
    issues = issues_of(CONFIG.replace("https://hooks.example.org/T0/B0/the-token", "ftp://x/tok"))
    assert issues == ["notifications.teams.url: not an http:// or https:// URL with a host"]


def test_unknown_channel_and_bad_templates_are_configuration_errors() -> None:
    """check-config names the rule's channel and each template with what is wrong."""
    text = CONFIG.replace("[teams, lab]", "[teams, pager]")
    text = text.replace(
        "    to: [lab@example.org]",
        "    to: [lab@example.org]\n    subject: '{{ pateint_name }}'\n"
        "    body: '{{ rule.__class__ }}'",
    )
    assert issues_of(text) == [
        "rules.ct.notification_channels[1]: unknown notification channel 'pager'",
        "notifications.lab.subject: 'pateint_name' is undefined",
        "notifications.lab.body: access to attribute '__class__' of 'str' object is unsafe.",
    ]


def test_json_webhook_body_must_render_to_json() -> None:
    """A JSON body that renders to something else is refused before it reaches a peer."""
    text = CONFIG.replace(
        "    url: https://hooks.example.org/T0/B0/the-token",
        "    url: https://hooks.example.org/T0/B0/the-token\n    body: '{\"text\": {{ text }}}'",
    )
    [issue] = issues_of(text)
    assert issue.startswith("notifications.teams.body: the body is not valid JSON when rendered")


def test_templates_are_sandboxed_and_cannot_change_values() -> None:
    """No internals, no mutation of the fields, no unbounded output."""
    with pytest.raises(TemplateProblem, match="unsafe"):
        render("{{ targets.__class__.__mro__ }}", SAMPLE)
    with pytest.raises(TemplateProblem):
        render("{{ targets.append('x') }}", SAMPLE)
    with pytest.raises(TemplateProblem, match="longer than"):
        render("{% for i in range(100000) %}{{ text }}{% endfor %}", SAMPLE)
    assert check_template("{{ text }} {{ result.finding }}") is None


def test_html_templates_escape_dicom_values() -> None:
    """A description from the modality cannot inject markup into an HTML e-mail."""
    fields = dict(SAMPLE, study_description="<script>x</script>")
    assert render("{{ study_description }}", fields, html=True) == "&lt;script&gt;x&lt;/script&gt;"


def test_phi_fields_are_empty_unless_the_channel_allows_them() -> None:
    """Off by default: no patient name, id, birth date, accession or UIDs in a message."""
    hidden = template_fields(SAMPLE, include_phi=False, web_url=None)
    assert all(hidden[name] == "" for name in PHI_FIELDS)
    assert hidden["link"] == "" and hidden["modality"] == "CT"
    shown = template_fields(SAMPLE, include_phi=True, web_url="https://m.example.org/")
    assert shown["patient_name"] == "DOE^JANE"
    assert shown["link"] == f"https://m.example.org/queue/tasks/{SAMPLE['task_id']}"
    assert set(shown) == set(FIELDS)


def test_triggers_follow_mercures_options() -> None:
    """Completion on request fires only when a module's result asks, even with completion off."""
    config = config_of(
        CONFIG.replace(
            "    notification_channels: [teams, lab]",
            "    notification_channels: [teams]\n"
            "    notification_trigger_completion: false\n"
            "    notification_trigger_completion_on_request: true\n"
            "    notification_urgent_only: [error]",
        )
    )
    task = a_task()
    assert due_channels(config, task, "completion") == []
    task.process = [
        TaskProcessing(
            module_name="ai", output={"__mercure_notification": {"requested": True, "text": "x"}}
        )
    ]
    assert due_channels(config, task, "completion") == [("ct", "teams")]
    assert due_channels(config, task, "reception") == [("ct", "teams")]
    assert due_channels(config, task, "error") == []
    assert due_channels(config, a_task(priority="urgent"), "error") == [("ct", "teams")]


def test_triggered_rules_are_used_without_an_applied_rule() -> None:
    """A routed series names its rules in triggered_rules, as in mercure."""
    config = config_of(CONFIG)
    task = a_task(applied_rule=None, triggered_rules={"ct": True, "gone": True})
    assert due_channels(config, task, "error") == [("ct", "teams"), ("ct", "lab")]


def test_facts_carry_results_details_and_the_failure() -> None:
    """The module's result and text, the failure reason; PHI is in the facts, not the message."""
    config = config_of(CONFIG)
    task = a_task(fail_stage="dispatch", reason="refused")
    task.process = [
        TaskProcessing(
            module_name="ai",
            output={"finding": 1, "__mercure_notification": {"requested": True, "text": "bleed"}},
        )
    ]
    facts = task_facts(config, task, "error", "ct", {"Modality": "CT"})
    assert facts["details"] == "bleed" and facts["result"]["finding"] == 1
    assert facts["reason"] == "refused" and facts["fail_stage"] == "dispatch"
    assert facts["text"] == f"Task {task.id} of rule ct failed in dispatch."
    assert facts["patient_name"] == "DOE^JANE" and facts["modality"] == "CT"
    assert "DOE" not in facts["text"]


def test_notify_task_queues_one_durable_file_per_channel(tmp_path: Path) -> None:
    """Each (rule, channel) becomes one file; unrelated tasks write nothing."""
    data = DataFolder(tmp_path / "data")
    data.ensure()
    config = config_of(CONFIG)
    made = notify_task(data, config, a_task(), "reception", tags={"Modality": "CT"})
    assert [n.channel for n in made] == ["teams", "lab"]
    paths = queued(data)
    assert len(paths) == 2
    first = read_notification(paths[0])
    assert first.trigger == "reception" and first.facts["modality"] == "CT"
    assert notify_task(data, config, a_task(applied_rule="other"), "reception") == []
    assert len(queued(data)) == 2


def test_queue_files_replace_atomically_and_keep_their_order(tmp_path: Path) -> None:
    """An attempt is recorded by replacing the file; temporary names are never listed."""
    data = DataFolder(tmp_path / "data")
    data.ensure()
    ids = ["20261204T000000000000Z-aa", "20261204T000001000000Z-bb"]
    for notification_id in reversed(ids):
        enqueue(data, Notification(id=notification_id, channel="teams", trigger="test"))
    (data.notifications_dir / ".tmp-x.json").write_text("{")
    paths = queued(data)
    assert [p.stem for p in paths] == ids
    notification = read_notification(paths[0])
    notification.attempts = 1
    notification.last_error = "HTTP 503"
    write_notification(paths[0], notification)
    assert json.loads(paths[0].read_text())["attempts"] == 1
