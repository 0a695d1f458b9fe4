"""Target types are plug-ins, found through the Python entry point group ``mercure.targets``.

Each entry point is named after the type (what ``type:`` says in ``mercure.yaml``) and points at
the type's configuration model: a pydantic model deriving from
:class:`~mercure.core.config.models.TargetBase`, with ``type: Literal["<name>"]`` and the
``plugin`` class variable naming its plug-in class (``"package.module:Class"``). The models are
loaded when a configuration is first validated; a plug-in class, and the library it needs, only
when a task is sent to (or a test made of) a target of its type.

The built-in types are registered the same way, in mercure-router's ``pyproject.toml``. An
installation whose package metadata predates that registration (an editable install not
reinstalled since) would know no type at all; for it, the built-in types missing from the
entry points come from :data:`BUILTIN`, which a test keeps identical to ``pyproject.toml``.
A built-in type's name cannot be taken by another package: such an entry point is ignored
(and logged), so that installing a package never changes what ``type: dicom`` means.
"""

from __future__ import annotations

import functools
import importlib
import logging
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from mercure.core.config.models import TargetBase

log = logging.getLogger(__name__)

GROUP = "mercure.targets"
BUILTIN: Mapping[str, str] = {
    "dicom": "mercure.core.config.models:DicomTarget",
    "dicomweb": "mercure.core.config.models:DicomWebTarget",
    "dummy": "mercure.core.config.models:DummyTarget",
    "folder": "mercure.core.config.models:FolderTarget",
    "rsync": "mercure.core.config.models:RsyncTarget",
    "s3": "mercure.core.config.models:S3Target",
    "sftp": "mercure.core.config.models:SftpTarget",
    "xnat": "mercure.core.config.models:XnatTarget",
}
"""The built-in types (as in ``pyproject.toml``'s ``[project.entry-points."mercure.targets"]``)."""


@dataclass(frozen=True)
class TargetType:
    """One installed target type."""

    name: str
    model: type[TargetBase]
    source: str
    """Who registered it: a distribution's name, or ``built-in`` for the fallback."""


@dataclass(frozen=True)
class Registry:
    """What the entry points gave: the usable types, and why the others are not usable."""

    types: dict[str, TargetType]
    broken: dict[str, str]


@functools.cache
def registry() -> Registry:
    """The installed target types (read once per process; :func:`reload` reads again)."""
    found: dict[str, list[EntryPoint]] = {}
    for entry in entry_points(group=GROUP):
        found.setdefault(entry.name, []).append(entry)
    types: dict[str, TargetType] = {}
    broken: dict[str, str] = {}
    for name in sorted(set(found) | set(BUILTIN)):
        entries = found.get(name, [])
        if name in BUILTIN:
            foreign = [e for e in entries if e.value.replace(" ", "") != BUILTIN[name]]
            for entry in foreign:
                log.warning(
                    "ignoring entry point %s = %s of %s: %r is a built-in target type",
                    name,
                    entry.value,
                    _distribution(entry),
                    name,
                )
            own = [e for e in entries if e not in foreign]
            source = _distribution(own[0]) if own else "built-in"
            values = [BUILTIN[name]]
        else:
            values = sorted({e.value.replace(" ", "") for e in entries})
            source = _distribution(entries[0])
            if len(values) > 1:
                owners = ", ".join(f"{_distribution(e)} ({e.value})" for e in entries)
                broken[name] = f"registered by several packages: {owners}"
                continue
        try:
            model = _load_model(name, values[0])
        except (ImportError, AttributeError, TypeError, ValueError) as exc:
            broken[name] = f"{values[0]} of {source} cannot be loaded: {exc}"
            log.error("target type %r is unusable: %s", name, broken[name])
            continue
        types[name] = TargetType(name, model, source)
    return Registry(types, broken)


def installed_types() -> dict[str, TargetType]:
    """The usable target types by name."""
    return registry().types


def unknown_type_message(kind: object) -> str:
    """What to tell someone whose target has type ``kind``, which is not usable here."""
    installed = ", ".join(installed_types())
    reason = registry().broken.get(kind) if isinstance(kind, str) else None
    if reason:
        return f"target type {kind!r} is installed but unusable: {reason}"
    return f"unknown target type {kind!r}; the installed types are: {installed}"


def reload() -> Registry:
    """Read the entry points again (after installing a plug-in in a running process, and in
    tests) and rebuild the models that validate targets."""
    from mercure.core.config.models import MercureConfig

    registry.cache_clear()
    fresh = registry()
    MercureConfig.model_rebuild(force=True)
    return fresh


def plugin_class(model: type[TargetBase]) -> type:
    """The plug-in class ``model.plugin`` names, imported now (a type's library with it)."""
    module_name, _, attribute = model.plugin.partition(":")
    module = importlib.import_module(module_name)
    found = getattr(module, attribute)
    if not isinstance(found, type):
        raise TypeError(f"{model.plugin} is not a class")
    return found


def _load_model(name: str, value: str) -> type[TargetBase]:
    """The model an entry point value names, checked against the plug-in contract."""
    module_name, _, attribute = value.partition(":")
    if not attribute:
        raise ValueError("the entry point must name a class: 'package.module:Model'")
    model = getattr(importlib.import_module(module_name), attribute)
    if not (isinstance(model, type) and issubclass(model, TargetBase)):
        raise TypeError(f"{value} is not a subclass of mercure.core.config.models.TargetBase")
    field = model.model_fields.get("type")
    tags = typing.get_args(field.annotation) if field is not None else ()
    if (
        field is None
        or typing.get_origin(field.annotation) is not typing.Literal
        or tags != (name,)
    ):
        raise TypeError(f"{value} must declare type: Literal[{name!r}]")
    if ":" not in model.plugin:
        raise TypeError(f"{value}.plugin must name its plug-in class as 'package.module:Class'")
    return model


def _distribution(entry: EntryPoint) -> str:
    dist = getattr(entry, "dist", None)
    return str(dist.name) if dist is not None else "an unnamed package"
