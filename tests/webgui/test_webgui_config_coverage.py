"""Everything a user can set in mercure.yaml can be set in the browser: a walker over the config
models GETs each object's edit page and fails for a field without a form control.

The table :data:`PAGES` says which page edits which model: each settings section, a rule, each
target type, each module runner. For each row the walker expects ``name="<key path>"`` for
every leaf field of the model (sections expanded, a list of sections as its first item,
``listeners[0].port``, asking the page for ``?add=<list>`` when it shows none; or one control
for the whole list, ``name="volumes"`` as a textarea of ``source:target`` lines), unless the
field is listed in :data:`mercure.webgui.forms.EXCLUDED` with a reason. A field added to a
model without a control makes this test fail (proved below with a copy of a model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

import httpx
import pytest
import yaml
from formhtml import control_names
from pydantic import BaseModel, create_model
from webgui_harness import WebGui

from mercure.core.config.models import (
    INSTALLED_TARGET_TYPES,
    AppriseChannel,
    BookkeeperConfig,
    CleanerConfig,
    CommandModule,
    DicomSource,
    DicomTarget,
    DicomWebSource,
    DicomWebTarget,
    DispatchConfig,
    DockerModule,
    DummyTarget,
    EmailChannel,
    EventsConfig,
    FolderTarget,
    ListenerConfig,
    LoggingConfig,
    MercureConfig,
    NotifierConfig,
    ProcessingConfig,
    ReceiverConfig,
    RetrieveConfig,
    RouterConfig,
    RsyncTarget,
    Rule,
    S3Target,
    ScaleOutConfig,
    SftpTarget,
    SupervisorConfig,
    WebGuiConfig,
    WebhookChannel,
    XnatTarget,
)
from mercure.core.config.targettypes import installed_types
from mercure.core.config.types import TimeWindow
from mercure.webgui.forms import EXCLUDED, leaf_paths, shape

PAGE = {"accept": "text/html"}


@dataclass(frozen=True)
class EditPage:
    """A page that edits one object: its model, where the object is in the file, the URL."""

    model: type[BaseModel]
    base: str
    """Key path of the object in mercure.yaml, ``*`` for a name: ``receiver``, ``rules.*``;
    empty for the top-level keys."""
    url: str
    fields: tuple[str, ...] | None = None
    """Only these fields (the top-level scalars on the general page)."""


def _top_level_scalars() -> tuple[str, ...]:
    return tuple(
        name
        for name in MercureConfig.model_fields
        if name not in EXCLUDED
        and shape(MercureConfig, name).kind not in ("group", "optional", "mapping")
    )


GENERAL = EditPage(MercureConfig, "", "/settings", fields=_top_level_scalars())
SETTINGS = [
    EditPage(model, key, f"/settings/{key}")
    for key, model in (
        ("receiver", ReceiverConfig),
        ("router", RouterConfig),
        ("processing", ProcessingConfig),
        ("dispatch", DispatchConfig),
        ("retrieve", RetrieveConfig),
        ("scale_out", ScaleOutConfig),
        ("offpeak", TimeWindow),
        ("cleaner", CleanerConfig),
        ("bookkeeper", BookkeeperConfig),
        ("webgui", WebGuiConfig),
        ("notifier", NotifierConfig),
        ("events", EventsConfig),
        ("logging", LoggingConfig),
        ("supervisor", SupervisorConfig),
    )
]
OBJECTS = [
    EditPage(Rule, "rules.*", "/rules/new"),
    EditPage(DicomTarget, "targets.*", "/targets/new?type=dicom"),
    EditPage(DicomWebTarget, "targets.*", "/targets/new?type=dicomweb"),
    EditPage(SftpTarget, "targets.*", "/targets/new?type=sftp"),
    EditPage(S3Target, "targets.*", "/targets/new?type=s3"),
    EditPage(FolderTarget, "targets.*", "/targets/new?type=folder"),
    EditPage(RsyncTarget, "targets.*", "/targets/new?type=rsync"),
    EditPage(XnatTarget, "targets.*", "/targets/new?type=xnat"),
    EditPage(DummyTarget, "targets.*", "/targets/new?type=dummy"),
    EditPage(DockerModule, "modules.*", "/modules/new?runner=docker"),
    EditPage(CommandModule, "modules.*", "/modules/new?runner=command"),
    EditPage(WebhookChannel, "notifications.*", "/notifications/new?type=webhook"),
    EditPage(EmailChannel, "notifications.*", "/notifications/new?type=email"),
    EditPage(AppriseChannel, "notifications.*", "/notifications/new?type=apprise"),
    EditPage(DicomSource, "sources.*", "/sources/new?type=dicom"),
    EditPage(DicomWebSource, "sources.*", "/sources/new?type=dicomweb"),
]
PAGES = [
    pytest.param(GENERAL, id="general"),
    *(pytest.param(page, id=page.base) for page in SETTINGS),
    *(pytest.param(page, id=page.url) for page in OBJECTS),
]


# --- the walker -----------------------------------------------------------------------------
def _strip_indices(path: str) -> str:
    return path.replace("[0]", "")


def is_excluded(page: EditPage, leaf: str) -> bool:
    """Whether EXCLUDED lists the leaf (or a section it lies in, below the page's object)."""
    full = _strip_indices(f"{page.base}.{leaf}" if page.base else leaf)
    parts = full.split(".")
    depth = len(page.base.split(".")) if page.base else 0
    return any(".".join(parts[:n]) in EXCLUDED for n in range(depth + 1, len(parts) + 1))


def expected_names(page: EditPage) -> list[str]:
    """The control names the page must have for its model."""
    if page.fields is None:
        return list(leaf_paths(page.model))
    return [leaf for name in page.fields for leaf in leaf_paths(page.model) if leaf == name]


def list_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Control names of the lists of sections in the model (``listeners``, ``volumes``)."""
    found = []
    for name in model.model_fields:
        kind = shape(model, name)
        if kind.kind == "items":
            found.append(prefix + name)
        elif kind.kind in ("group", "optional"):
            found.extend(list_fields(kind.base, f"{prefix}{name}."))
    return found


def check_page(client: httpx.Client, page: EditPage) -> None:
    """Fail unless the page exists and has a control for every leaf field of its model."""
    response = client.get(page.url, headers=PAGE)
    assert response.status_code == 200, f"{page.url}: the edit page answers {response.status_code}"
    names = control_names(response.text)
    additions = [
        name
        for name in list_fields(page.model)
        if name not in names and not any(n.startswith(f"{name}[0].") for n in names)
    ]
    if additions:  # lists of sections with no item shown: ask for an empty one
        joiner = "&" if "?" in page.url else "?"
        query = "&".join(f"add={name}" for name in additions)
        more = client.get(page.url + joiner + query, headers=PAGE)
        assert more.status_code == 200, f"{page.url}: ?{query} answers {more.status_code}"
        names |= control_names(more.text)
    whole = [name for name in list_fields(page.model) if name in names]
    missing = [
        leaf
        for leaf in expected_names(page)
        if leaf not in names
        and not is_excluded(page, leaf)
        and not any(leaf.startswith(f"{name}[0].") for name in whole)
    ]
    where = page.base or "top level"
    assert not missing, (
        f"{page.url} ({page.model.__name__}, {where}) has no form control for: "
        + ", ".join(f"{page.base}.{m}" if page.base else m for m in missing)
        + ". Give each a control, or an entry with the reason in mercure.webgui.forms.EXCLUDED."
    )


# --- the tests ------------------------------------------------------------------------------
@pytest.mark.parametrize("page", PAGES)
def test_every_field_has_a_form_control(
    webgui: WebGui, admin: httpx.Client, page: EditPage
) -> None:
    """The object's edit page names a control after every leaf field of its model, in an
    installation with a target and a module to choose from (the rule editor offers one
    checkbox per configured target and says so when there is none)."""
    document = yaml.safe_load(webgui.config_path.read_text())
    document["targets"] = {"archive": {"type": "folder", "folder": str(webgui.folder / "out")}}
    document["modules"] = {"anonymizer": {"runner": "command", "command": ["true"]}}
    webgui.config_path.write_text(yaml.safe_dump(document))
    check_page(admin, page)


def _union_members(annotation: Any) -> list[type[BaseModel]]:
    while get_origin(annotation) is Annotated:
        if INSTALLED_TARGET_TYPES in get_args(annotation)[1:]:  # plug-ins: the installed types
            return [kind.model for kind in installed_types().values()]
        annotation = get_args(annotation)[0]
    if get_origin(annotation) is dict:
        return _union_members(get_args(annotation)[1])
    if get_origin(annotation) is Union or type(annotation).__name__ == "UnionType":
        return [m for arg in get_args(annotation) for m in _union_members(arg)]
    return [annotation] if isinstance(annotation, type) else []


def test_the_table_covers_the_whole_configuration() -> None:
    """Every top-level field of MercureConfig has a page (or an exclusion), and every type of
    rule, target and module has its row: a new section or target type needs its page."""
    settings = {page.base: page.model for page in SETTINGS}
    objects = {(page.base.split(".")[0], page.model) for page in OBJECTS}
    for name, info in MercureConfig.model_fields.items():
        kind = shape(MercureConfig, name).kind
        if kind == "mapping":  # rules, targets, modules: by name, each type its page
            members = _union_members(info.annotation)
            assert members, name
            for member in members:
                assert (name, member) in objects, f"no edit page row for {name}: {member}"
            assert name in EXCLUDED, f"{name} has its own pages: say so in EXCLUDED"
        elif kind in ("group", "optional"):
            assert settings.get(name) is shape(MercureConfig, name).base, f"no page for {name}"
        else:
            assert name in GENERAL.fields, name


def test_excluded_entries_name_real_fields() -> None:
    """An exclusion that names no field (a typo, a removed field) is an error."""
    known = set()
    for name in MercureConfig.model_fields:
        known.add(name)
    for page in [GENERAL, *SETTINGS, *OBJECTS]:
        for leaf in leaf_paths(page.model):
            parts = _strip_indices(leaf).split(".")
            base = page.base.split(".") if page.base else []
            known.update(".".join(base + parts[:n]) for n in range(1, len(parts) + 1))
    assert set(EXCLUDED) <= known, set(EXCLUDED) - known


def test_a_field_added_without_a_control_fails_the_walker(admin: httpx.Client) -> None:
    """A copy of RouterConfig with one more field: the walker names the field it misses."""
    router = create_model(
        "RouterConfig",
        __base__=RouterConfig,
        series_complete_grace=(int, 5),
    )
    with pytest.raises(AssertionError, match=r"no form control for: router\.series_complete_grace"):
        check_page(admin, EditPage(router, "router", "/settings/router"))
    check_page(admin, EditPage(RouterConfig, "router", "/settings/router"))


def test_a_field_added_deep_in_a_list_of_sections_fails_the_walker(admin: httpx.Client) -> None:
    """A field added to a listener (a list item of the receiver) is missed just the same."""
    listener = create_model("ListenerConfig", __base__=ListenerConfig, dscp=(int, 0))
    receiver = create_model(
        "ReceiverConfig",
        __base__=ReceiverConfig,
        listeners=(list[listener], []),  # type: ignore[valid-type]
    )
    with pytest.raises(AssertionError, match=r"receiver\.listeners\[0\]\.dscp"):
        check_page(admin, EditPage(receiver, "receiver", "/settings/receiver"))


def test_a_missing_page_fails_the_walker(admin: httpx.Client) -> None:
    """A row whose page does not exist fails with its status."""
    with pytest.raises(AssertionError, match="answers 404"):
        check_page(admin, EditPage(RouterConfig, "router", "/settings/nowhere"))


def test_one_control_for_a_whole_list_of_sections_counts(admin: httpx.Client) -> None:
    """A list of sections edited as one control named after the list counts for its fields;
    without either, the item fields are missed."""
    listener = create_model("ListenerConfig", __base__=ListenerConfig, dscp=(int, 0))
    receiver = create_model(
        "ReceiverConfig",
        __base__=ReceiverConfig,
        listeners=(list[listener], []),  # type: ignore[valid-type]
        fsync=(list[listener], []),  # type: ignore[valid-type]  # "fsync" is one control
    )
    with pytest.raises(AssertionError) as caught:
        check_page(admin, EditPage(receiver, "receiver", "/settings/receiver"))
    assert "listeners[0].dscp" in str(caught.value) and "fsync[0]" not in str(caught.value)
