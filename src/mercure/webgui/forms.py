"""Forms made from the configuration models: one engine for every configuration page.

:func:`build_form` turns a pydantic model class (a section such as
:class:`~mercure.core.config.models.ReceiverConfig`, a rule, a target type, a module runner)
and the plain value the document holds for that object (a dict, perhaps partial: an absent
key means the default) into a tree of :class:`Control`; the template macro
``_form.html:controls`` renders it. :func:`parse_form` reads a submitted form back into the
plain value to give :meth:`mercure.core.config.editing.Document.set`.

Control names are key paths relative to the object, as in ``mercure.yaml``: ``port``,
``tls.ca_certificate``, ``listeners[0].allowed_calling_aets``. Helper inputs that are no
setting carry a ``:`` suffix, which no key has: ``tls:enabled`` (an optional section is
written), ``listeners[1]:remove``, ``listeners:count``, ``api_key:clear``. A page adds an
empty item to a list of sections when the request asks ``?add=listeners`` (a link), or the form
posts ``:add=listeners`` (a button that keeps what was typed): pass it as ``add``.

How each type is edited:

- ``bool``: a checkbox, with a hidden companion so that an unchecked box is seen;
- ``Literal``: a select (a single-value literal, a target's ``type``, is a fixed hidden value);
- ``int`` / ``float``: a number input with the model's bounds; a duration (``Seconds``) is text
  accepting ``90s`` or ``15m``, written as typed;
- ``str``, paths, AE titles, UIDs: text, with the model's pattern;
- ``time``: a time input;
- a secret (``SecretStr``, or a key :func:`~mercure.core.config.editing.is_secret_path` names):
  write-only. The page says "set", "not set" or the ``${ENV}`` it comes from, never the value;
  left empty it is kept (:data:`~mercure.core.config.editing.KEEP`), "clear" removes it;
- a list of scalars: a textarea, one item a line; of known choices (transfer syntaxes,
  services): checkboxes; a dict: a textarea of ``key: value`` lines (YAML), or, for free-form
  data (a module's ``settings`` and ``settings_schema``), a JSON object; either is read;
- a module's ``environment``: ``NAME=value`` lines, every value write-only like a secret
  (shown as ``NAME=<secret>``, which keeps the stored value) unless it is a ``${VAR}`` reference;
- a module's ``volumes``: ``source:target`` lines, as ``docker run -v`` writes them;
- a section: a fieldset; an optional section (``tls``): an "enabled" checkbox and a fieldset;
  a list of sections (``listeners``): a fieldset per item with "remove", and "add".

Fields are shown in the model's order, a subclass's own fields first: a target's ``host`` and
``port`` before the ``comment`` every target has.

What the form does not change stays as the document has it: an empty text input means the
default and removes the key; a checkbox or select left at the default for a key the document
does not write is not written; keys the model does not know, and fields the form does not show,
are kept. The engine rejects nothing but text it cannot read as a dict, ``NAME=value`` or
``source:target`` lines (:class:`FormErrors`);
the save validates with the same models as ``check-config``, and :func:`place_issues` puts each
issue next to its control.
"""

from __future__ import annotations

import inspect
import json
import re
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from mercure.core.config.editing import KEEP, MASK, is_env_reference, is_secret_path
from mercure.core.config.models import (
    AppriseChannel,
    EmailChannel,
    ListenerConfig,
    SupervisorConfig,
    VolumeMount,
    WebhookChannel,
)
from mercure.core.config.types import parse_duration
from mercure.core.installed import installed_services
from mercure.core.notifications.templates import FIELDS as TEMPLATE_FIELDS
from mercure.core.uids import ALL_TRANSFER_SYNTAXES, uid_name

EXCLUDED: dict[str, str] = {
    "rules": "Edited on the Rules page (/rules), one rule at a time, with live validation "
    "and the rule tester.",
    "targets": "Edited on the Targets page (/targets), one target at a time, with Test.",
    "modules": "Edited on the Modules page (/modules), one module at a time.",
    "notifications": "Edited on the Notifications page (/notifications), one channel at a "
    "time, with Test.",
    "sources": "Edited on the Sources page (/sources), one source at a time, with Test.",
}
"""Configuration fields that have no control on the settings pages, and why.

Keys are key paths from the top of ``mercure.yaml``, with ``*`` for the name of a rule, target
or module and without list indices (``targets.*.password``). The field-coverage test
(``tests/webgui/test_webgui_config_coverage.py``) fails for a field that has neither a control
nor an entry here; docs/webgui.md lists them."""

