"""The ``docker`` runner: a module image run through the Docker Engine API.

Inside the container the input is ``/tmp/data`` and the output ``/tmp/output``, as mercure's
modules expect; both are writable, as in mercure (the input holds the task's copies, never files
another task shares), and ``/tmp/persistence`` is the module's persistent folder if it asks.
The container is confined: every capability dropped,
``no-new-privileges``, a read-only root filesystem with a tmpfs on ``/tmp``, no network unless
the module asks for it. Every container is named after its task and step and labelled with the
task id and the processor instance, so a restarted processor finds and removes what a killed one
left running.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.types import DeviceRequest, Ulimit

from mercure.core.config.models import DockerModule, ProcessingConfig
from mercure.core.config.modulecheck import docker_argument_issues, parse_resources
from mercure.core.errors import PermanentError, TransientError
from mercure.core.masking import scrub
from mercure.processor.runners import RunOutcome, RunRequest
from mercure.processor.runners.command import contract_environment

log = logging.getLogger(__name__)

IN_DIR = "/tmp/data"
OUT_DIR = "/tmp/output"
PERSISTENCE_DIR = "/tmp/persistence"
TMP_DIR = "/tmp"
TMP_OPTIONS = "rw,nosuid,nodev,mode=1777"
"""/tmp is the only writable place besides the output: a tmpfs, counted in the memory limit."""
LABEL_TASK = "org.mercure-router.task"
LABEL_INSTANCE = "org.mercure-router.processor"


def container_name(task_id: str, step: int) -> str:
    """The name of a task step's container (unique per task and step)."""
    return f"mercure-{task_id}-{step}"


