"""Runner and work-area details that need no running service."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mercure.core.config.models import DockerModule, ProcessingConfig
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.errors import PermanentError
from mercure.processor.runners import RunRequest
from mercure.processor.runners.command import CommandRunner, process_start_time
from mercure.processor.runners.docker import LABEL_INSTANCE, LABEL_TASK, DockerRunner
from mercure.processor.workspace import recover_stage
from mercure.testing.wait import wait_until

CHILD = Path(__file__).with_name("command_runner_child.py")


def _request(tmp_path: Path, module: DockerModule) -> RunRequest:
    return RunRequest("t1", 1, "box", module, tmp_path / "in", tmp_path / "out", tmp_path / "log")


def _options(tmp_path: Path, module: dict[str, object], **processing: object) -> dict[str, object]:
    docker_module = DockerModule.model_validate({"runner": "docker", "image": "x", **module})
    runner = DockerRunner(ProcessingConfig.model_validate(processing), "host1")
    return runner.container_options(_request(tmp_path, docker_module), docker_module, "name")


def test_container_defaults_have_no_network_and_the_service_user(tmp_path: Path) -> None:
    """By default a module container has no network and runs as the service's user."""
    options = _options(tmp_path, {})
    assert options["network_mode"] == "none"
    assert options["user"]
    # Writable as in mercure: the input folder holds the task's copies (docs/modules.md).
    assert options["volumes"][str(tmp_path / "in")] == {"bind": "/tmp/data", "mode": "rw"}
    assert options["environment"]["MONAI_INPUTPATH"] == "/tmp/data"
    assert options["environment"]["MONAI_OUTPUTPATH"] == "/tmp/output"
    assert "MODULE_PERSISTENCE_DIR" not in options["environment"]


def test_container_limits_gpu_and_volumes_are_passed(tmp_path: Path) -> None:
    """Memory, CPU, GPU and read-only volumes under the allowed root reach the API call."""
    models = tmp_path / "models"
    models.mkdir()
    options = _options(
        tmp_path,
        {
            "memory_limit_mb": 512,
            "cpu_limit": 1.5,
            "gpu": True,
            "network": True,
            "volumes": [{"source": str(models), "target": "/models"}],
        },
        volume_root=str(tmp_path),
    )
    assert options["mem_limit"] == "512m"
    assert options["nano_cpus"] == 1_500_000_000
    assert options["device_requests"]
    assert options["network_mode"] is None
    assert options["volumes"][str(models)] == {"bind": "/models", "mode": "ro"}


def test_volume_outside_the_allowed_root_is_refused(tmp_path: Path) -> None:
    """An extra volume outside processing.volume_root fails the task instead of mounting."""
    with pytest.raises(PermanentError, match=r"not under processing\.volume_root"):
        _options(tmp_path, {"volumes": [{"source": "/etc", "target": "/x"}]}, volume_root="/srv")


def test_root_module_needs_allow_root(tmp_path: Path) -> None:
    """requires_root is refused unless processing.allow_root is on."""
    with pytest.raises(PermanentError, match="allow_root"):
        _options(tmp_path, {"requires_root": True})
    assert "user" not in _options(tmp_path, {"requires_root": True}, allow_root=True)


def test_recovery_drops_unfinished_assembly_and_leftover_trash(tmp_path: Path) -> None:
    """A half-assembled result beside its original is dropped; orphaned trash is deleted."""
    data = DataFolder(tmp_path)
    data.ensure()
    processing = data.stage(Stage.PROCESSING)
    (processing / "task-a").mkdir()
    (processing / ".done-task-a").mkdir()
    (processing / ".trash-task-b").mkdir()
    assert recover_stage(data) == []
    assert sorted(p.name for p in processing.iterdir()) == ["task-a"]