Path_ = tuple[str | int, ...]
_TRUE = frozenset({"on", "true", "1", "yes"})
_NULL = frozenset({"null", "none", "~"})
_INDEX = re.compile(r"\[\d+\]")
MAX_TEXT = 64 * 1024
"""The most text a dict's textarea may hold (a JSON Schema is a few KiB)."""


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()
"""A parsed value meaning "not written": the key is removed, and the default applies."""

Kind = Literal[
    "checkbox",
    "select",
    "fixed",
    "number",
    "duration",
    "text",
    "time",
    "secret",
    "secrets",
    "lines",
    "choices",
    "mapping",
    "environment",
    "mounts",
    "template",
    "group",
    "optional",
    "items",
]


@dataclass
class Control:
    """One form control (or a fieldset of them), ready for the template.

    ``value`` is the text shown (never a secret's value); ``default`` the default as text,
    shown as placeholder or hint; ``children`` the controls of a section; ``items`` the
    sections of a list of sections (each a ``group``).
    """

    kind: Kind
    name: str
    label: str
    help: str = ""
    value: str = ""
    default: str = ""
    checked: bool = False
    required: bool = False
    nullable: bool = False
    options: list[tuple[str, str]] = field(default_factory=list)
    selected: list[str] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)
    secret_state: str = ""
    children: list[Control] = field(default_factory=list)
    items: list[Control] = field(default_factory=list)
    removable: bool = False
    errors: list[str] = field(default_factory=list)
    note: str = ""
    syntax: str = ""
    """For a ``mapping``: ``json`` (free-form data, shown as JSON) or ``yaml`` (``key: value``)."""

    @property
    def id(self) -> str:
        """The element id (names are unique in a form)."""
        return "f-" + self.name

    def walk(self) -> Iterator[Control]:
        """This control and every control inside it."""
        yield self
        for child in (*self.children, *self.items):
            yield from child.walk()


class FormErrors(Exception):
    """Submitted text the engine cannot read at all (a dict field); by control name.

    ``value`` is the rest of the form read as usual, with the unreadable text in place of the
    dict, for showing the form again to be corrected."""

    def __init__(self, errors: dict[str, str], value: dict[str, Any] | None = None) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors
        self.value = value or {}


Choices = Callable[[], list[tuple[str, str]]]


def _transfer_syntaxes() -> list[tuple[str, str]]:
    return [(uid, uid_name(uid) or uid) for uid in ALL_TRANSFER_SYNTAXES]


def _services() -> list[tuple[str, str]]:
    return [(name, name) for name in installed_services()]


CHOICES: dict[tuple[type[BaseModel], str], Choices] = {
    (ListenerConfig, "transfer_syntaxes"): _transfer_syntaxes,
    (SupervisorConfig, "services"): _services,
}
"""List fields whose items come from a known set: offered as checkboxes with names."""

TEMPLATES: frozenset[tuple[type[BaseModel], str]] = frozenset(
    {
        (WebhookChannel, "body"),
        (EmailChannel, "subject"),
        (EmailChannel, "body"),
        (AppriseChannel, "title"),
        (AppriseChannel, "body"),
    }
)
"""Text fields that are Jinja2 templates: a textarea kept as typed, the fields beside it."""


# --- reading the models ---------------------------------------------------------------------
@dataclass(frozen=True)
class _Shape:
    kind: Kind
    base: Any
    nullable: bool
    metadata: tuple[Any, ...]
    item: Any = None
    """For lists: the unwrapped item type; for a list of sections, its model class."""