class DockerRunner:
    """Runs :class:`DockerModule` modules as containers."""

    def __init__(self, config: ProcessingConfig, instance: str) -> None:
        self.config = config
        self.instance = instance
        self._client: docker.DockerClient | None = None

    @property
    def client(self) -> docker.DockerClient:
        """The Docker API client, connected on first use."""
        if self._client is None:
            try:
                if self.config.docker_url:
                    self._client = docker.DockerClient(base_url=self.config.docker_url)
                else:
                    self._client = docker.from_env()
            except docker.errors.DockerException as exc:
                raise TransientError(f"Docker API not reachable: {exc}") from None
        return self._client

    def close(self) -> None:
        """Close the API connection (a later call connects again)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def run(self, request: RunRequest) -> RunOutcome:
        """Create and start the container, wait for it or its timeout, keep its log, remove it."""
        module = request.module
        if not isinstance(module, DockerModule):
            raise PermanentError(f"module {request.module_name} is not a docker module")
        name = container_name(request.task_id, request.step)
        # Recorded before the container exists: a crash in between must still find it.
        request.record({"runner": "docker", "container": name})
        started = time.monotonic()
        try:
            container = self.client.containers.create(
                module.image, **self.container_options(request, module, name)
            )
        except docker.errors.ImageNotFound:
            raise PermanentError(
                f"module {request.module_name}: image {module.image} not found"
            ) from None
        except docker.errors.APIError as exc:
            raise PermanentError(f"module {request.module_name}: cannot create: {exc}") from None
        except requests.exceptions.ConnectionError as exc:
            raise TransientError(f"Docker API not reachable: {exc}") from None
        try:
            try:
                container.start()
            except docker.errors.APIError as exc:
                raise PermanentError(
                    f"module {request.module_name}: container did not start: {exc}"
                ) from None
            timed_out, exit_code = False, None
            try:
                status = container.wait(timeout=module.timeout)
                exit_code = int(status.get("StatusCode", -1))
            except requests.exceptions.RequestException:
                timed_out = True
                container.kill()
                container.wait(timeout=30)
            logs = container.logs(stdout=True, stderr=True).decode("utf-8", "surrogateescape")
            # Kept with the task and sent to the bookkeeper: no secret the module printed.
            request.log_path.write_bytes(scrub(logs).encode("utf-8", "surrogateescape"))
        finally:
            self._remove(name)
        return RunOutcome(exit_code, timed_out, time.monotonic() - started)

    def container_options(
        self, request: RunRequest, module: DockerModule, name: str
    ) -> dict[str, Any]:
        """The keyword arguments of the create call for one module run."""
        volumes: dict[str, dict[str, str]] = {
            str(request.in_dir): {"bind": IN_DIR, "mode": "rw"},
            str(request.out_dir): {"bind": OUT_DIR, "mode": "rw"},
        }
        environment = {**module.environment, **contract_environment(IN_DIR, OUT_DIR)}
        if request.persistence_dir is not None:
            volumes[str(request.persistence_dir)] = {"bind": PERSISTENCE_DIR, "mode": "rw"}
            environment["MODULE_PERSISTENCE_DIR"] = PERSISTENCE_DIR
        for volume in module.volumes:
            source = self._allowed_volume(request.module_name, volume.source)
            volumes[str(source)] = {"bind": volume.target, "mode": "ro"}
        options: dict[str, Any] = {
            "name": name,
            "command": module.command,
            "environment": environment,
            "volumes": volumes,
            "labels": {LABEL_TASK: request.task_id, LABEL_INSTANCE: self.instance},
            "network_mode": None if module.network else "none",
            "detach": True,
            # Confinement (docs/modules.md): a module computes on its input and writes its
            # output; it needs no capability, no privilege gain, no writable image.
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "read_only": True,
            "tmpfs": {TMP_DIR: TMP_OPTIONS},
        }
        if module.requires_root:
            if not self.config.allow_root:
                raise PermanentError(
                    f"module {request.module_name} requires root, but processing.allow_root is off"
                )
        else:
            options["user"] = f"{os.getuid()}:{os.getgid()}"
        resources = parse_resources(module.resources)
        memory_mb = module.memory_limit_mb or resources.memory_mb
        cpus = module.cpu_limit or resources.cpus
        if memory_mb:
            options["mem_limit"] = f"{memory_mb}m"
        if cpus:
            options["nano_cpus"] = int(cpus * 1e9)
        if module.gpu:
            options["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
        options.update(self._docker_arguments(request.module_name, module, options["labels"]))
        return options

    @staticmethod
    def _docker_arguments(
        module_name: str, module: DockerModule, labels: dict[str, str]
    ) -> dict[str, Any]:
        """The module's vetted docker_arguments as create options (check-config refuses the
        rest; checked again here for a configuration that was not loaded through it)."""
        arguments = dict(module.docker_arguments)
        issues = docker_argument_issues(f"modules.{module_name}.docker_arguments", arguments)
        if issues:
            raise PermanentError(f"module {module_name}: {issues[0]}")
        if "ulimits" in arguments:
            arguments["ulimits"] = [Ulimit(**item) for item in arguments["ulimits"]]
        if "device_requests" in arguments:
            arguments["device_requests"] = [
                DeviceRequest(**d) for d in arguments["device_requests"]
            ]
        if "labels" in arguments:
            # Ours win: they are how a restarted processor finds its containers.
            arguments["labels"] = {**arguments["labels"], **labels}
        return arguments

    def _allowed_volume(self, module_name: str, source: Path) -> Path:
        root = self.config.volume_root
        resolved = source.resolve()
        if root is None or not resolved.is_relative_to(root.resolve()):
            raise PermanentError(
                f"module {module_name}: volume {source} is not under processing.volume_root"
            )
        return resolved

    def _remove(self, name: str) -> None:
        try:
            self.client.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            return

    def stop_orphans(self, task_id: str, record: dict[str, Any]) -> None:
        """Remove the recorded container and any other container labelled with the task."""
        names = {c.name for c in self._labelled(f"{LABEL_TASK}={task_id}")}
        if isinstance(record.get("container"), str):
            names.add(record["container"])
        for name in names:
            log.warning("task %s: removing orphaned container %s", task_id, name)
            self._remove(name)

    def stop_instance_orphans(self) -> int:
        """At start-up: remove every container this processor instance left; how many."""
        containers = self._labelled(f"{LABEL_INSTANCE}={self.instance}")
        for container in containers:
            log.warning("removing orphaned container %s", container.name)
            container.remove(force=True)
        return len(containers)

    def _labelled(self, label: str) -> list[Any]:
        result: list[Any] = self.client.containers.list(all=True, filters={"label": label})
        return result
