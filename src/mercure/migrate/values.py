"""How mercure writes values in its configuration, read once for every converter.

mercure allows a single name where a list is meant (and a comma-separated string), writes some
flags as the strings "True"/"False", and keeps a module's volumes, environment and docker
arguments as JSON text inside the JSON file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from mercure.core.errors import PermanentError
from mercure.migrate.report import ImportReport


class MercureImportError(PermanentError):
    """The input is not a mercure configuration the importer can read."""


def env_name(*parts: str) -> str:
    """An environment variable name from parts: ``MERCURE_TARGET_PACS_PASSWORD``."""
    words = "_".join(re.sub(r"[^A-Za-z0-9]+", "_", part).strip("_") for part in parts if part)
    return "MERCURE_" + words.upper()


def as_mercure_bool(value: Any) -> bool:
    """A flag, also when mercure wrote it as a string ("True"/"False")."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def json_object(value: Any, key: str) -> dict[str, Any]:
    """A JSON object that mercure keeps as text (or already an object); empty for none."""
    if isinstance(value, dict):
        return value
    if value in (None, ""):
        return {}
    try:
        parsed = json.loads(value)
    except (TypeError, json.JSONDecodeError) as exc:
        raise MercureImportError(f"{key}: not a JSON object ({exc})") from None
    if not isinstance(parsed, dict):
        raise MercureImportError(f"{key}: not a JSON object")
    return parsed


def as_port(value: Any, key: str) -> int:
    """A TCP port that mercure may have written as a string ("104")."""
    try:
        port = int(str(value).strip())
    except ValueError:
        raise MercureImportError(f"{key}: {str(value)[:40]!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise MercureImportError(f"{key}: {port} is not a port number (1 to 65535)")
    return port


def named_entries(value: Any, key: str) -> dict[str, Any]:
    """mercure's ``targets``, ``modules`` or ``rules``: an object of entries by name."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MercureImportError(f"{key}: must be an object of entries by name")
    return value


SECRET_SETTING = re.compile(r"PASSW|SECRET|TOKEN|API_?KEY|CREDENTIAL", re.IGNORECASE)
"""Names of module settings whose text values are treated as secrets."""


def settings_without_secrets(
    report: ImportReport, value: Any, origin: str, target: str, *label: str
) -> Any:
    """Module settings with each secret-looking text value (``api_key``, ``password`` ...) as a
    ``${VARIABLE}`` reference, at any depth, in objects and lists."""
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if isinstance(item, str) and item and SECRET_SETTING.search(str(key)):
                variable = env_name(*label, str(key))
                result[key] = report.secret(variable, f"{origin}.{key}", f"{target}.{key}")
            else:
                result[key] = settings_without_secrets(
                    report, item, f"{origin}.{key}", f"{target}.{key}", *label
                )
        return result
    if isinstance(value, list):
        return [
            settings_without_secrets(report, item, f"{origin}[{i}]", f"{target}[{i}]", *label)
            for i, item in enumerate(value)
        ]
    return value


def mercure_names(value: Any) -> list[str]:
    """A name, a comma-separated string or a list, as a list of names."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [str(part) for part in value if str(part).strip()]
    return []


def comment_of(report: ImportReport, prefix: str, source: Mapping[str, Any], to: str) -> str:
    """mercure's ``comment`` and ``contact`` as one comment; both keys reported."""
    parts = []
    for field in ("comment", "contact"):
        if field in source:
            if source[field]:
                parts.append(
                    str(source[field]) if field == "comment" else f"contact: {source[field]}"
                )
            report.mapped(f"{prefix}.{field}", f"{to}.comment")
    return "; ".join(parts)