def test_vetted_docker_arguments_reach_the_container(tmp_path: Path) -> None:
    """shm_size, ulimits and labels from docker_arguments are passed; our labels win."""
    arguments = {
        "shm_size": "1g",
        "ulimits": [{"name": "nofile", "soft": 1024, "hard": 2048}],
        "labels": {"site": "x", LABEL_TASK: "forged"},
    }
    options = _options(tmp_path, {"docker_arguments": arguments})
    assert options["shm_size"] == "1g"
    assert options["ulimits"][0]["Name"] == "nofile"
    assert options["labels"] == {"site": "x", LABEL_TASK: "t1", LABEL_INSTANCE: "host1"}
    assert options["cap_drop"] == ["ALL"]


def test_docker_arguments_that_lift_confinement_are_refused(tmp_path: Path) -> None:
    """privileged (and the like) fails the task even if check-config was bypassed."""
    with pytest.raises(PermanentError, match="privileged: not allowed"):
        _options(tmp_path, {"docker_arguments": {"privileged": True}})


def test_mercure_resources_become_limits(tmp_path: Path) -> None:
    """mercure's Nomad resources string gives memory and CPU limits when none are set."""
    options = _options(tmp_path, {"resources": "resources {\n cpu = 2000\n memory = 4096\n}"})
    assert options["mem_limit"] == "4096m"
    assert options["nano_cpus"] == 2_000_000_000
    options = _options(tmp_path, {"resources": "memory = 4096", "memory_limit_mb": 256})
    assert options["mem_limit"] == "256m"


def test_persistence_folder_is_mounted_with_its_variable(tmp_path: Path) -> None:
    """A module with a persistence folder sees it at /tmp/persistence, named by the variable."""
    module = DockerModule.model_validate({"runner": "docker", "image": "x"})
    request = _request(tmp_path, module)
    request.persistence_dir = tmp_path / "persist" / "box"
    runner = DockerRunner(ProcessingConfig(), "host1")
    options = runner.container_options(request, module, "name")
    assert options["volumes"][str(tmp_path / "persist" / "box")] == {
        "bind": "/tmp/persistence",
        "mode": "rw",
    }
    assert options["environment"]["MODULE_PERSISTENCE_DIR"] == "/tmp/persistence"


def _orphan() -> subprocess.Popen[bytes]:
    """A stand-in for a module left running: a real process in its own session."""
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


def test_an_orphaned_command_module_of_this_host_is_stopped() -> None:
    """The recorded pid and start time of this host: its process group is killed."""
    orphan = _orphan()
    record = {"pid": orphan.pid, "start": process_start_time(orphan.pid)}
    try:
        CommandRunner().stop_orphans("t1", {**record, "host": socket.gethostname()})
        assert orphan.wait(timeout=10) == -signal.SIGKILL
    finally:
        orphan.kill()
        orphan.wait()


def test_a_command_module_recorded_on_another_host_is_left_alone() -> None:
    """Scale-out: a pid recorded by a worker on another host names no process here."""
    orphan = _orphan()
    record = {"pid": orphan.pid, "start": process_start_time(orphan.pid), "host": "elsewhere"}
    try:
        CommandRunner().stop_orphans("t1", record)
        with pytest.raises(subprocess.TimeoutExpired):
            orphan.wait(timeout=0.5)
    finally:
        orphan.kill()
        orphan.wait()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.mark.parametrize("die_with_parent", [True, False])
def test_a_worker_s_module_dies_with_the_worker(tmp_path: Path, die_with_parent: bool) -> None:
    """``mercure worker`` (die_with_parent): its killed process takes the module along; the
    processor's modules outlive it (its restart stops them by the job record)."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), "1" if die_with_parent else "0", str(tmp_path)]
    )
    pid_file = tmp_path / "module.pid"
    try:
        module_pid = wait_until(
            lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=30
        )
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        pid = int(module_pid)
        if die_with_parent:
            wait_until(lambda: not _alive(pid), timeout=10, message="module killed")
        else:
            time.sleep(0.5)  # time for a death signal to arrive, were one asked for
            assert _alive(pid)
    finally:
        child.kill()
        if pid_file.exists() and pid_file.read_text().strip():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
