"""What check-config says about modules beyond their structure: mercure's module options.

mercure passes a module's ``docker_arguments`` to Docker as they are; here only a vetted subset
passes (:data:`DOCKER_ARGUMENTS`), since the rest (``privileged``, ``volumes``, ``cap_add``,
``network_mode``, ``pid_mode``, ``devices``, ...) would undo the container's confinement
(docs/modules.md). mercure's Nomad-era ``constraints`` and ``resources`` are honoured where one
Docker host can (memory and CPU limits) and reported as ignored otherwise. A rule's
``processing_settings`` may be mercure's list form: one settings object per module of the chain.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mercure.core.errors import ConfigIssue


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _size(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _ulimits(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, dict) and set(item) <= {"name", "soft", "hard"} and "name" in item
        for item in value
    )


def _device_requests(value: Any) -> bool:
    allowed = {"driver", "count", "device_ids", "capabilities", "options"}
    return isinstance(value, list) and all(
        isinstance(item, dict) and set(item) <= allowed for item in value
    )


def _labels(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


DOCKER_ARGUMENTS: dict[str, Callable[[Any], bool]] = {
    "shm_size": _size,
    "ipc_mode": lambda value: value in ("none", "private", "shareable"),
    "ulimits": _ulimits,
    "pids_limit": _count,
    "mem_limit": _size,
    "memswap_limit": _size,
    "nano_cpus": _count,
    "cpu_shares": _count,
    "cpuset_cpus": _text,
    "working_dir": _text,
    "entrypoint": lambda value: (
        _text(value) or (isinstance(value, list) and all(isinstance(item, str) for item in value))
    ),
    "hostname": _text,
    "labels": _labels,
    "init": lambda value: isinstance(value, bool),
    "stop_signal": _text,
    "runtime": _text,
    "device_requests": _device_requests,
}
"""docker_arguments a module may set, each with the check of its value."""

_REFUSED_WHY = {
    "privileged": "it gives the container every device and capability of the host",
    "volumes": "host folders are mounted through `volumes` of the module "
    "(under processing.volume_root, read-only)",
    "mounts": "host folders are mounted through `volumes` of the module",
    "cap_add": "modules run with every capability dropped",
    "security_opt": "it could lift no-new-privileges",
    "network_mode": "use the module's `network` flag",
    "network": "use the module's `network` flag",
    "pid_mode": "it shares the host's processes",
    "userns_mode": "it shares the host's user namespace",
    "user": "use the module's `requires_root` flag",
    "devices": "use the module's `gpu` flag or device_requests",
    "read_only": "the image's filesystem stays read-only",
    "tmpfs": "/tmp is already a tmpfs",
    "environment": "use the module's `environment`",
    "name": "the processor names containers after their task",
    "command": "use the module's `command`",
    "detach": "the processor waits for the module itself",
    "auto_remove": "the processor removes the container after reading its log",
}


def docker_argument_issues(where: str, arguments: Mapping[str, Any]) -> list[ConfigIssue]:
    """The docker_arguments of a module that are refused or of the wrong type."""
    issues = []
    for key, value in arguments.items():
        check = DOCKER_ARGUMENTS.get(key)
        if check is None:
            why = _REFUSED_WHY.get(key, "it is not one of the vetted options")
            allowed = ", ".join(sorted(DOCKER_ARGUMENTS))
            issues.append(ConfigIssue(f"{where}.{key}", f"not allowed: {why} (allowed: {allowed})"))
        elif not check(value):
            issues.append(ConfigIssue(f"{where}.{key}", f"unusable value {value!r}"))
    return issues


_RESOURCE = re.compile(r"([A-Za-z_]+)\s*=\s*\"?([0-9]+(?:\.[0-9]+)?)\"?")
_BLOCK = re.compile(r"\b(resources|device|network)\s*(\"[^\"]*\")?\s*\{")


@dataclass
class Resources:
    """What of a module's mercure ``resources`` string the docker runner honours."""

    memory_mb: int | None = None
    cpus: float | None = None
    ignored: list[str] = field(default_factory=list)


def parse_resources(text: str) -> Resources:
    """Read mercure's Nomad ``resources`` (``memory = 4096``, ``cpu = 2000``, ``cores = 2``).

    ``memory``/``memory_max`` are MB; ``cores`` are CPUs; ``cpu`` is MHz, taken as 1000 MHz per
    CPU. Any other entry (a ``device`` block, ``disk``, ...) is listed in ``ignored``.
    """
    result = Resources()
    for block in _BLOCK.finditer(text):
        if block.group(1) != "resources":
            result.ignored.append(block.group(1))
    for key, value in _RESOURCE.findall(text):
        number = float(value)
        if key in ("memory", "memory_max"):
            result.memory_mb = max(result.memory_mb or 0, int(number))
        elif key == "cores":
            result.cpus = number
        elif key == "cpu" and result.cpus is None:
            result.cpus = number / 1000
        else:
            result.ignored.append(key)
    return result


def module_warnings(config: Any) -> list[ConfigIssue]:
    """What of the modules' mercure options the processor ignores (check-config warns)."""
    warnings = []
    for name, module in config.modules.items():
        if getattr(module, "constraints", "").strip():
            warnings.append(
                ConfigIssue(
                    f"modules.{name}.constraints",
                    "ignored: Nomad placement constraints mean nothing to one Docker host",
                )
            )
        resources = getattr(module, "resources", "")
        if resources.strip():
            parsed = parse_resources(resources)
            if parsed.ignored:
                warnings.append(
                    ConfigIssue(
                        f"modules.{name}.resources",
                        "ignored: " + ", ".join(dict.fromkeys(parsed.ignored)) + " "
                        "(only memory, memory_max, cpu and cores become limits)",
                    )
                )
            if module.runner == "command":
                warnings.append(
                    ConfigIssue(
                        f"modules.{name}.resources",
                        "ignored: the command runner sets no limits",
                    )
                )
    return warnings


def merge_settings(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` with ``overrides`` merged over them; nested mappings merge key by key."""
    merged = dict(defaults)
    for key, value in overrides.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = merge_settings(current, value)
        else:
            merged[key] = value
    return merged


def rule_settings(settings: Any, index: int) -> dict[str, Any]:
    """The settings a rule gives the ``index``-th module of its chain (either form)."""
    if isinstance(settings, list):
        return dict(settings[index]) if index < len(settings) else {}
    return dict(settings)


def rule_settings_issues(config: Any) -> list[ConfigIssue]:
    """Each rule's settings checked per module: list length, and each module's schema."""
    from mercure.core.config.loader import settings_schema_issues

    issues = []
    for name, rule in config.rules.items():
        where = f"rules.{name}.processing_settings"
        settings = rule.processing_settings
        chain = rule.processing_module
        if isinstance(settings, list) and len(settings) != len(chain):
            issues.append(
                ConfigIssue(
                    where,
                    f"{len(settings)} settings objects for {len(chain)} module(s): "
                    "the list form has one object per module of processing_module",
                )
            )
            continue
        for index, module_name in enumerate(chain):
            module = config.modules.get(module_name)
            if module is None or module.settings_schema is None:
                continue
            merged = merge_settings(module.settings, rule_settings(settings, index))
            place = f"{where}[{index}]" if isinstance(settings, list) else where
            for issue in settings_schema_issues(place, merged, module.settings_schema):
                # The schema's own problems are the module's, reported there already.
                if ".settings_schema" not in issue.path:
                    issue.path = issue.path.replace(f"{place}.settings", place, 1)
                    issues.append(issue)
    return issues
