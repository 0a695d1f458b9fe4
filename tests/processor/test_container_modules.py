"""The docker runner against Podman's Docker-compatible API, with a locally built image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from processor_harness import MODULE_IMAGE, Processor, module_names

from mercure.core.datafolder import Stage
from mercure.processor.runners.docker import LABEL_TASK
from mercure.testing.podman import PodmanService
from mercure.testing.series import GeneratedSeries
from mercure.testing.wait import wait_until

pytestmark = [pytest.mark.peers, pytest.mark.slow]


def _use_podman(processor: Processor, podman: PodmanService, **options: object) -> None:
    processor.config["processing"]["docker_url"] = podman.url
    processor.config["modules"]["box"] = {"runner": "docker", "image": MODULE_IMAGE, **options}


def _containers(podman: PodmanService, task_id: str) -> list[str]:
    found = podman.client().containers.list(all=True, filters={"label": f"{LABEL_TASK}={task_id}"})
    return [c.name for c in found]


def test_container_module_reads_settings_and_writes_output(
    processor: Processor, podman: PodmanService, tiny_series: GeneratedSeries
) -> None:
    """A container module gets task.json with its settings and writes output and result.json."""
    _use_podman(processor, podman)
    processor.start()
    task_id = processor.add_task(tiny_series, ["box"], settings={"label": "from the rule"})
    folder = processor.wait_for(task_id, Stage.SUCCESS, timeout=60)
    assert sorted(p.name for p in folder.glob("*.dcm")) == module_names(tiny_series)
    result = json.loads((folder / "result.json").read_text())
    assert result == {"label": "from the rule", "files": len(tiny_series)}
    log = (folder / "logs" / "processing-1-box.log").read_text()
    assert "copied" in log
    assert not _containers(podman, task_id)


def test_failing_and_hanging_containers_fail_the_task(
    processor: Processor, podman: PodmanService, tiny_series: GeneratedSeries
) -> None:
    """Exit 1 and a timeout both fail the task with the reason; no container is left."""
    _use_podman(processor, podman)
    processor.config["modules"]["stuck"] = {"runner": "docker", "image": MODULE_IMAGE, "timeout": 2}
    processor.config["processing"]["max_parallel"] = 2
    processor.start()
    failing = processor.add_task(tiny_series, ["box"], settings={"behaviour": "fail"})
    hanging = processor.add_task(tiny_series, ["stuck"], settings={"behaviour": "hang"})
    for task_id, reason in ((failing, "exit code 1"), (hanging, "timeout after 2 s")):
        folder = processor.wait_for(task_id, Stage.ERROR, timeout=60)
        assert reason in json.loads((folder / "error.json").read_text())["reason"]
        assert len(list(folder.glob("*.dcm"))) == len(tiny_series)
        assert not _containers(podman, task_id)


def test_killed_processor_container_is_removed_and_task_reruns(
    processor: Processor, podman: PodmanService, tiny_series: GeneratedSeries, tmp_path: Path
) -> None:
    """kill -9 while a container runs: on restart it is removed and the task runs again."""
    _use_podman(processor, podman, timeout=300)
    processor.start()
    task_id = processor.add_task(tiny_series, ["box"], settings={"behaviour": "hang"})
    wait_until(lambda: _containers(podman, task_id), 60)
    processor.kill()
    assert _containers(podman, task_id)
    # The next run of the same task must finish: make the rerun copy instead of hanging.
    task_file = processor.data.stage(Stage.PROCESSING) / task_id / "task.json"
    task_file.write_text(task_file.read_text().replace('"hang"', '"copy"'))
    processor.start()
    processor.wait_for(task_id, Stage.SUCCESS, timeout=60)
    assert not _containers(podman, task_id)


def test_container_module_is_confined_to_its_output_and_tmp(
    processor: Processor, podman: PodmanService, tiny_series: GeneratedSeries
) -> None:
    """Even run as root, a module cannot write to its root filesystem, use a capability (chown,
    chroot) or gain privileges; it can write its output and /tmp, and a normal module works."""
    _use_podman(processor, podman, requires_root=True)
    processor.config["processing"]["allow_root"] = True
    processor.start()
    probing = processor.add_task(tiny_series, ["box"], settings={"behaviour": "probe"})
    copying = processor.add_task(tiny_series, ["box"], settings={"label": "still works"})
    probed = processor.wait_for(probing, Stage.SUCCESS, timeout=60)
    result = json.loads((probed / "result.json").read_text())
    assert result == {
        "root_write": "denied",
        "tmp_write": "allowed",
        "out_write": "allowed",
        "chown": "denied",
        "chroot": "denied",
        "no_new_privs": "1",
        "cap_eff": "0000000000000000",
        "uid": "0",
    }
    folder = processor.wait_for(copying, Stage.SUCCESS, timeout=60)
    assert json.loads((folder / "result.json").read_text())["label"] == "still works"
    assert len(list(folder.glob("*.dcm"))) == len(tiny_series)
