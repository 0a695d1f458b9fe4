"""The imported configuration as YAML, with comments for the administrator.

A header says where the file came from and which environment variables it needs; each value
whose meaning changed carries the reason above its key, so that the file explains itself
without the report.
"""

from __future__ import annotations

import io
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import SingleQuotedScalarString

from mercure.core.config.models import MercureConfig
from mercure.migrate.report import ImportReport

_WIDTH = 96


def _node(value: Any) -> Any:
    if isinstance(value, dict):
        node = CommentedMap()
        for key, item in value.items():
            node[key] = _node(item)
        return node
    if isinstance(value, list):
        return CommentedSeq(_node(item) for item in value)
    if isinstance(value, str) and _misread(value):
        return SingleQuotedScalarString(value)
    return value


def _misread(text: str) -> bool:
    """Whether the loader (PyYAML, YAML 1.1) would read the plain scalar as something else.

    ruamel writes YAML 1.2, where ``21:30`` is a string; YAML 1.1 reads it as 1290.
    """
    try:
        return bool(yaml.safe_load(text) != text)
    except yaml.YAMLError:
        return True


def _ordered(document: dict[str, Any]) -> dict[str, Any]:
    """Top-level keys in the order of the configuration reference."""
    order = list(MercureConfig.model_fields)
    return dict(
        sorted(document.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99)
    )


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines


def _comment_keys(root: CommentedMap, report: ImportReport) -> None:
    """Put the notes of changed entries above the keys they concern (each note once)."""
    seen: set[tuple[str, str]] = set()
    for entry in report.entries:
        if entry.outcome.value != "changed" or not entry.to or "*" in entry.to:
            continue
        if (entry.to, entry.note) in seen:
            continue
        seen.add((entry.to, entry.note))
        path = entry.to.replace("[0]", ".0").split(".")
        parent: Any = root
        for part in path[:-1]:
            if isinstance(parent, CommentedSeq) and part.isdigit() and int(part) < len(parent):
                parent = parent[int(part)]
            elif isinstance(parent, CommentedMap) and part in parent:
                parent = parent[part]
            else:
                parent = None
                break
        last = path[-1]
        if not isinstance(parent, CommentedMap) or last not in parent:
            continue
        indent = 2 * (len(path) - 1)
        lines = _wrap(f"mercure: {entry.key}: {entry.note}", _WIDTH - indent)
        before = parent.ca.items.get(last)
        if before and before[1]:
            # One comment block per key: the second note joins the first.
            existing = "".join(token.value for token in before[1])
            lines = [*existing.strip().splitlines(), *["# " + line for line in lines]]
            lines = [line.lstrip("# ").rstrip() for line in lines]
            parent.ca.items.pop(last)
        parent.yaml_set_comment_before_after_key(last, before="\n".join(lines), indent=indent)


def render_yaml(document: dict[str, Any], report: ImportReport, source: str) -> str:
    """``document`` as commented YAML (block style, keys in the order written)."""
    root = _node(_ordered(document))
    header = [
        f"mercure-router configuration imported from {source} by `mercure import-config`.",
        "Check it with `mercure check-config`; docs/migrating-from-mercure.md explains the "
        "mapping. Comments starting with 'mercure:' say where a value differs from mercure's "
        "meaning and what was written to keep its behaviour.",
    ]
    if report.secrets:
        header.append("")
        header.append("Secrets are not in this file; set these environment variables:")
        header += [f"  {s.variable}  ({s.origin})" for s in report.secrets]
    _comment_keys(root, report)
    text_lines: list[str] = []
    for line in header:
        text_lines += (
            _wrap(line, _WIDTH - 2) if line.strip() and not line.startswith("  ") else [line]
        )
    root.yaml_set_start_comment("\n".join(text_lines))
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    buffer = io.StringIO()
    yaml.dump(root, buffer)
    return buffer.getvalue()
