"""The form engine (mercure.webgui.forms): controls from the models, and forms read back."""

from __future__ import annotations

from typing import Any

import pytest
from formhtml import as_multidict, control_names, form_pairs
from pydantic import BaseModel

from mercure.core.config.editing import KEEP, MASK, Document
from mercure.core.config.models import (
    BookkeeperConfig,
    CleanerConfig,
    DicomTarget,
    DicomWebTarget,
    DockerModule,
    ListenerConfig,
    ReceiverConfig,
    RouterConfig,
    Rule,
    SupervisorConfig,
)
from mercure.core.config.types import TimeWindow
from mercure.webgui.forms import (
    EXCLUDED,
    Control,
    FormErrors,
    build_form,
    duration_text,
    leaf_paths,
    parse_form,
    place_issues,
)
from mercure.webgui.rendering import environment

_TEMPLATE = environment().from_string(
    '<form action="/save">{% import "_form.html" as forms %}'
    "{{ forms.controls(controls, readonly) }}</form>"
)


def render(controls: list[Control], readonly: bool = False) -> str:
    """The controls as the pages render them."""
    return _TEMPLATE.render(controls=controls, readonly=readonly)


def by_name(controls: list[Control]) -> dict[str, Control]:
    """Every control of a form by name."""
    return {c.name: c for top in controls for c in top.walk()}


