"""Editing the configuration file from a program (the web interface) the way a person would.

- :class:`ConfigFile`: the file's text and its **version** (a hash of its bytes). An editor
  remembers the version it opened; :func:`save_text` refuses a save when the file has changed
  since (another administrator, or a hand edit), so nothing is overwritten silently.
- :class:`Document`: a round-trip YAML document (ruamel.yaml): comments, key order, quoting and
  indentation of a hand-edited ``mercure.yaml`` survive a change made through it. Values are read
  with the same YAML rules as the services (PyYAML's), and new strings that those rules would
  read as something else (``22:00``, ``yes``, ``0777``) are written quoted.
- Secrets: :func:`is_secret_path` says which settings hold one; :func:`masked_text` shows a file
  with each secret replaced by :data:`MASK` (an ``${ENV}`` reference is shown: it is no secret),
  and :func:`unmask` puts the stored values back where an edited text still says :data:`MASK`.
- :func:`save_text`: validated by the same models as ``check-config``, written atomically with
  the previous version archived (:mod:`mercure.core.config.history`), and recorded there with who
  saved it and what changed (:func:`describe_changes`, secrets never shown).
"""

from __future__ import annotations

import copy
import hashlib
import io
import itertools
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.error import YAMLError as RuamelYAMLError
from ruamel.yaml.scalarstring import SingleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

from mercure.core.config.loader import SECRET_KEYS, LoadedConfig, format_path
from mercure.core.errors import ConfigError, ConfigIssue, MercureError

Path_ = tuple[str | int, ...]
"""A location in the document: ``("rules", "ct", "targets", 0)``."""

MASK = "<secret>"
"""Shown instead of a secret; a save that still holds it keeps the stored secret."""

_ENV_ONLY = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")
_VERSION_CHARS = 16


class _Keep:
    """The type of :data:`KEEP`."""

    _instance: _Keep | None = None

    def __new__(cls) -> _Keep:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "KEEP"

    def __deepcopy__(self, memo: dict[int, Any]) -> _Keep:
        return self


KEEP: Any = _Keep()
"""As a value given to :meth:`Document.set`: keep what the document has at this place (a secret
left empty in a form); where the document has nothing, nothing is written."""


class ConfigChanged(MercureError):
    """The file changed since the editor read it: the save is refused, nothing is written."""


def version_of(data: bytes) -> str:
    """The version of a file's content: a short hash of its bytes."""
    return hashlib.sha256(data).hexdigest()[:_VERSION_CHARS]


