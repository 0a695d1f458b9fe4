"""mercure's module contract, end to end through the processor (and the dispatcher).

``modules/mercure_contract.py`` makes the checks mercure's template module makes; it runs
unchanged in the command runner and in the docker runner (Podman). ``MercureTask`` below is
written from the fields of mercure's own Task model (its ``common/types.py``, 0.4.x) and
validates the task.json a module is given.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

import pytest
from processor_harness import MODULE_IMAGE, MODULES, Processor, command_module
from pydantic import BaseModel, ConfigDict

from mercure.core.datafolder import Stage
from mercure.core.task import read_task
from mercure.testing.podman import PodmanService
from mercure.testing.series import GeneratedSeries


class MercureTaskInfo(BaseModel):
    action: Literal["route", "both", "process", "discard", "notification"]
    uid: str
    uid_type: Literal["series", "study"]
    triggered_rules: dict[str, Literal[True]] | str
    applied_rule: str | None
    patient_name: str | None
    mrn: str
    acc: str
    sender_address: str
    mercure_version: str
    mercure_appliance: str
    mercure_server: str
    device_serial_number: str | None = None


class MercureTaskDispatch(BaseModel):
    target_name: str | list[str]
    retries: int | None = 0
    next_retry_at: float | None = 0
    series_uid: str | None


class MercureTaskStudy(BaseModel):
    study_uid: str
    complete_trigger: str | None
    complete_required_series: str
    creation_time: str
    last_receive_time: str
    received_series: list[str] | None
    received_series_uid: list[str] | None
    complete_force: bool = False


class MercureModule(BaseModel):
    docker_tag: str | None = ""
    additional_volumes: str | None = ""
    environment: str | None = ""
    docker_arguments: str | None = ""
    settings: dict[str, Any] = {}
    contact: str | None = ""
    comment: str | None = ""
    constraints: str | None = ""
    resources: str | None = ""
    requires_root: bool | None = False


class MercureTaskProcessing(BaseModel):
    module_name: str
    module_config: MercureModule | None
    settings: dict[str, Any] = {}
    retain_input_images: bool
    output: dict[str, Any] | None


class MercureEmpty(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MercureTask(BaseModel):
    """mercure's Task: nothing but these fields at the top level (``extra = "forbid"``)."""

    model_config = ConfigDict(extra="forbid")

    info: MercureTaskInfo
    id: str
    dispatch: MercureTaskDispatch | MercureEmpty = MercureEmpty()
    process: MercureTaskProcessing | MercureEmpty | list[MercureTaskProcessing] = MercureEmpty()
    study: MercureTaskStudy | MercureEmpty = MercureEmpty()
    nomad_info: Any | None = None


def _names(folder: Path, suffix: str) -> list[str]:
    return sorted(p.name for p in folder.glob(f"*{suffix}"))


def test_mercure_module_runs_unchanged_in_the_command_runner(
    processor: Processor, tiny_series: GeneratedSeries
) -> None:
    """The contract module's checks pass; its renamed series goes on; task.json is mercure's."""
    processor.config["modules"]["contract"] = command_module("mercure_contract.py")
    processor.config["router"] = {"additional_tags": {"0019,100c": "B value", "StudyDate": ""}}
    processor.start()
    task_id = processor.add_task(tiny_series, ["contract"], settings={"keep_task": True})
    folder = processor.wait_for(task_id, Stage.SUCCESS)
    result = json.loads((folder / "result.json").read_text())
    assert result["instances"] == len(tiny_series)
    assert {"(0019,100c)", "StudyDate", "Filename", "SenderAET"} <= set(result["tag_keys"])
    assert result["series"] == [tiny_series.series_uid]
    new_series = tiny_series.series_uid + ".1"
    assert _names(folder, ".dcm") == sorted(
        f"{new_series}#{i.sop_instance_uid}.dcm" for i in tiny_series.instances
    )
    assert len(_names(folder, ".tags")) == len(tiny_series)
    seen = json.loads((folder / "seen-task.json").read_text())
    MercureTask.model_validate(seen)
    assert seen["study"] == {} and isinstance(seen["process"], dict)
    assert seen["process"]["module_config"]["environment"] == ""  # no secrets in task.json
    assert read_task(folder).process[0].output == result