def _unwrap(annotation: Any) -> tuple[Any, bool, list[Any]]:
    """The type under ``Annotated`` and ``X | None``: (type, nullable, metadata)."""
    nullable = False
    metadata: list[Any] = []
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            base, *extra = get_args(annotation)
            for item in extra:
                if isinstance(item, FieldInfo):
                    metadata.extend(item.metadata)
                else:
                    metadata.append(item)
            annotation = base
            continue
        if origin in (Union, types.UnionType):
            args = get_args(annotation)
            rest = [a for a in args if a is not type(None)]
            nullable = nullable or len(rest) < len(args)
            if len(rest) == 1:
                annotation = rest[0]
                continue
            return Union[tuple(rest)], nullable, metadata  # noqa: UP007 - built from a list
        return annotation, nullable, metadata


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _is_duration(metadata: Sequence[Any]) -> bool:
    return any(getattr(m, "func", None) is parse_duration for m in metadata)


def shape(model: type[BaseModel], name: str, path: Path_ = ()) -> _Shape:
    """How the field ``name`` of ``model`` is edited (``path``: the field's document path)."""
    info = model.model_fields[name]
    base, nullable, metadata = _unwrap(info.annotation)
    metadata = [*info.metadata, *metadata]
    origin = get_origin(base)
    if _is_model(base):
        return _Shape("optional" if nullable else "group", base, nullable, tuple(metadata))
    if origin in (Union, types.UnionType) and {get_origin(a) for a in get_args(base)} == {
        dict,
        list,
    }:
        # A rule's processing_settings: one JSON object, or mercure's list of them.
        return _Shape("mapping", base, nullable, tuple(metadata), Any)
    if origin is list:
        item, _, _ = _unwrap(get_args(base)[0])
        if item is VolumeMount:
            kind: Kind = "mounts"
        elif _is_model(item):
            kind = "items"
        elif item is SecretStr:
            kind = "secrets"
        elif (model, name) in CHOICES:
            kind = "choices"
        else:
            kind = "lines"
        return _Shape(kind, base, nullable, tuple(metadata), item)
    if origin is dict:
        kind = "environment" if name == "environment" and get_args(base)[1] is str else "mapping"
        return _Shape(kind, base, nullable, tuple(metadata), get_args(base)[1])
    if origin is Literal:
        kind = "fixed" if len(get_args(base)) == 1 else "select"
        return _Shape(kind, base, nullable, tuple(metadata))
    if base is SecretStr or (path and is_secret_path(path)):
        return _Shape("secret", base, nullable, tuple(metadata))
    if base is bool:
        return _Shape("checkbox", base, nullable, tuple(metadata))
    if _is_duration(metadata):
        return _Shape("duration", base, nullable, tuple(metadata))
    if (model, name) in TEMPLATES:
        return _Shape("template", base, nullable, tuple(metadata))
    if base in (int, float):
        return _Shape("number", base, nullable, tuple(metadata))
    if base is time:
        return _Shape("time", base, nullable, tuple(metadata))
    return _Shape("text", base, nullable, tuple(metadata))


def leaf_paths(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """The control names a form for ``model`` must have: every field, sections expanded,
    a list of sections as its first item (``listeners[0].port``)."""
    for name in model.model_fields:
        found = shape(model, name)
        if found.kind in ("group", "optional"):
            yield from leaf_paths(found.base, f"{prefix}{name}.")
        elif found.kind == "items":
            yield from leaf_paths(found.item, f"{prefix}{name}[0].")
        else:
            yield prefix + name


def field_order(model: type[BaseModel]) -> list[str]:
    """The fields of ``model`` as a form shows them: a subclass's own fields first (a target's
    ``host``, a module's ``image``), then the ones it inherits (``comment``, ``timeout``)."""
    own = [name for name in inspect.get_annotations(model) if name in model.model_fields]
    return own + [name for name in model.model_fields if name not in own]


@cache
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    info = model.model_fields[name]
    annotation: Any = info.annotation
    if info.metadata:
        annotation = Annotated[(annotation, *info.metadata)]
    return TypeAdapter(annotation)


def _default(model: type[BaseModel], name: str) -> Any:
    info = model.model_fields[name]
    if info.is_required():
        return ABSENT
    return info.get_default(call_default_factory=True)


def _is_default(model: type[BaseModel], name: str, value: Any) -> bool:
    """Whether ``value`` means what the default means (then a key not written stays so)."""
    default = _default(model, name)
    if default is ABSENT:
        return False
    try:
        return bool(_adapter(model, name).validate_python(value) == default)
    except ValidationError:
        return False


def _doc_key(model: type[BaseModel], name: str, current: Mapping[str, Any]) -> str:
    """The key the document uses for the field: its name, or an alias it accepts (``target``)."""
    if name in current:
        return name
    alias = model.model_fields[name].validation_alias
    choices = getattr(alias, "choices", None) or ([alias] if isinstance(alias, str) else [])
    for choice in choices:
        if isinstance(choice, str) and choice in current:
            return choice
    return name


# --- showing values -------------------------------------------------------------------------
_UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60))