@dataclass(frozen=True)
class ConfigFile:
    """A configuration file's text and version as read at one moment."""

    path: Path
    text: str
    version: str

    @classmethod
    def read(cls, path: Path | str) -> ConfigFile:
        """Read ``path``; a file that does not exist reads as empty."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = b""
        return cls(path=path, text=data.decode("utf-8"), version=version_of(data))


# --- the round-trip document ----------------------------------------------------------------
class Document:
    """A configuration document that keeps its comments, key order and layout when changed.

    ``source`` names the file in error messages; a ``.json`` source is read and written as JSON
    (which has no comments to keep).
    """

    def __init__(self, text: str, source: str = "<config>") -> None:
        self.source = source
        self._json = source.endswith(".json")
        self._yaml = YAML(typ="rt")
        self._yaml.preserve_quotes = True
        self._yaml.width = 4096  # never re-wrap a long value
        try:
            if self._json:
                root: Any = json.loads(text) if text.strip() else {}
                root = _to_node(root)
            elif text.strip():
                root = self._yaml.load(text)
                mapping, offset = _guess_indent(text)
                self._yaml.indent(mapping=mapping, sequence=offset + 2, offset=offset)
            else:
                root = CommentedMap()
        except (RuamelYAMLError, json.JSONDecodeError) as exc:
            raise ConfigError(
                source, [ConfigIssue("", f"syntax error: {_first_line(exc)}")]
            ) from None
        if root is None:
            root = CommentedMap()
        if not isinstance(root, CommentedMap):
            raise ConfigError(source, [ConfigIssue("", "the file must hold a mapping of keys")])
        self._root: CommentedMap = root

    # reading
    def dump(self) -> str:
        """The document as text."""
        if self._json:
            return json.dumps(_plain_node(self._root), indent=2) + "\n"
        if not self._root:
            comment = self._root.ca.comment
            return "{}\n" if comment is None else self._dump_raw()
        return self._dump_raw()

    def _dump_raw(self) -> str:
        stream = io.StringIO()
        self._yaml.dump(self._root, stream)
        return stream.getvalue()

    def plain(self) -> dict[str, Any]:
        """The document as the services read it (plain Python values, PyYAML's rules)."""
        value = yaml.safe_load(self.dump())
        return value if isinstance(value, dict) else {}

    def get(self, path: Path_, default: Any = None) -> Any:
        """The plain value at ``path``, or ``default`` when there is none."""
        node: Any = self.plain()
        for part in path:
            found = (isinstance(node, Mapping) and part in node) or (
                isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
            )
            if not found:
                return default
            node = node[part]
        return node

    def has(self, path: Path_) -> bool:
        """Whether the document writes something at ``path``."""
        marker = object()
        return self.get(path, marker) is not marker

    # changing
    def set(self, path: Path_, value: Any) -> None:
        """Put a plain ``value`` at ``path``, merging it into what is there.

        Keys that stay keep their comments and position; keys the value lacks are removed;
        new keys go last. :data:`KEEP` anywhere in ``value`` keeps the document's value there.
        Missing parent mappings are created.
        """
        if not path:
            if not isinstance(value, Mapping):
                raise TypeError("the whole document must be a mapping")
            _merge(self._root, value)
            return
        parent = self._parent(path, create=True)
        key = path[-1]
        if isinstance(parent, CommentedMap):
            if value is KEEP:
                return
            if key in parent:
                parent[key] = _merge(parent[key], value)
            else:
                _append(parent, key, _to_node(value))
        elif isinstance(parent, CommentedSeq) and isinstance(key, int):
            if value is KEEP:
                return
            if key < len(parent):
                parent[key] = _merge(parent[key], value)
            elif key == len(parent):
                _append(parent, key, _to_node(value))
            else:
                raise IndexError(f"{format_path(path)}: no item before it")
        else:
            raise KeyError(f"{format_path(path)}: its parent is not a mapping or list")

    def delete(self, path: Path_) -> None:
        """Remove the value at ``path`` (nothing happens when there is none)."""
        if not path:
            raise KeyError("cannot delete the whole document")
        parent = self._parent(path, create=False)
        key = path[-1]
        if isinstance(parent, CommentedMap) and key in parent:
            _keep_comment_before_next(parent, key)
            del parent[key]
        elif isinstance(parent, CommentedSeq) and isinstance(key, int) and key < len(parent):
            del parent[key]

    def rename(self, path: Path_, new_key: str) -> None:
        """Give the mapping entry at ``path`` a new key, in the same position with its comments."""
        parent = self._parent(path, create=False)
        key = path[-1]
        if not isinstance(parent, CommentedMap) or key not in parent:
            raise KeyError(f"{format_path(path)}: no such entry")
        if new_key == key:
            return
        if new_key in parent:
            raise KeyError(f"{format_path((*path[:-1], new_key))} exists already")
        position = list(parent).index(key)
        value = parent[key]
        comment = parent.ca.items.pop(key, None)
        del parent[key]
        parent.insert(position, new_key, value)
        if comment is not None:
            parent.ca.items[new_key] = comment

    def _parent(self, path: Path_, *, create: bool) -> Any:
        node: Any = self._root
        for part in path[:-1]:
            if isinstance(node, CommentedMap):
                if part not in node or node[part] is None:
                    if not create:
                        return None
                    node[part] = CommentedMap()
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                return None
        return node

    # secrets
    def secret_paths(self) -> Iterator[Path_]:
        """Every location whose value is a secret (see :func:`is_secret_path`)."""
        yield from (path for path, _ in _walk(self._root, ()) if is_secret_path(path))

    def mask_secrets(self) -> None:
        """Replace each secret's value by :data:`MASK`; ``${ENV}`` references stay."""
        for path in list(self.secret_paths()):
            parent = self._parent(path, create=False)
            value = parent[path[-1]]
            if isinstance(value, str) and value and not _ENV_ONLY.match(value):
                parent[path[-1]] = MASK


_KEY_LINE = re.compile(r"^( *)[^\s#-][^#]*:\s*(#.*)?$")


def _guess_indent(text: str) -> tuple[int, int]:
    """How a file indents nested mappings, and list dashes below their key (2 and 0 default)."""
    mapping: int | None = None
    offset: int | None = None
    lines = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    for line, following in itertools.pairwise(lines):
        match = _KEY_LINE.match(line)
        if not match:
            continue
        depth = len(match.group(1))
        inner = len(following) - len(following.lstrip(" "))
        if inner <= depth and not (inner == depth and following.lstrip().startswith("- ")):
            continue
        if following.lstrip().startswith("- "):
            offset = inner - depth if offset is None else offset
        elif mapping is None:
            mapping = inner - depth
        if mapping is not None and offset is not None:
            break
    return (mapping or 2), (offset or 0)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is not None and problem:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    return text.splitlines()[0] if text else type(exc).__name__


def _walk(node: Any, path: Path_) -> Iterator[tuple[Path_, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield (*path, key), value
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*path, i), value
            yield from _walk(value, (*path, i))


def _yaml11_would_misread(text: str) -> bool:
    """Whether PyYAML (YAML 1.1, as the services read) takes this plain scalar for a non-string."""
    resolver = yaml.resolver.Resolver()
    tag = resolver.resolve(yaml.ScalarNode, text, (True, False))
    return tag != "tag:yaml.org,2002:str" or text != text.strip() or text == ""


def _to_node(value: Any) -> Any:
    """A plain value as a ruamel node (block style for new mappings and lists)."""
    if value is KEEP:
        raise ValueError("KEEP has nothing to keep here")
    if isinstance(value, Mapping):
        node = CommentedMap()
        for key, item in value.items():
            if item is not KEEP:
                node[key] = _to_node(item)
        return node
    if isinstance(value, list | tuple):
        return CommentedSeq(_to_node(item) for item in value if item is not KEEP)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str) and _yaml11_would_misread(value):
        return SingleQuotedScalarString(value)
    return value


def _merge(node: Any, value: Any) -> Any:
    """``value`` merged into the existing ``node``; the node to put in its place."""
    if value is KEEP:
        return node
    if isinstance(node, CommentedMap) and isinstance(value, Mapping):
        for key in [k for k in node if k not in value]:
            _keep_comment_before_next(node, key)
            del node[key]
        for key, item in value.items():
            if item is KEEP:
                continue
            if key in node:
                node[key] = _merge(node[key], item)
            else:
                _append(node, key, _to_node(item))
        return node
    if isinstance(node, CommentedSeq) and isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if i < len(node):
                node[i] = _merge(node[i], item)
            elif item is not KEEP:
                _append(node, i, _to_node(item))
        del node[len(value) :]
        return node
    if _same_scalar(node, value):
        return node  # keep how the file writes it (quotes, number format)
    return _to_node(value)


def _same_scalar(node: Any, value: Any) -> bool:
    if isinstance(node, Mapping | list) or isinstance(value, Mapping | list | tuple):
        return False
    if isinstance(value, Path):
        value = str(value)
    if isinstance(node, bool) or isinstance(value, bool):
        return type(node) is type(value) and node == value
    try:
        return (bool(node == value) and type(node) is not str) or str(node) == value
    except TypeError:
        return False


def _tail_slot(container: Any, key: Any) -> tuple[Any, Any]:
    """Where ruamel keeps the comment lines that follow the entry ``key`` of ``container``:
    on the entry itself, or on the last entry of its (nested) value."""
    value = container[key]
    if isinstance(value, CommentedMap) and value:
        return _tail_slot(value, list(value)[-1])
    if isinstance(value, CommentedSeq) and value:
        return _tail_slot(value, len(value) - 1)
    return container, key


def _keep_comment_before_next(mapping: CommentedMap, key: Any) -> None:
    """ruamel keeps the comment lines above a key with the entry before it. When an entry goes,
    the lines above the next key move to the entry before it, so that they stay above the key
    they describe (the lines above the removed entry go with it)."""
    keys = list(mapping)
    index = keys.index(key)
    if index == 0:
        return
    owner, slot = _tail_slot(mapping, key)
    token = _comment_token(owner, slot)
    if token is None or "\n" not in token.value:
        return
    following = token.value.split("\n", 1)[1]
    if not following.strip():
        return
    before_owner, before_slot = _tail_slot(mapping, keys[index - 1])
    before = _comment_token(before_owner, before_slot)
    if before is None:
        entry = before_owner.ca.items.setdefault(before_slot, [None, None, None, None])
        entry[2] = copy.copy(token)
        entry[2].value = "\n" + following
    else:
        own_line = before.value.split("\n", 1)[0]
        before.value = own_line + "\n" + following


def _append(container: Any, key: Any, node: Any) -> None:
    """Add a new last entry; the comment lines that followed the old last entry (those above
    whatever comes after the container) move below the new one."""
    last = (
        (list(container)[-1] if container else None)
        if isinstance(container, CommentedMap)
        else (len(container) - 1 if container else None)
    )
    following = ""
    if last is not None:
        owner, slot = _tail_slot(container, last)
        token = _comment_token(owner, slot)
        if token is not None and "\n" in token.value:
            own_line, following = token.value.split("\n", 1)
            if following.strip():
                token.value = own_line + "\n"
            else:
                following = ""
    if isinstance(container, CommentedMap):
        container[key] = node
    else:
        container.append(node)
        key = len(container) - 1
    if following:
        owner, slot = _tail_slot(container, key)
        token = _comment_token(owner, slot)
        if token is None:
            _set_comment(owner, slot, CommentToken("\n" + following, CommentMark(0), None))
        else:
            token.value = token.value.rstrip("\n") + "\n" + following


def _comment_token(container: Any, slot: Any) -> Any:
    entry = container.ca.items.get(slot)
    return entry[_comment_index(container)] if entry else None


def _comment_index(container: Any) -> int:
    """ruamel keeps the comment after a list item at index 0, after a mapping entry at 2."""
    return 0 if isinstance(container, CommentedSeq) else 2


def _set_comment(container: Any, slot: Any, token: Any) -> None:
    entry = container.ca.items.setdefault(slot, [None, None, None, None])
    entry[_comment_index(container)] = token


def _plain_node(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {str(k): _plain_node(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain_node(v) for v in node]
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


# --- secrets --------------------------------------------------------------------------------
SECRET_PATH_KEYS = SECRET_KEYS | {"database_url", "broker", "result_backend"}
"""Keys whose values are secrets wherever they appear (a database or broker URL may hold a
password)."""


def is_secret_path(path: Sequence[str | int]) -> bool:
    """Whether the value at ``path`` is a secret: shown masked, never sent to a browser."""
    if not path:
        return False
    last = path[-1]
    if isinstance(last, str) and last in SECRET_PATH_KEYS:
        return True
    if len(path) >= 2 and path[-2] == "previous_api_keys":
        return True
    # A module's environment is where its tokens go: every value counts as a secret.
    if len(path) == 4 and path[0] == "modules" and path[2] == "environment":
        return True
    return _is_channel_secret(path)


CHANNEL_SECRET_KEYS = frozenset({"url", "hmac_secret"})
"""Keys of a notification channel that hold a secret: a chat webhook's URL carries its token."""
CHANNEL_SECRET_LISTS = frozenset({"headers", "urls"})
"""A channel's header values (``Authorization``) and apprise URLs: each item is a secret."""


def _is_channel_secret(path: Sequence[str | int]) -> bool:
    if len(path) < 3 or path[0] != "notifications":
        return False
    if len(path) == 3:
        return path[2] in CHANNEL_SECRET_KEYS
    return len(path) == 4 and path[2] in CHANNEL_SECRET_LISTS


def is_env_reference(value: object) -> bool:
    """Whether ``value`` is exactly one ``${VARIABLE}`` reference (which is no secret)."""
    return isinstance(value, str) and bool(_ENV_ONLY.match(value))


def masked_text(text: str, source: str = "<config>") -> str:
    """``text`` with every secret replaced by :data:`MASK`.

    A text that cannot be parsed is not shown at all (it could hold a secret in plain sight):
    the answer says so instead.
    """
    try:
        document = Document(text, source)
    except ConfigError as exc:
        return f"# This version cannot be shown: it is not valid YAML ({exc.issues[0].message}).\n"
    document.mask_secrets()
    return document.dump()


def unmask(document: Document, stored: Document) -> None:
    """Where ``document`` still says :data:`MASK` for a secret, put back the value of ``stored``.

    Raises :class:`ConfigError` when a masked secret has no stored value to stand for (it was
    moved or renamed): the user must type it.
    """
    issues = []
    for path in list(document.secret_paths()):
        if document.get(path) != MASK:
            continue
        if stored.has(path):
            document.set(path, stored.get(path))
        else:
            issues.append(
                ConfigIssue(
                    format_path(path),
                    f"'{MASK}' stands for a stored secret, but none is stored here: type it",
                )
            )
    if issues:
        raise ConfigError(document.source, issues)


# --- describing a change --------------------------------------------------------------------
MAX_CHANGES = 30
_MAX_VALUE = 60


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two plain documents, one line per change, secrets not shown.

    ``rules.ct added``, ``targets.old removed``, ``router.series_complete_trigger: 60 -> 90``,
    ``targets.pacs.password changed``.
    """
    lines: list[str] = []
    _diff(old, new, (), lines)
    if len(lines) > MAX_CHANGES:
        lines = [*lines[:MAX_CHANGES], f"and {len(lines) - MAX_CHANGES} more changes"]
    return lines


def _diff(old: Any, new: Any, path: Path_, lines: list[str]) -> None:
    where = format_path(path)
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in old:
            if key not in new:
                lines.append(f"{format_path((*path, key))} removed")
        for key, value in new.items():
            if key not in old:
                lines.append(f"{format_path((*path, key))} added" + _shown(value, (*path, key)))
            else:
                _diff(old[key], value, (*path, key), lines)
        return
    if old == new:
        return
    if is_secret_path(path) or _holds_secret(new, path) or _holds_secret(old, path):
        lines.append(f"{where} changed")
        return
    if (
        isinstance(old, list)
        and isinstance(new, list)
        and any(isinstance(v, Mapping) for v in (*old, *new))
    ):
        for i in range(max(len(old), len(new))):
            if i >= len(old):
                lines.append(f"{format_path((*path, i))} added")
            elif i >= len(new):
                lines.append(f"{format_path((*path, i))} removed")
            else:
                _diff(old[i], new[i], (*path, i), lines)
        return
    lines.append(f"{where}: {_short(old)} -> {_short(new)}")


def _holds_secret(value: Any, path: Path_) -> bool:
    return any(is_secret_path(p) for p, _ in _walk(value, path))


def _shown(value: Any, path: Path_) -> str:
    if isinstance(value, Mapping | list) or is_secret_path(path):
        return ""
    return f": {_short(value)}"


def _short(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


# --- saving ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SavedConfig:
    """The outcome of a save: the configuration now in force and what changed."""

    loaded: LoadedConfig
    version: str
    changes: list[str] = field(default_factory=list)
    previous: str | None = None
    """The archived file name of the version it replaced (None for a new file)."""


def save_text(
    path: Path | str,
    text: str,
    *,
    expected_version: str | None,
    user: str,
    summary: str = "",
    restored_from: str | None = None,
    environ: Mapping[str, str] | None = None,
    keep: int | None = None,
) -> SavedConfig:
    """Validate ``text`` and make it the file's content, if the file is still ``expected_version``.

    Raises :class:`ConfigChanged` when the file changed since (None skips the check),
    :class:`ConfigError` with every issue when the text is invalid; the file is untouched then.
    """
    from mercure.core.config.history import DEFAULT_KEEP, replace_file

    def describe(old_text: str, loaded: LoadedConfig) -> list[str]:
        try:
            old = yaml.safe_load(old_text) if old_text.strip() else {}
        except yaml.YAMLError:
            old = {}
        return describe_changes(old if isinstance(old, dict) else {}, loaded.raw)

    return replace_file(
        Path(path),
        text,
        expected_version=expected_version,
        user=user,
        summary=summary,
        describe=describe,
        restored_from=restored_from,
        environ=environ,
        keep=DEFAULT_KEEP if keep is None else keep,
    )


Describe = Callable[[str, LoadedConfig], list[str]]