def submit(
    model: type[BaseModel],
    document: dict[str, Any],
    changes: dict[str, list[str]] | None = None,
    *,
    base_path: tuple[str | int, ...] = (),
    add: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Render a form for ``document``, let a browser submit it with ``changes``, parse it."""
    html = render(build_form(model, document, base_path=base_path, add=add))
    submitted = as_multidict(form_pairs(html, action="/save"))
    submitted.update(changes or {})
    return parse_form(model, submitted, document, base_path=base_path)


def test_each_type_gets_its_control() -> None:
    """Booleans, literals, numbers, durations, lists, dicts, sections, secrets: each its own."""
    listener = by_name(build_form(ListenerConfig, {}))
    assert listener["port"].kind == "number"
    assert listener["port"].attrs == {"min": "1", "max": "65535", "step": "1"}
    assert listener["aet"].kind == "text" and listener["aet"].attrs["pattern"]
    assert listener["accept_unknown_sop_classes"].kind == "checkbox"
    assert listener["release_grace"].kind == "duration"
    assert listener["release_grace"].default == "5s"
    assert listener["pdu_timeout"].kind == "duration" and listener["pdu_timeout"].nullable
    assert listener["allowed_calling_aets"].kind == "lines"
    assert listener["allowed_networks"].kind == "lines"
    assert listener["transfer_syntaxes"].kind == "choices"
    assert ("1.2.840.10008.1.2.1", "Explicit VR Little Endian") in listener[
        "transfer_syntaxes"
    ].options
    assert listener["tls"].kind == "optional"
    assert listener["tls.certificate"].kind == "text" and listener["tls.certificate"].required
    assert by_name(build_form(ReceiverConfig, {}))["listeners"].kind == "items"
    router = by_name(build_form(RouterConfig, {}))
    assert router["series_complete_trigger_by_calling_aet"].kind == "mapping"
    assert router["series_complete_trigger"].default == "1m"
    rule = by_name(build_form(Rule, {}))
    assert rule["action"].kind == "select" and rule["action"].selected == ["route"]
    assert rule["processing_settings"].kind == "mapping"
    bookkeeper = by_name(build_form(BookkeeperConfig, {}, base_path=("bookkeeper",)))
    assert bookkeeper["api_key"].kind == "secret"
    assert bookkeeper["database_url"].kind == "secret"  # may hold a password
    assert bookkeeper["previous_api_keys"].kind == "secrets"
    assert by_name(build_form(CleanerConfig, {}))["window.start"].kind == "time"
    assert by_name(build_form(DicomTarget, {}))["type"].kind == "fixed"
    assert by_name(build_form(SupervisorConfig, {}))["services"].kind == "choices"
    module = by_name(build_form(DockerModule, {}))
    assert module["volumes"].kind == "mounts"  # `source:target` lines
    assert module["environment"].kind == "environment"  # `NAME=value` lines
    assert module["settings"].kind == "mapping" and module["settings"].syntax == "json"


def test_every_leaf_has_a_named_control() -> None:
    """The rendered form names a control after every leaf path of the model."""
    for model in (ReceiverConfig, RouterConfig, CleanerConfig, BookkeeperConfig, DicomWebTarget):
        names = control_names(render(build_form(model, {})))
        assert set(leaf_paths(model)) <= names, model


def test_untouched_form_of_empty_document_writes_nothing() -> None:
    """Defaults the file does not write stay unwritten."""
    for model in (ReceiverConfig, RouterConfig, CleanerConfig, SupervisorConfig, TimeWindow):
        assert submit(model, {}) == {}, model


@pytest.mark.parametrize(
    ("model", "document"),
    [
        (
            ReceiverConfig,
            {
                "fsync": False,
                "idle_timeout": "10m",
                "listeners": [
                    {
                        "name": "ct",
                        "port": 104,
                        "aet": "CT_IN",
                        "allowed_calling_aets": ["CT1", "CT2"],
                        "allowed_networks": ["10.0.0.0/8"],
                        "transfer_syntaxes": ["1.2.840.10008.1.2.1"],
                        "tls": {"certificate": "/etc/c.pem", "key": "/etc/k.pem"},
                        "pdu_timeout": None,
                        "release_grace": "15m",
                    },
                    {"name": "mr", "port": 105, "complete_on_release": True},
                ],
            },
        ),
        (
            RouterConfig,
            {"series_complete_trigger": 90, "series_complete_trigger_by_calling_aet": {"MR": "5m"}},
        ),
        (CleanerConfig, {"window": {"start": "23:00", "end": "05:00"}, "interval": "2m"}),
        (SupervisorConfig, {"services": ["receiver", "router"], "stop_timeout": 10}),
        (
            Rule,
            {
                "rule": "tags.Modality == 'CT'",
                "action": "both",
                "targets": ["pacs"],
                "processing_module": ["seg"],
                "processing_settings": {"threshold": 0.5, "labels": ["a", "b"]},
                "priority": "urgent",
            },
        ),
        (
            DockerModule,
            {"runner": "docker", "image": "x:1", "volumes": [{"source": "/a", "target": "/b"}]},
        ),
    ],
)
def test_render_then_parse_gives_the_same_document(
    model: type[BaseModel], document: dict[str, Any]
) -> None:
    """A form submitted unchanged gives back exactly what the document holds."""
    assert submit(model, document) == document


def test_durations_are_written_as_typed() -> None:
    """`15m` stays `15m`; a plain number becomes a number."""
    changed = submit(
        RouterConfig, {}, {"series_complete_trigger": ["15m"], "rescan_interval": ["90"]}
    )
    assert changed == {"series_complete_trigger": "15m", "rescan_interval": 90}


def test_emptied_input_removes_the_key_and_null_switches_off() -> None:
    """An input emptied means the default again; `null` is no limit where that is allowed."""
    document = {"listeners": [{"port": 104, "pdu_timeout": 30}]}
    changed = submit(
        ReceiverConfig,
        document,
        {"listeners[0].port": [""], "listeners[0].pdu_timeout": ["null"]},
    )
    assert changed == {"listeners": [{"pdu_timeout": None}]}


def test_checkbox_unchecked_is_seen() -> None:
    """Unchecking a box writes false (the hidden companion is what the browser sends)."""
    html = render(build_form(ReceiverConfig, {"fsync": True}))
    pairs = [p for p in form_pairs(html) if p != ("fsync", "on")]
    assert parse_form(ReceiverConfig, as_multidict(pairs), {"fsync": True})["fsync"] is False


def test_unknown_keys_and_fields_not_on_the_form_stay() -> None:
    """What the form does not show is kept as the document has it."""
    document = {"appliance_name": "x", "router": {"series_complete_trigger": 5}, "x-note": 1}
    from mercure.core.config.models import MercureConfig

    html = render(build_form(MercureConfig, document, fields=["appliance_name"]))
    submitted = as_multidict(form_pairs(html))
    submitted["appliance_name"] = ["y"]
    changed = parse_form(MercureConfig, submitted, document, fields=["appliance_name"])
    assert changed == {**document, "appliance_name": "y"}


def test_secrets_are_never_rendered() -> None:
    """Neither a secret nor a password in a database URL reaches the page; ${ENV} names do."""
    document = {
        "api_key": "s3cr3t-api-key",
        "database_url": "postgresql+psycopg://u:hunter2@db/mercure",
        "previous_api_keys": ["old-key-1", "${OLD_KEY}"],
    }
    html = render(build_form(BookkeeperConfig, document, base_path=("bookkeeper",)))
    for secret in ("s3cr3t-api-key", "hunter2", "old-key-1"):
        assert secret not in html
    assert "2 set (${OLD_KEY} from the environment)" in html
    html = render(build_form(BookkeeperConfig, {"api_key": "${BK_KEY}"}, base_path=("bookkeeper",)))
    assert "set from the environment variable ${BK_KEY}" in html
    module = render(
        build_form(
            DockerModule,
            {"runner": "docker", "image": "x", "environment": {"TOKEN": "abc123", "H": "${H}"}},
            base_path=("modules", "seg"),
        )
    )
    assert "abc123" not in module and "${H}" in module


def test_secret_left_empty_is_kept_typed_replaces_clear_removes() -> None:
    """KEEP for an empty secret input; a typed value replaces it; "clear" removes it."""
    document = {"api_key": "old-secret", "port": 8080}
    kept = submit(BookkeeperConfig, document, base_path=("bookkeeper",))
    assert kept["api_key"] is KEEP and kept["port"] == 8080
    typed = submit(BookkeeperConfig, document, {"api_key": ["${NEW}"]}, base_path=("bookkeeper",))
    assert typed["api_key"] == "${NEW}"
    cleared = submit(
        BookkeeperConfig, document, {"api_key:clear": ["on"]}, base_path=("bookkeeper",)
    )
    assert "api_key" not in cleared
    assert "api_key" not in submit(BookkeeperConfig, {}, base_path=("bookkeeper",))

    doc = Document("bookkeeper:\n  api_key: old-secret  # rotated 2026-11\n  port: 8080\n")
    doc.set(("bookkeeper",), kept)
    assert doc.dump() == "bookkeeper:\n  api_key: old-secret  # rotated 2026-11\n  port: 8080\n"


def test_masked_module_environment_values_are_kept() -> None:
    """A module's environment shows MASK for values; an unchanged MASK keeps the value."""
    document = {"runner": "docker", "image": "x", "environment": {"TOKEN": "abc123"}}
    changed = submit(DockerModule, document, base_path=("modules", "seg"))
    assert changed["environment"] == {"TOKEN": KEEP}
    with pytest.raises(FormErrors, match="none is stored under API_TOKEN"):
        submit(
            DockerModule,
            document,
            {"environment": [f"API_TOKEN={MASK}\n"]},
            base_path=("modules", "seg"),
        )


def test_comments_survive_a_settings_save() -> None:
    """Comments and key order of a hand-written file stay when a section is saved from a form."""
    text = (
        "# mercure-router at the hospital\n"
        "router:\n"
        "  # CT scanners are slow\n"
        "  series_complete_trigger: 2m   # do not lower\n"
        "  rescan_interval: 60\n"
        "receiver:\n"
        "  listeners:\n"
        "    - name: main  # the only one\n"
        "      port: 11112\n"
        "      allowed_calling_aets: [CT1]\n"
    )
    doc = Document(text)
    router = doc.get(("router",))
    doc.set(("router",), submit(RouterConfig, router, {"rescan_interval": ["90s"]}))
    receiver = doc.get(("receiver",))
    doc.set(
        ("receiver",),
        submit(ReceiverConfig, receiver, {"listeners[0].allowed_calling_aets": ["CT1\nCT2\n"]}),
    )
    out = doc.dump()
    assert "# mercure-router at the hospital" in out
    assert "  # CT scanners are slow\n  series_complete_trigger: 2m   # do not lower\n" in out
    assert "rescan_interval: 90s" in out
    assert "- name: main  # the only one" in out
    assert doc.get(("receiver", "listeners", 0, "allowed_calling_aets")) == ["CT1", "CT2"]
    assert "fsync" not in out and "idle_timeout" not in out


def test_mapping_text_that_does_not_parse_names_the_field() -> None:
    """A dict field with unreadable text is refused with the field's name and the line."""
    with pytest.raises(FormErrors) as caught:
        submit(RouterConfig, {}, {"series_complete_trigger_by_calling_aet": ["MR: 5m\nCT: [\n"]})
    assert list(caught.value.errors) == ["series_complete_trigger_by_calling_aet"]
    assert "line" in caught.value.errors["series_complete_trigger_by_calling_aet"]
    with pytest.raises(FormErrors):
        submit(RouterConfig, {}, {"series_complete_trigger_by_calling_aet": ["just words"]})


def test_json_is_accepted_for_dicts() -> None:
    """A JSON object in a dict field is read as well as `key: value` lines."""
    changed = submit(Rule, {"rule": "True"}, {"processing_settings": ['{"a": 1, "b": [2]}']})
    assert changed["processing_settings"] == {"a": 1, "b": [2]}


def test_list_items_are_added_and_removed() -> None:
    """`add` renders an empty item; a checked "remove" drops one."""
    document = {"listeners": [{"name": "a", "port": 104}, {"name": "b", "port": 105}]}
    added = submit(
        ReceiverConfig,
        document,
        {"listeners[2].name": ["c"], "listeners[2].port": ["106"]},
        add=("listeners",),
    )
    assert [item["name"] for item in added["listeners"]] == ["a", "b", "c"]
    removed = submit(ReceiverConfig, document, {"listeners[0]:remove": ["on"]})
    assert removed == {"listeners": [{"name": "b", "port": 105}]}


def test_optional_section_is_switched_on_and_off() -> None:
    """An optional section is written only while its "enabled" box is checked."""
    off = submit(CleanerConfig, {"window": {"start": "23:00"}}, {"window:enabled": ["off"]})
    assert off == {}
    on = submit(
        CleanerConfig,
        {},
        {"window:enabled": ["off", "on"], "window.start": ["21:30"], "window.end": ["04:00"]},
    )
    assert on == {"window": {"start": "21:30", "end": "04:00"}}


def test_choices_keep_values_that_are_not_offered() -> None:
    """A listed value the form does not know stays selected (nothing is lost silently)."""
    document = {"transfer_syntaxes": ["1.2.3.4"]}
    control = by_name(build_form(ListenerConfig, document))["transfer_syntaxes"]
    assert ("1.2.3.4", "1.2.3.4") in control.options and control.selected == ["1.2.3.4"]
    assert submit(ListenerConfig, document) == document


def test_invalid_values_pass_through_for_validation() -> None:
    """The engine keeps what cannot be a number as typed: the validation reports it."""
    assert submit(ReceiverConfig, {}, {"max_pdu": ["lots"]}) == {"max_pdu": "lots"}


def test_issues_are_placed_next_to_their_controls() -> None:
    """Key paths of issues find their control; what has none is returned for the banner."""
    controls = build_form(ReceiverConfig, {"listeners": [{"port": 104}]})
    unplaced = place_issues(
        controls,
        [
            ("receiver.listeners[0].port", "must be 1 to 65535"),
            ("receiver.listeners[0].allowed_calling_aets[1]", "too long"),
            ("receiver.listeners[0]", "bad listener"),
            ("receiver", "several listeners on the same port"),
            ("router.rescan_interval", "elsewhere"),
        ],
        prefix="receiver",
    )
    named = by_name(controls)
    assert named["listeners[0].port"].errors == ["must be 1 to 65535"]
    assert named["listeners[0].allowed_calling_aets"].errors == ["[1]: too long"]
    assert named["listeners[0]"].errors == ["bad listener"]
    assert unplaced == [
        "receiver: several listeners on the same port",
        "router.rescan_interval: elsewhere",
    ]
    assert 'role="alert">must be 1 to 65535</small>' in render(controls)


def test_readonly_form_disables_every_control() -> None:
    """Viewers see the values, and nothing they could submit."""
    html = render(build_form(ReceiverConfig, {"fsync": False}), readonly=True)
    assert form_pairs(html) == []
    assert "Add an item" not in html


def test_markup_in_values_and_help_stays_text() -> None:
    """Values from the file are escaped."""
    html = render(build_form(ListenerConfig, {"host": '"><script>alert(1)</script>'}))
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_durations_read_as_people_write_them() -> None:
    """Defaults are shown in the largest exact unit."""
    assert [duration_text(s) for s in (259200, 90, 60, 5.5, 0)] == ["3d", "90s", "1m", "5.5s", "0s"]


def test_excluded_is_small_and_explained() -> None:
    """Every exclusion gives its reason."""
    assert set(EXCLUDED) == {"rules", "targets", "modules", "notifications", "sources"}
    assert all(len(reason) > 20 for reason in EXCLUDED.values())


def test_alias_key_and_single_name_are_kept_as_written() -> None:
    """A rule written mercure's way (`target: pacs`) is shown and saved back the same way."""
    document = {"rule": "True", "target": "pacs"}
    assert by_name(build_form(Rule, document))["targets"].value == "pacs"
    assert submit(Rule, document) == document
    assert submit(Rule, document, {"targets": ["pacs\narchive"]}) == {
        "rule": "True",
        "target": ["pacs", "archive"],
    }


def test_a_secret_missing_from_the_form_is_kept_never_returned() -> None:
    """A post without the secret's input keeps it (KEEP), and never carries the stored value
    (a target test checks KEEP before sending a stored password anywhere)."""
    document = {"type": "dicomweb", "url": "http://x", "password": "stored-pw"}
    changed = parse_form(DicomWebTarget, {"url": ["http://y"]}, document)
    assert changed["password"] is KEEP and changed["url"] == "http://y"
    cleared = parse_form(DicomWebTarget, {"password:clear": ["on"]}, document)
    assert "password" not in cleared


def test_module_environment_volumes_and_json_settings() -> None:
    """`NAME=value` lines (values masked when shown), `source:target` lines, JSON settings;
    a line that is neither is refused at its field, naming the line."""
    document = {
        "runner": "docker",
        "image": "x:1",
        "environment": {"TOKEN": "abc123", "HOME_DIR": "${HOME}"},
        "volumes": [{"source": "/srv/models", "target": "/models"}],
        "settings": {"threshold": 0.5, "labels": ["a"]},
    }
    controls = by_name(build_form(DockerModule, document, base_path=("modules", "seg")))
    assert controls["environment"].value == f"TOKEN={MASK}\nHOME_DIR=${{HOME}}"
    assert controls["volumes"].value == "/srv/models:/models"
    assert controls["settings"].value.startswith("{\n")  # JSON
    assert submit(DockerModule, document, base_path=("modules", "seg")) == {
        **document,
        "environment": {"TOKEN": KEEP, "HOME_DIR": "${HOME}"},
    }
    for field, text, message in (
        ("environment", "TOKEN", "line 1: write NAME=value"),
        ("volumes", "/srv/models:/models\n/nowhere", "line 2: write source:target"),
        ("settings", "{threshold: 1", "not JSON: Expecting property name"),
    ):
        with pytest.raises(FormErrors) as caught:
            submit(DockerModule, document, {field: [text]}, base_path=("modules", "seg"))
        assert message in caught.value.errors[field]
        again = by_name(build_form(DockerModule, caught.value.value, stored=document))
        assert "abc123" not in again["environment"].value


def test_a_refused_save_says_the_same_on_every_page() -> None:
    """configedit.refusal: a conflict is 409 and keeps the input; problems at their fields are
    counted, the others named; a refusal without issues gives its reason."""
    from mercure.webgui.configedit import EditRefused, refusal

    conflict = EditRefused("changed since you opened it.", conflict=True)
    message, status = refusal(conflict, [])
    assert status == 409 and "changed since you opened it" in message and "kept" in message
    issues = [("targets.a.port", "too big"), ("targets.a.host", "empty"), ("rules.x", "no a")]
    invalid = EditRefused("the change was not saved: 3 problems", issues)
    assert refusal(invalid, ["rules.x: no a"]) == (
        "Not saved: 2 problems shown at the fields; rules.x: no a.",
        400,
    )
    assert refusal(EditRefused("There is a target named 'a' already."), []) == (
        "Not saved: There is a target named 'a' already.",
        400,
    )