def duration_text(seconds: float) -> str:
    """Seconds as the shortest exact duration: ``259200`` as ``3d``, ``90`` as ``90s``."""
    for unit, size in _UNITS:
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _scalar_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, time):
        return value.strftime("%H:%M") if not value.second else value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _default_text(found: _Shape, default: Any) -> str:
    if default is ABSENT or default is None:
        return ""
    if found.kind == "duration" and isinstance(default, int | float):
        return duration_text(float(default))
    if isinstance(default, list):
        return ", ".join(_scalar_text(v) for v in default)
    if isinstance(default, dict):
        return "" if not default else json.dumps(default)
    return _scalar_text(default)


def _lines_text(value: Any) -> str:
    if value is None or value is ABSENT:
        return ""
    if isinstance(value, list):
        return "\n".join(_scalar_text(v) for v in value)
    return str(value)


def _mapping_text(value: Any, syntax: str) -> str:
    if value is None or value is ABSENT or value == {}:
        return ""
    if isinstance(value, str):
        return value  # text that did not parse, shown again to be corrected
    if syntax == "json":
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=False, allow_unicode=True)


def _environment_text(value: Any) -> str:
    """``NAME=value`` lines with every value that is no ``${VAR}`` reference masked: what the
    file holds, or what was typed (a form shown again), never the value itself."""
    if isinstance(value, Mapping):
        pairs = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, str):  # text that did not parse, shown again to be corrected
        pairs = []
        for line in value.splitlines():
            key, sep, item = line.partition("=")
            pairs.append((key, item) if sep else (line, ABSENT))
    else:
        return ""
    return "\n".join(
        key if item is ABSENT else f"{key}={item if is_env_reference(item) else MASK}"
        for key, item in pairs
    )


def _mounts_text(value: Any) -> str:
    if isinstance(value, str):
        return value  # text that did not parse, shown again to be corrected
    if not isinstance(value, list):
        return ""
    return "\n".join(
        f"{v.get('source', '')}:{v.get('target', '')}" if isinstance(v, Mapping) else str(v)
        for v in value
    )


def _time_text(value: Any) -> str:
    if value is None or value is ABSENT:
        return ""
    try:
        return _scalar_text(TypeAdapter(time).validate_python(value))
    except ValidationError:
        return str(value)


def _bounds(found: _Shape) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for m in found.metadata:
        if isinstance(m, annotated_types.Ge):
            attrs["min"] = _scalar_text(m.ge)
        elif isinstance(m, annotated_types.Gt):
            gt: Any = m.gt
            attrs["min"] = _scalar_text(gt + 1 if found.base is int else gt)
        elif isinstance(m, annotated_types.Le):
            attrs["max"] = _scalar_text(m.le)
        elif isinstance(m, annotated_types.Lt):
            lt: Any = m.lt
            attrs["max"] = _scalar_text(lt - 1 if found.base is int else lt)
    attrs["step"] = "1" if found.base is int else "any"
    return attrs


def _pattern(found: _Shape) -> str:
    for m in found.metadata:
        pattern = getattr(m, "pattern", None)
        if isinstance(pattern, str):
            return pattern.removeprefix("^").removesuffix("$")
    return ""


def _secret_state(stored: Any) -> str:
    if stored is None or stored is ABSENT or stored == "" or stored == []:
        return "not set"
    if is_env_reference(stored):
        return f"set from the environment variable {stored}"
    if isinstance(stored, list):
        refs = [v for v in stored if is_env_reference(v)]
        text = f"{len(stored)} set"
        return text + (f" ({', '.join(refs)} from the environment)" if refs else "")
    return "set"