def test_module_changing_its_input_changes_no_shared_file(
    processor: Processor, tiny_series: GeneratedSeries, tmp_path: Path
) -> None:
    """A module appending to its input files leaves the task's and other tasks' files intact."""
    processor.config["modules"]["contract"] = command_module("mercure_contract.py")
    task_id = processor.add_task(
        tiny_series, ["contract"], settings={"append_to_input": True}, retain=True
    )
    task_dir = processor.data.stage(Stage.PROCESSING) / task_id
    shared = tmp_path / "other-task"
    shared.mkdir()
    originals = {}
    for path in sorted(task_dir.glob("*.dcm")):
        os.link(path, shared / path.name)  # as the router links one series into two tasks
        originals[path.name] = path.read_bytes()
    processor.start()
    folder = processor.wait_for(task_id, Stage.SUCCESS)
    for name, content in originals.items():
        assert (shared / name).read_bytes() == content
        assert (folder / name).read_bytes() == content  # the retained input
    for path in folder.glob("*#*.dcm"):
        assert not path.read_bytes().endswith(b"changed by the module")


def test_persistence_folder_is_kept_across_tasks(
    processor: Processor, tiny_series: GeneratedSeries
) -> None:
    """requires_persistence: the same folder per module, under processing.persistence_dir."""
    persistence = processor.root / "persistence"
    processor.config["processing"]["persistence_dir"] = str(persistence)
    processor.config["modules"]["contract"] = command_module(
        "mercure_contract.py", requires_persistence=True
    )
    processor.start()
    runs = []
    for _ in range(2):
        task_id = processor.add_task(tiny_series, ["contract"], settings={"persistence": True})
        folder = processor.wait_for(task_id, Stage.SUCCESS)
        runs.append(json.loads((folder / "result.json").read_text())["runs"])
    assert runs == [1, 2]
    assert (persistence / "contract" / "runs").read_text() == "2"


def _routing_site(processor: Processor, tmp_path: Path, **rule: Any) -> None:
    """Targets pacs and research, the contract module, and rule ``dyn`` sending to pacs."""
    processor.config["targets"] = {
        "pacs": {"type": "folder", "folder": str(tmp_path / "pacs")},
        "research": {"type": "folder", "folder": str(tmp_path / "research")},
    }
    processor.config["modules"]["contract"] = command_module("mercure_contract.py")
    processor.config["rules"] = {
        "dyn": {
            "rule": "False",
            "action": "both",
            "targets": ["pacs"],
            "processing_module": ["contract"],
            **rule,
        }
    }


def _routed(processor: Processor, series: GeneratedSeries, routing: dict[str, Any]) -> str:
    return processor.add_task(
        series, ["contract"], settings={"routing": routing}, targets=["pacs"], rule="dyn"
    )


def test_dynamic_routing_to_an_allowed_target(
    processor: Processor, tiny_series: GeneratedSeries, tmp_path: Path
) -> None:
    """With the rule's dynamic_routing, __mercure_routing replaces the task's targets."""
    _routing_site(
        processor, tmp_path, dynamic_routing=True, dynamic_routing_allowed_targets=["research"]
    )
    processor.start()
    task_id = _routed(processor, tiny_series, {"target": "research"})
    folder = processor.wait_for(task_id, Stage.OUTGOING)
    dispatch = read_task(folder).dispatch
    assert dispatch is not None and dispatch.target_name == ["research"]


def test_dynamic_routing_is_ignored_unless_the_rule_allows_it(
    processor: Processor, tiny_series: GeneratedSeries, tmp_path: Path
) -> None:
    """Without dynamic_routing on the task's rule, a module cannot redirect or discard it."""
    _routing_site(processor, tmp_path)
    processor.start()
    redirected = _routed(processor, tiny_series, {"target": "research"})
    discarded = _routed(processor, tiny_series, {"discard": True})
    for task_id in (redirected, discarded):
        dispatch = read_task(processor.wait_for(task_id, Stage.OUTGOING)).dispatch
        assert dispatch is not None and dispatch.target_name == ["pacs"]


def test_dynamic_routing_outside_the_allowed_or_configured_targets_fails_the_task(
    processor: Processor, tiny_series: GeneratedSeries, tmp_path: Path
) -> None:
    """A module cannot route where the rule does not allow or the configuration lacks."""
    _routing_site(
        processor, tmp_path, dynamic_routing=True, dynamic_routing_allowed_targets=["research"]
    )
    processor.start()
    not_allowed = _routed(processor, tiny_series, {"target": ["pacs"]})
    unknown = _routed(processor, tiny_series, {"target": ["elsewhere"]})
    reasons = [
        json.loads((processor.wait_for(task_id, Stage.ERROR) / "error.json").read_text())["reason"]
        for task_id in (not_allowed, unknown)
    ]
    assert "'pacs'" in reasons[0] and "does not allow" in reasons[0]
    assert "'elsewhere'" in reasons[1] and "does not have" in reasons[1]


