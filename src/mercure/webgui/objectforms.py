"""The form of one target or one module: controls made from its model, and the form read back.

:func:`controls` turns a model class (``DicomTarget``, ``DockerModule`` ...) and the plain value
``mercure.yaml`` holds for the object (``${ENV}`` references unexpanded) into a list of
:class:`Control`; the macro in ``_objectform.html`` renders them. :func:`parse` reads a
submitted form back into the plain value to give ``Document.set``.

Control names are key paths relative to the object, as in ``mercure.yaml`` (``port``,
``tls.ca_certificate``); helper inputs that are no setting carry a ``:`` suffix, which no key
has (``tls:enabled``, ``password:clear``).

- ``bool``: a checkbox; ``Literal``: a select (the object's ``type`` / ``runner``: fixed);
- numbers: a number input; durations (``Seconds``): text accepting ``90s`` or ``15m``;
- text, paths, URLs, AE titles: a text input;
- a secret (``SecretStr``): write-only. The page shows "set", "not set" or the ``${ENV}``
  reference the file holds (a reference is not a secret), never the value; left empty the
  stored value is kept (``KEEP``), ``<name>:clear`` removes it; a new value may be ``${VAR}``;
- ``environment`` (a module's variables, possibly secrets): ``KEY=value`` lines; a stored value
  that is not a ``${VAR}`` reference is shown as ``KEY=***`` and a line left so keeps it;
- a list of words (``command``): one item a line; ``volumes``: ``source:target`` lines;
- ``settings`` / ``settings_schema``: a JSON textarea;
- an optional section (``tls``): ``tls:enabled`` and a fieldset.

What the form leaves at the default is not written unless the file had the key; a value the
form cannot read at all (JSON that is no object, a number that is none) is a
:class:`FormError` at its control. Everything else is checked by the save, with the same
models as ``check-config``.
"""

from __future__ import annotations

import inspect
import json
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from starlette.datastructures import FormData

from mercure.core.config.editing import KEEP, MASK, is_env_reference
from mercure.core.config.models import VolumeMount

MAX_JSON = 64 * 1024

Kind = Literal[
    "fixed", "checkbox", "select", "number", "duration", "text", "secret", "environment",
    "lines", "volumes", "json", "optional",
]  # fmt: skip


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()
"""A parsed value meaning "not written": the key goes, and the default applies."""


is_reference = is_env_reference


@dataclass
class Control:
    """One control of the form (or the fieldset of an optional section)."""

    kind: Kind
    name: str
    label: str
    help: str = ""
    value: str = ""
    default: str = ""
    checked: bool = False
    required: bool = False
    options: list[str] = field(default_factory=list)
    secret_state: str = ""
    children: list[Control] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    step: str = "1"