# --- building the form ----------------------------------------------------------------------
def build_form(
    model: type[BaseModel],
    value: Mapping[str, Any] | None,
    *,
    stored: Mapping[str, Any] | None = None,
    base_path: Path_ = (),
    fields: Iterable[str] | None = None,
    add: Iterable[str] = (),
    notes: Mapping[str, str] | None = None,
    prefix: str = "",
) -> list[Control]:
    """The controls of a form for ``model`` showing ``value`` (the document's plain value).

    ``stored``: what the file holds, when ``value`` is a submitted value shown again (secrets
    say whether the file has one); ``base_path``: the object's path in the document (to find
    secrets by key); ``fields``: only these fields; ``add``: names of lists of sections that get
    an empty extra item; ``notes``: a note by field path without indices
    (``listeners.port``), e.g. "needs a restart".
    """
    value = value if isinstance(value, Mapping) else {}
    stored = value if stored is None else (stored if isinstance(stored, Mapping) else {})
    wanted = field_order(model) if fields is None else list(fields)
    adding = set(add)
    controls = []
    for name in wanted:
        key = _doc_key(model, name, value)
        controls.append(
            _control(
                model,
                name,
                value.get(key, ABSENT),
                stored.get(_doc_key(model, name, stored), ABSENT),
                base_path=(*base_path, name),
                name=prefix + name,
                adding=adding,
                notes=notes or {},
            )
        )
    return controls


def _control(
    model: type[BaseModel],
    field_name: str,
    raw: Any,
    stored: Any,
    *,
    base_path: Path_,
    name: str,
    adding: set[str],
    notes: Mapping[str, str],
) -> Control:
    info = model.model_fields[field_name]
    found = shape(model, field_name, base_path)
    default = _default(model, field_name)
    control = Control(
        kind=found.kind,
        name=name,
        label=field_name,
        help=info.description or "",
        default=_default_text(found, default),
        required=default is ABSENT,
        nullable=found.nullable,
        note=notes.get(_INDEX.sub("", name), ""),
    )
    if raw is KEEP:
        raw = stored
    kind = found.kind
    if kind == "checkbox":
        control.checked = bool(raw) if isinstance(raw, bool) else bool(default)
    elif kind == "select":
        control.options = [(str(v), str(v)) for v in get_args(found.base)]
        chosen = raw if raw is not ABSENT and raw is not None else default
        control.selected = [str(chosen)]
        if str(chosen) not in dict(control.options):
            control.options.append((str(chosen), str(chosen)))
    elif kind == "fixed":
        control.value = str(get_args(found.base)[0])
    elif kind in ("number", "duration", "text"):
        if raw is not ABSENT:
            control.value = "" if raw is None and default is None else _scalar_text(raw)
        if kind == "number":
            control.attrs = _bounds(found)
        pattern = _pattern(found)
        if pattern and kind == "text":
            control.attrs["pattern"] = pattern
    elif kind == "time":
        control.value = _time_text(raw)
    elif kind in ("secret", "secrets"):
        control.secret_state = _secret_state(stored)
    elif kind == "lines":
        control.value = _lines_text(raw)
    elif kind == "template":
        control.value = raw if isinstance(raw, str) else str(default)
        control.options = list(TEMPLATE_FIELDS.items())
    elif kind == "choices":
        control.options = CHOICES[(model, field_name)]()
        control.selected = [_scalar_text(v) for v in raw] if isinstance(raw, list) else []
        known = dict(control.options)
        control.options += [(v, v) for v in control.selected if v not in known]
    elif kind == "mapping":
        shown = raw
        if isinstance(raw, Mapping):
            shown = {
                k: (MASK if is_secret_path((*base_path, k)) and not is_env_reference(v) else v)
                for k, v in raw.items()
            }
        control.syntax = "json" if found.item is Any else "yaml"
        control.value = _mapping_text(shown, control.syntax)
    elif kind == "environment":
        control.value = _environment_text(raw)
    elif kind == "mounts":
        control.value = _mounts_text(raw)
    elif kind in ("group", "optional"):
        control.checked = raw is not ABSENT and raw is not None
        sub = raw if isinstance(raw, Mapping) else {}
        sub_stored = stored if isinstance(stored, Mapping) else {}
        control.children = build_form(
            found.base,
            sub,
            stored=sub_stored,
            base_path=base_path,
            add=adding,
            notes=notes,
            prefix=name + ".",
        )
    elif kind == "items":
        if isinstance(raw, list):
            items = list(raw)
        else:
            items = [{} for _ in (default if isinstance(default, list) else [])]
        stored_items = stored if isinstance(stored, list) else []
        if name in adding:
            items.append({})
        for i, item in enumerate(items):
            item_name = f"{name}[{i}]"
            group = Control(
                kind="group",
                name=item_name,
                label=item_name,
                removable=True,
                children=build_form(
                    found.item,
                    item if isinstance(item, Mapping) else {},
                    stored=stored_items[i] if i < len(stored_items) else {},
                    base_path=(*base_path, i),
                    add=adding,
                    notes=notes,
                    prefix=item_name + ".",
                ),
            )
            control.items.append(group)
        control.value = str(len(items))
    return control