def _mercure_task_json(task_id: str, series: GeneratedSeries, **parts: Any) -> dict[str, Any]:
    """A task.json as mercure 0.4.1 writes it."""
    return {
        "info": {
            "action": "both",
            "uid": series.series_uid,
            "uid_type": "series",
            "triggered_rules": {"all": True},
            "applied_rule": "all",
            "patient_name": "TEST^PATIENT",
            "mrn": series.patient_id,
            "acc": series.accession_number,
            "sender_address": "127.0.0.1",
            "mercure_version": "0.4.1",
            "mercure_appliance": "master",
            "mercure_server": "mercure-host",
            "device_serial_number": None,
        },
        "id": task_id,
        "dispatch": {},
        "process": {},
        "study": {},
        "nomad_info": None,
        **parts,
    }


def _place_mercure_task(stage_dir: Path, task_id: str, series: GeneratedSeries, doc: Any) -> None:
    staging = stage_dir.parent / f"staging-{task_id}"
    staging.mkdir()
    for instance in series.instances:
        name = f"{series.series_uid}#{instance.sop_instance_uid}"
        shutil.copyfile(instance.path, staging / f"{name}.dcm")
        (staging / f"{name}.tags").write_text(json.dumps({"SeriesInstanceUID": "x"}))
    (staging / "task.json").write_text(json.dumps(doc, indent=4))
    staging.rename(stage_dir / task_id)


def test_mercure_task_folders_are_processed_and_dispatched(
    processor: Processor, tiny_series: GeneratedSeries, tmp_path: Path
) -> None:
    """Task folders moved over from mercure (its task.json, '#' names, .tags) go on here."""
    processor.config["targets"] = {"out": {"type": "folder", "folder": str(tmp_path / "out")}}
    processor.config["modules"]["copy"] = command_module("behave.py")
    processor.start()
    processor.start_dispatcher()
    dispatch = {"target_name": "out", "retries": None, "next_retry_at": 0, "series_uid": "1.2"}
    process = {
        "module_name": "copy",
        "module_config": {"docker_tag": "", "settings": {}},
        "settings": {"prefix": "p-"},
        "retain_input_images": False,
        "output": None,
    }
    processing_id, outgoing_id = "mercure-processing-task", "mercure-outgoing-task"
    doc = _mercure_task_json(processing_id, tiny_series, dispatch=dispatch, process=process)
    _place_mercure_task(processor.data.stage(Stage.PROCESSING), processing_id, tiny_series, doc)
    doc = _mercure_task_json(outgoing_id, tiny_series, dispatch=dispatch)
    doc["info"]["action"], doc["info"]["triggered_rules"] = "route", "all"
    _place_mercure_task(processor.data.stage(Stage.OUTGOING), outgoing_id, tiny_series, doc)
    for task_id, prefix in ((processing_id, "p-"), (outgoing_id, "")):
        processor.wait_for(task_id, Stage.SUCCESS, timeout=30)
        sent = tmp_path / "out" / task_id
        assert _names(sent, ".dcm") == sorted(
            f"{prefix}{tiny_series.series_uid}#{i.sop_instance_uid}.dcm"
            for i in tiny_series.instances
        )
        assert not _names(sent, ".tags")  # per-instance tags are no instances


@pytest.mark.peers
@pytest.mark.slow
def test_mercure_module_runs_unchanged_in_the_docker_runner(
    processor: Processor, podman: PodmanService, tiny_series: GeneratedSeries
) -> None:
    """The same contract module in a container (this Python mounted read-only into it)."""
    base = Path(sys.base_prefix)
    if base.is_relative_to("/usr"):
        pytest.skip("needs a Python outside /usr to mount beside the system libraries")
    mounts = [Path("/usr"), base, MODULES]
    volumes = [{"source": str(p), "target": str(p)} for p in mounts]
    volumes += [
        {"source": f"/usr/{lib}", "target": f"/{lib}"}
        for lib in ("lib", "lib64")
        if Path(f"/usr/{lib}").is_dir()
    ]
    python = Path(sys.executable).resolve()
    processor.config["processing"] |= {"docker_url": podman.url, "volume_root": "/"}
    processor.config["modules"]["contract"] = {
        "runner": "docker",
        "image": MODULE_IMAGE,
        "command": [str(python), str(MODULES / "mercure_contract.py")],
        "volumes": volumes,
        "timeout": 60,
    }
    processor.start()
    task_id = processor.add_task(tiny_series, ["contract"], settings={"keep_task": True})
    folder = processor.wait_for(task_id, Stage.SUCCESS, timeout=60)
    result = json.loads((folder / "result.json").read_text())
    assert result["instances"] == len(tiny_series)
    assert len(_names(folder, ".dcm")) == len(tiny_series)
    seen = json.loads((folder / "seen-task.json").read_text())
    MercureTask.model_validate(seen)
    assert seen["process"]["module_config"]["docker_tag"] == MODULE_IMAGE