class FormError(Exception):
    """Values the form cannot read; ``errors`` by control name."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def _unwrap(annotation: Any) -> tuple[Any, bool, list[Any]]:
    """(the type without ``None`` and ``Annotated``, whether None is allowed, its metadata)."""
    metadata: list[Any] = []
    nullable = False
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            args = get_args(annotation)
            annotation, metadata = args[0], [*metadata, *args[1:]]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            nullable = nullable or len(members) < len(get_args(annotation))
            if len(members) != 1:
                return annotation, nullable, metadata
            annotation = members[0]
        else:
            return annotation, nullable, metadata


def _is_duration(metadata: list[Any]) -> bool:
    return any(
        getattr(getattr(m, "func", None), "__name__", "") == "parse_duration" for m in metadata
    )


def _kind(name: str, info: FieldInfo) -> tuple[Kind, Any]:
    annotation, _nullable, metadata = _unwrap(info.annotation)
    origin = get_origin(annotation)
    if name == "environment":
        return "environment", annotation
    if origin is Literal:
        return ("fixed" if len(get_args(annotation)) == 1 else "select"), annotation
    if annotation is bool:
        return "checkbox", annotation
    if annotation is SecretStr:
        return "secret", annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "optional", annotation
    if origin is list:
        item = get_args(annotation)[0]
        return ("volumes" if item is VolumeMount else "lines"), annotation
    if origin is dict:
        return "json", annotation
    if annotation is float and _is_duration([*metadata, *info.metadata]):
        return "duration", annotation
    if annotation in (int, float):
        return "number", annotation
    return "text", annotation  # str, Path, URLs, AE titles


def _label(name: str) -> str:
    return name.replace("_", " ")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _default(info: FieldInfo) -> Any:
    if info.is_required():
        return ABSENT
    return info.get_default(call_default_factory=True)


def controls(
    model: type[BaseModel], stored: dict[str, Any] | None, prefix: str = ""
) -> list[Control]:
    """The controls for an object of ``model`` whose stored plain value is ``stored``."""
    stored = stored or {}
    found = []
    for name, info in _ordered(model):
        kind, annotation = _kind(name, info)
        path = f"{prefix}{name}"
        default = _default(info)
        value = stored.get(name, ABSENT)
        shown = default if value is ABSENT else value
        control = Control(
            kind=kind,
            name=path,
            label=_label(name),
            help=info.description or "",
            required=info.is_required(),
            default="" if default is ABSENT or default is None else _shown_default(default),
        )
        if kind == "fixed":
            control.value = _text(value if value is not ABSENT else get_args(annotation)[0])
        elif kind == "checkbox":
            control.checked = bool(shown) if shown is not ABSENT else False
        elif kind == "select":
            control.options = [str(option) for option in get_args(annotation)]
            control.value = _text(shown if shown is not ABSENT else "")
        elif kind == "secret":
            if value is ABSENT or value in (None, ""):
                control.secret_state = "not set"
            elif is_reference(value):
                control.secret_state = f"from {value}"
            else:
                control.secret_state = "set"
        elif kind == "environment":
            lines = []
            for key, item in (value if isinstance(value, dict) else {}).items():
                lines.append(f"{key}={item if is_reference(item) else MASK}")
            control.value = "\n".join(lines)
        elif kind == "lines":
            control.value = "\n".join(str(v) for v in value) if isinstance(value, list) else ""
        elif kind == "volumes":
            control.value = "\n".join(
                f"{v.get('source', '')}:{v.get('target', '')}"
                for v in (value if isinstance(value, list) else [])
                if isinstance(v, dict)
            )
        elif kind == "json":
            control.value = json.dumps(value, indent=2) if isinstance(value, dict) and value else ""
        elif kind == "optional":
            control.checked = isinstance(value, dict)
            control.children = controls(
                annotation, value if isinstance(value, dict) else {}, f"{path}."
            )
        else:  # number, duration, text
            control.value = _text(value) if value is not ABSENT else ""
            if kind == "number" and annotation is float:
                control.step = "any"
        found.append(control)
    return found


def _ordered(model: type[BaseModel]) -> list[tuple[str, FieldInfo]]:
    """The fields of ``model``, its own first (host, image ...), then the ones every target or
    module has (comment, timeout ...): what makes this type is what one fills in first."""
    own = set(inspect.get_annotations(model))
    fields = list(model.model_fields.items())
    return [f for f in fields if f[0] in own] + [f for f in fields if f[0] not in own]


def _shown_default(value: Any) -> str:
    if isinstance(value, list | dict):
        return "" if not value else json.dumps(value)
    if isinstance(value, Path):
        return str(value)
    return _text(value)


def parse(
    model: type[BaseModel], form: FormData, stored: dict[str, Any] | None, prefix: str = ""
) -> dict[str, Any]:
    """The plain value of the submitted ``form`` for an object of ``model``.

    ``stored`` is what the file holds now (``{}`` for a new object): keys it has are written
    even when the form gives the default, and secrets left empty are :data:`KEEP`. Raises
    :class:`FormError` for values that cannot be read at all.
    """
    stored = stored or {}
    errors: dict[str, str] = {}
    result: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        kind, annotation = _kind(name, info)
        path = f"{prefix}{name}"
        raw = form.get(path)
        text = raw.strip() if isinstance(raw, str) else ""
        had = name in stored
        value: Any = ABSENT
        try:
            value = _parse_one(kind, annotation, path, text, raw, form, stored.get(name), had)
        except FormError as exc:
            errors.update(exc.errors)
            continue
        except ValueError as exc:
            errors[path] = str(exc)
            continue
        if value is ABSENT:
            continue
        default = _default(info)
        if not had and value is not KEEP and default is not ABSENT and _same(value, default):
            continue
        result[name] = value
    if errors:
        raise FormError(errors)
    # The object's type or runner first, as people write it.
    fixed = [name for name in result if _kind(name, model.model_fields[name])[0] == "fixed"]
    return {**{name: result[name] for name in fixed}, **result}


def same_value(a: Any, b: Any) -> bool:
    """Whether two plain values mean the same setting (``104`` and ``104.0``, absent and
    ``None`` and ``{}`` for an unset section)."""
    empty: tuple[Any, ...] = (None, {}, [], "")
    if a in empty and b in empty:
        return True
    return bool(a == b)


def _same(value: Any, default: Any) -> bool:
    if isinstance(default, Path):
        default = str(default)
    if isinstance(default, BaseModel):
        default = default.model_dump(mode="json")
    return bool(value == default)


def _parse_one(
    kind: Kind,
    annotation: Any,
    path: str,
    text: str,
    raw: Any,
    form: FormData,
    stored: Any,
    had: bool,
) -> Any:
    if kind == "fixed":
        return get_args(annotation)[0]
    if kind == "checkbox":
        return raw is not None
    if kind == "select":
        return text if text else ABSENT
    if kind == "secret":
        if form.get(f"{path}:clear") is not None:
            return ABSENT
        if raw:  # as typed: a password may begin or end with a space
            return raw
        return KEEP if had and stored not in (None, "") else ABSENT
    if kind == "environment":
        return _environment(text, stored if isinstance(stored, dict) else {}, path)
    if kind == "lines":
        items = [line.strip() for line in text.splitlines() if line.strip()]
        return items if items else ([] if had else ABSENT)
    if kind == "volumes":
        mounts = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            source, sep, target = line.strip().rpartition(":")
            if not sep or not source or not target:
                raise FormError({path: f"line {number}: write source:target"})
            mounts.append({"source": source, "target": target})
        return mounts if mounts else ([] if had else ABSENT)
    if kind == "json":
        if not text:
            return {} if had else ABSENT
        if len(text) > MAX_JSON:
            raise FormError({path: f"at most {MAX_JSON // 1024} KiB of JSON"})
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FormError(
                {path: f"not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"}
            ) from None
        if not isinstance(document, dict):
            raise FormError({path: "must be a JSON object: { ... }"})
        return document
    if kind == "optional":
        if form.get(f"{path}:enabled") is None:
            return ABSENT
        return parse(annotation, form, stored if isinstance(stored, dict) else {}, f"{path}.")
    if kind == "number":
        if not text:
            return ABSENT
        try:
            return int(text) if annotation is int else float(text)
        except ValueError:
            raise FormError({path: f"{text!r} is not a number"}) from None
    if kind == "duration":
        if not text:
            return ABSENT
        try:
            return float(text)
        except ValueError:
            return text  # "15m": checked by the model, written as typed
    return text if text else ABSENT


def _environment(text: str, stored: dict[str, Any], path: str) -> Any:
    variables: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise FormError({path: f"line {number}: write NAME=value"})
        if value == MASK:
            if key not in stored:
                raise FormError({path: f"line {number}: {key} has no stored value to keep"})
            variables[key] = stored[key]
        else:
            variables[key] = value
    return variables if variables or stored else ABSENT


def errors_by_control(
    issues: list[tuple[str, str]], prefix: str
) -> tuple[dict[str, list[str]], list[str]]:
    """Issues of a save, by control name (relative to ``prefix``, e.g. ``targets.pacs.``), and
    the ones that belong to no control."""
    placed: dict[str, list[str]] = {}
    other = []
    for path, message in issues:
        if path.startswith(prefix):
            placed.setdefault(path[len(prefix) :], []).append(message)
        else:
            other.append(f"{path}: {message}" if path else message)
    return placed, other


def place(found: list[Control], errors: dict[str, list[str]]) -> list[str]:
    """Put ``errors`` on their controls (an error inside a value, ``settings.threshold``, on
    the control of the value, ``settings``); the ones with no control (returned)."""
    by_name: dict[str, Control] = {}

    def index(items: list[Control]) -> None:
        for control in items:
            control.errors = []
            by_name[control.name] = control
            index(control.children)

    index(found)
    left: list[str] = []
    for key, messages in errors.items():
        name = key
        while name and name not in by_name:
            name = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", name) if re.search(r"[.\[]", name) else ""
        if name:
            inner = key[len(name) :].lstrip(".")
            by_name[name].errors.extend(f"{inner}: {m}" if inner else m for m in messages)
        else:
            left.extend(f"{key}: {message}" for message in messages)
    return left


def refill(found: list[Control], form: FormData) -> None:
    """Show what was typed (after a refused save), never a secret."""
    for control in found:
        raw = form.get(control.name)
        if control.kind in ("secret", "fixed"):
            pass
        elif control.kind == "checkbox":
            control.checked = raw is not None
        elif control.kind == "optional":
            control.checked = form.get(f"{control.name}:enabled") is not None
            refill(control.children, form)
        elif control.kind == "environment":
            control.value = _masked_environment(str(raw or ""))
        else:
            control.value = str(raw or "")


def _masked_environment(text: str) -> str:
    lines = []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        lines.append(
            f"{key}={value if is_reference(value) or value == MASK else MASK}" if sep else line
        )
    return "\n".join(lines)