# --- reading a submitted form ---------------------------------------------------------------
class FormData:
    """A submitted form as lists of values by name (starlette's FormData, or a dict)."""

    def __init__(self, form: Any) -> None:
        self._values: dict[str, list[str]] = {}
        items = form.multi_items() if hasattr(form, "multi_items") else _pairs(form)
        for key, value in items:
            if isinstance(value, str):
                self._values.setdefault(key, []).append(value)

    def has(self, name: str) -> bool:
        """Whether the form sent ``name`` at all."""
        return name in self._values

    def all(self, name: str) -> list[str]:
        """Every value sent for ``name``."""
        return self._values.get(name, [])

    def last(self, name: str) -> str | None:
        """The last value sent for ``name`` (a checkbox after its hidden companion)."""
        values = self._values.get(name)
        return values[-1] if values else None

    def flag(self, name: str) -> bool:
        """Whether the checkbox ``name`` is checked."""
        return (self.last(name) or "").lower() in _TRUE


def _pairs(form: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    for key, value in form.items():
        if isinstance(value, list | tuple):
            for item in value:
                yield key, item
        else:
            yield key, value


def parse_form(
    model: type[BaseModel],
    form: Any,
    current: Mapping[str, Any] | None,
    *,
    base_path: Path_ = (),
    fields: Iterable[str] | None = None,
    prefix: str = "",
) -> dict[str, Any]:
    """The object's new plain value from a submitted form, ``current`` being the document's.

    Raises :class:`FormErrors` for text that cannot be read as a dict (by control name).
    """
    data = form if isinstance(form, FormData) else FormData(form)
    errors: dict[str, str] = {}
    result = _parse_object(model, data, current, base_path, fields, prefix, errors)
    if errors:
        raise FormErrors(errors, result)
    return result


def _parse_object(
    model: type[BaseModel],
    data: FormData,
    current: Any,
    base_path: Path_,
    fields: Iterable[str] | None,
    prefix: str,
    errors: dict[str, str],
) -> dict[str, Any]:
    current = current if isinstance(current, Mapping) else {}
    result: dict[str, Any] = dict(current)  # unknown keys and fields not on the form stay
    for name in field_order(model) if fields is None else fields:
        key = _doc_key(model, name, current)
        old = current.get(key, ABSENT)
        new = _parse_field(model, name, data, old, (*base_path, name), prefix + name, errors)
        if new is ABSENT:
            result.pop(key, None)
        elif new is KEEP:
            if old is not ABSENT:
                result[key] = new
        elif key in current or not _is_default(model, name, new):
            result[key] = new
    return result


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text  # not a number: the validation says so, at this field
    return number


def _parse_field(
    model: type[BaseModel],
    field_name: str,
    data: FormData,
    old: Any,
    path: Path_,
    name: str,
    errors: dict[str, str],
) -> Any:
    found = shape(model, field_name, path)
    kind = found.kind
    if kind in ("optional", "items"):
        if not data.has(name + (":enabled" if kind == "optional" else ":count")):
            return old  # not on the form
    elif kind in ("secret", "secrets"):
        if not data.has(name) and not data.has(name + ":clear"):
            # Not on the form: kept, and never handed back as its value.
            return KEEP if old not in (ABSENT, None) else old
    elif kind not in ("group",) and not data.has(name):
        return old
    text = (data.last(name) or "").strip()
    if kind == "checkbox":
        return data.flag(name)
    if kind in ("select", "time"):
        return text or ABSENT
    if kind == "fixed":
        return get_args(found.base)[0]
    if kind in ("number", "duration", "text"):
        if not text:
            return ABSENT
        if text.lower() in _NULL and found.nullable:
            return None
        if kind == "text":
            return text
        return _number(text)
    if kind == "template":
        typed = (data.last(name) or "").replace("\r\n", "\n")
        return typed if typed.strip() else ABSENT  # as typed: a template's spaces count
    if kind == "secret":
        if data.flag(name + ":clear"):
            return ABSENT
        if not text or text == MASK:
            return KEEP if old not in (ABSENT, None) else ABSENT
        return data.last(name)  # as typed: a password may begin or end with a space
    if kind == "secrets":
        if data.flag(name + ":clear"):
            return ABSENT
        lines = [line.strip() for line in (data.last(name) or "").splitlines() if line.strip()]
        if not lines:
            return KEEP if old not in (ABSENT, None) else ABSENT
        return lines
    if kind in ("lines", "choices"):
        if kind == "lines":
            values = [v.strip() for v in (data.last(name) or "").splitlines() if v.strip()]
        else:
            values = [v for v in data.all(name) if v]
        if not values and found.nullable:
            return ABSENT
        if isinstance(old, str) and values == [old]:
            return old  # mercure's single name where a list is meant, kept as written
        return values
    if kind == "mapping":
        return _parse_mapping(data.last(name) or "", found, path, old, name, errors)
    if kind == "environment":
        return _parse_environment(data.last(name) or "", old, name, errors)
    if kind == "mounts":
        return _parse_mounts(data.last(name) or "", old, name, errors)
    if kind == "group":
        sub = _parse_object(found.base, data, old, path, None, name + ".", errors)
        return sub if sub or old is not ABSENT else ABSENT
    if kind == "optional":
        if not data.flag(name + ":enabled"):
            return ABSENT
        return _parse_object(found.base, data, old, path, None, name + ".", errors)
    # items
    try:
        count = int(data.last(name + ":count") or "0")
    except ValueError:
        count = 0
    olds = old if isinstance(old, list) else []
    items = []
    for i in range(min(count, 1000)):
        item_name = f"{name}[{i}]"
        if data.flag(item_name + ":remove"):
            continue
        items.append(
            _parse_object(
                found.item,
                data,
                olds[i] if i < len(olds) else {},
                (*path, i),
                None,
                item_name + ".",
                errors,
            )
        )
    return items


def _read_mapping_text(text: str) -> Any:
    """A dict's text as data: JSON when it looks like JSON (with JSON's error, which says
    where), else YAML. ValueError saying what is wrong and where."""
    if len(text) > MAX_TEXT:
        raise ValueError(f"at most {MAX_TEXT // 1024} KiB of text")
    json_error = None
    if text.lstrip().startswith(("{", "[")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            json_error = f"not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        if json_error:
            raise ValueError(json_error) from None
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not readable"
        raise ValueError(f"{problem}{where}; write one `key: value` a line, or JSON") from None


def _parse_mapping(
    text: str, found: _Shape, path: Path_, old: Any, name: str, errors: dict[str, str]
) -> Any:
    if not text.strip():
        return {} if old is not ABSENT else ABSENT
    try:
        value = _read_mapping_text(text)
    except ValueError as exc:
        errors[name] = f"{name}: {exc}"
        return text
    if get_origin(found.base) in (Union, types.UnionType) and isinstance(value, list):
        if all(isinstance(item, dict) for item in value):
            return value
        errors[name] = f"{name}: a list of JSON objects, one per module"
        return text
    if not isinstance(value, dict):
        errors[name] = f"{name}: write one `key: value` a line, or a JSON object"
        return text
    old_map = old if isinstance(old, Mapping) else {}
    result: dict[str, Any] = {}
    for key, item in value.items():
        key = str(key)
        if is_secret_path((*path, key)) and item == MASK:
            if key not in old_map:
                errors[name] = (
                    f"{name}: {key} says {MASK}, which stands for a stored value, but none is "
                    f"stored under {key} (renamed?): type the value"
                )
            result[key] = KEEP
        elif found.item is str and item is not None and not isinstance(item, dict | list):
            result[key] = item if isinstance(item, str) else _scalar_text(item)
        else:
            result[key] = item
    return result


def _parse_environment(text: str, old: Any, name: str, errors: dict[str, str]) -> Any:
    """``NAME=value`` lines; ``NAME=<secret>`` keeps the stored value (:data:`KEEP`)."""
    old_map = old if isinstance(old, Mapping) else {}
    variables: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            errors[name] = f"{name}: line {number}: write NAME=value"
            return text
        if value == MASK:
            if key not in old_map:
                errors[name] = (
                    f"{name}: line {number}: {key} says {MASK}, which stands for a stored "
                    f"value, but none is stored under {key} (renamed?): type the value"
                )
                return text
            variables[key] = KEEP
        else:
            variables[key] = value  # as typed: a value may begin or end with a space
    return variables if variables or old is not ABSENT else ABSENT


def _parse_mounts(text: str, old: Any, name: str, errors: dict[str, str]) -> Any:
    """``source:target`` lines (the last ``:`` divides them)."""
    mounts = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        source, sep, target = line.strip().rpartition(":")
        if not sep or not source or not target:
            errors[name] = f"{name}: line {number}: write source:target"
            return text
        mounts.append({"source": source, "target": target})
    return mounts if mounts or old is not ABSENT else ABSENT


def typed_secret(controls: Iterable[Control], data: FormData) -> bool:
    """Whether the submitted form typed a secret (a password, an environment value) that a
    form shown again does not show: the page asks for it once more."""
    for top in controls:
        for control in top.walk():
            text = data.last(control.name) or ""
            if control.kind in ("secret", "secrets") and text.strip() and text != MASK:
                return True
            if control.kind == "environment" and any(
                sep and value != MASK and not is_env_reference(value)
                for _, sep, value in (line.partition("=") for line in text.splitlines())
            ):
                return True
    return False


# --- issues next to their controls ----------------------------------------------------------
def place_issues(controls: Sequence[Control], issues: Iterable[Any], prefix: str = "") -> list[str]:
    """Attach each issue (a ``(key path, message)`` pair, or an object with ``path`` and
    ``message``) to the control it is about; the issues of no control, as text.

    ``prefix``: the object's key path in the document (``receiver``), removed from the issues'
    paths; an issue about a list item's field goes to the list's control when the item has none.
    """
    by_name = {c.name: c for top in controls for c in top.walk()}
    unplaced = []
    for issue in issues:
        if isinstance(issue, tuple):
            path, message = str(issue[0]), str(issue[1])
        else:
            path, message = str(issue.path), str(issue.message)
        relative = path
        if prefix:
            if path == prefix:
                relative = ""
            elif path.startswith(prefix + ".") or path.startswith(prefix + "["):
                relative = path[len(prefix) :].lstrip(".")
            else:
                unplaced.append(f"{path}: {message}" if path else message)
                continue
        target = _owner(by_name, relative)
        if target is None:
            unplaced.append(f"{path}: {message}" if path else message)
        else:
            suffix = relative[len(target.name) :].lstrip(".")
            target.errors.append(f"{suffix}: {message}" if suffix else message)
    return unplaced


def _owner(by_name: Mapping[str, Control], relative: str) -> Control | None:
    candidate = relative
    while candidate:
        if candidate in by_name:
            return by_name[candidate]
        cut = max(candidate.rfind("."), candidate.rfind("["))
        if cut <= 0:
            return None
        candidate = candidate[:cut]
    return None


def form_error_issues(errors: FormErrors) -> list[tuple[str, str]]:
    """The engine's own errors as ``(control name, message)`` issues for :func:`place_issues`."""
    return [(name, message.split(": ", 1)[-1]) for name, message in errors.errors.items()]


def requested_additions(values: Iterable[str]) -> list[str]:
    """The names of lists of sections to add an item to (``?add=`` / ``:add``), cleaned."""
    return [v for v in values if re.fullmatch(r"[A-Za-z0-9_.\[\]]{1,200}", v)]


__all__ = [
    "ABSENT",
    "CHOICES",
    "EXCLUDED",
    "Control",
    "FormData",
    "FormErrors",
    "build_form",
    "duration_text",
    "field_order",
    "form_error_issues",
    "leaf_paths",
    "parse_form",
    "place_issues",
    "requested_additions",
    "shape",
    "typed_secret",
]
