"""mercure's modules as docker modules of mercure-router.

mercure runs every module with Docker (or Nomad); its containers are on Docker's default network,
so the converted module says ``network: true`` unless mercure's module said otherwise.
"""

from __future__ import annotations

import re
from typing import Any

from mercure.migrate.report import ImportReport
from mercure.migrate.values import (
    as_mercure_bool,
    comment_of,
    env_name,
    json_object,
    settings_without_secrets,
)

SECRET_ENV_KEY = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|AUTH", re.IGNORECASE)
"""Names of environment variables whose values are treated as secrets (written as ${...})."""


def convert_module(
    report: ImportReport, prefix: str, name: str, source: dict[str, Any]
) -> dict[str, Any]:
    """The module ``source`` (at ``prefix`` in the input) as module ``name``."""
    to = f"modules.{name}"
    out: dict[str, Any] = {"runner": "docker", "image": str(source.get("docker_tag") or "")}
    for field, value in source.items():
        where = f"{prefix}.{field}"
        if field == "docker_tag":
            report.mapped(where, f"{to}.image")
        elif field == "additional_volumes":
            volumes = []
            for host_path, spec in json_object(value, where).items():
                bind = spec.get("bind", host_path) if isinstance(spec, dict) else str(spec)
                volumes.append({"source": host_path, "target": bind})
                if isinstance(spec, dict) and spec.get("mode", "rw") != "ro":
                    report.changed(
                        where,
                        f"{to}.volumes",
                        f"{host_path} is mounted read-only here "
                        f"(mercure: {spec.get('mode', 'rw')})",
                    )
            if volumes:
                out["volumes"] = volumes
            report.mapped(where, f"{to}.volumes")
        elif field == "environment":
            environment = {}
            for variable, env_value in json_object(value, where).items():
                if SECRET_ENV_KEY.search(variable) and env_value:
                    reference = env_name("MODULE", name, variable)
                    environment[variable] = report.secret(
                        reference, f"{where}.{variable}", f"{to}.environment.{variable}"
                    )
                else:
                    environment[variable] = str(env_value)
            if environment:
                out["environment"] = environment
            report.mapped(where, f"{to}.environment", "secret-looking values as ${ENV}")
        elif field == "docker_arguments":
            arguments = json_object(value, where)
            if arguments:
                out["docker_arguments"] = arguments
            report.mapped(where, f"{to}.docker_arguments")
        elif field in ("constraints", "resources"):
            if value:
                out[field] = str(value)
            report.mapped(where, f"{to}.{field}")
        elif field in ("requires_root", "requires_persistence"):
            out[field] = as_mercure_bool(value)
            report.mapped(where, f"{to}.{field}")
        elif field == "network_enabled":
            out["network"] = as_mercure_bool(value)
            report.mapped(where, f"{to}.network")
        elif field == "settings":
            if value:
                out["settings"] = settings_without_secrets(
                    report, value, where, f"{to}.settings", "MODULE", name
                )
            report.mapped(where, f"{to}.settings", "secret-looking values as ${ENV}")
        elif field in ("comment", "contact"):
            continue
        else:
            report.dropped(where, "not a field of a mercure module")
    comment = comment_of(report, prefix, source, to)
    if comment:
        out["comment"] = comment
    if "network_enabled" not in source:
        out["network"] = True
        report.changed(
            f"{prefix}.network_enabled",
            f"{to}.network",
            "absent: mercure's containers have network access; mercure-router's have "
            "none unless `network: true`, written so the module keeps working",
        )
    if not out["image"]:
        report.changed(f"{prefix}.docker_tag", f"{to}.image", "empty: set the image")
    return out
