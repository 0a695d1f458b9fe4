"""Module options from mercure: docker_arguments, constraints/resources, list-form settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mercure.core.config import validate_document
from mercure.core.errors import ConfigError


def _issues(document: dict[str, Any]) -> list[str]:
    try:
        validate_document(document, environ={})
    except ConfigError as exc:
        return [str(issue) for issue in exc.issues]
    return []


def _docker(**options: Any) -> dict[str, Any]:
    return {"modules": {"ai": {"runner": "docker", "image": "ai:1", **options}}}


def test_vetted_docker_arguments_load() -> None:
    """shm_size, ulimits, ipc_mode and the like are accepted."""
    arguments = {"shm_size": "2g", "ipc_mode": "private", "ulimits": [{"name": "nofile"}]}
    assert _issues(_docker(docker_arguments=arguments)) == []


def test_docker_arguments_that_lift_confinement_are_refused_with_the_reason() -> None:
    """privileged, host mounts and capabilities are errors naming the key and why."""
    issues = _issues(
        _docker(docker_arguments={"privileged": True, "volumes": {"/": {}}, "cap_add": ["ALL"]})
    )
    assert [issue.split(":")[0] for issue in issues] == [
        "modules.ai.docker_arguments.privileged",
        "modules.ai.docker_arguments.volumes",
        "modules.ai.docker_arguments.cap_add",
    ]
    assert "every device and capability of the host" in issues[0]
    assert _issues(_docker(docker_arguments={"ipc_mode": "host"})) == [
        "modules.ai.docker_arguments.ipc_mode: unusable value 'host'"
    ]


def test_check_config_warns_about_what_it_ignores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nomad constraints and unknown resources are loaded, and check-config says they are
    ignored; memory and cpu are not mentioned (they become limits)."""
    from mercure.cli import main

    config = tmp_path / "mercure.yaml"
    config.write_text(
        f"data_dir: {tmp_path}/data\n"
        "modules:\n"
        "  ai:\n"
        "    runner: docker\n"
        "    image: ai:1\n"
        "    constraints: '${attr.kernel.name} = linux'\n"
        "    resources: |\n"
        "      memory = 2048\n"
        "      cpu = 1000\n"
        '      device "nvidia/gpu" { count = 1 }\n'
    )
    assert main(["check-config", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "warning: modules.ai.constraints: ignored" in out
    assert "warning: modules.ai.resources: ignored: device, count" in out


def _chain(settings: Any, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    module: dict[str, Any] = {"runner": "command", "command": ["true"]}
    if schema is not None:
        module["settings_schema"] = schema
    return {
        "modules": {"a": module, "b": {"runner": "command", "command": ["true"]}},
        "rules": {
            "r": {
                "rule": "True",
                "action": "process",
                "processing_module": ["a", "b"],
                "processing_settings": settings,
            }
        },
    }


def test_list_form_settings_need_one_object_per_module() -> None:
    """mercure's list form is accepted with one object per module, refused otherwise."""
    assert _issues(_chain([{"x": 1}, {"y": 2}])) == []
    assert _issues(_chain([{"x": 1}])) == [
        "rules.r.processing_settings: 1 settings objects for 2 module(s): the list form has "
        "one object per module of processing_module"
    ]


def test_rule_settings_are_checked_against_each_module_schema() -> None:
    """Each module's settings from the rule (either form) must satisfy its settings_schema."""
    schema = {"type": "object", "properties": {"level": {"type": "integer"}}}
    assert _issues(_chain([{"level": 1}, {"level": "high"}], schema)) == []
    assert _issues(_chain([{"level": "high"}, {}], schema)) == [
        "rules.r.processing_settings[0].level: 'high' is not of type 'integer'"
    ]
    assert _issues(_chain({"level": "high"}, schema)) == [
        "rules.r.processing_settings.level: 'high' is not of type 'integer'"
    ]
