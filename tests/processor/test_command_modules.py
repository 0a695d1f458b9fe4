"""The processor with command modules: success, chains, failures, timeouts, parallel jobs."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pydicom
from processor_harness import Processor, command_module, module_names

from mercure.core.datafolder import Stage
from mercure.core.task import read_task
from mercure.testing.series import GeneratedSeries
from mercure.testing.wait import wait_until


def test_command_module_output_goes_to_success_with_result(
    processor: Processor, tiny_series: GeneratedSeries
) -> None:
    """A command module's output and result.json replace the input; no targets -> success/."""
    processor.config["modules"]["copy"] = command_module("behave.py", settings={"prefix": "x"})
    processor.start()
    task_id = processor.add_task(tiny_series, ["copy"], settings={"prefix": "out-"})
    folder = processor.wait_for(task_id, Stage.SUCCESS)
    names = sorted(p.name for p in folder.glob("*.dcm"))
    assert names == module_names(tiny_series, "out-")
    result = json.loads((folder / "result.json").read_text())
    assert result["settings"] == {"prefix": "out-"}  # the task's merged settings
    assert read_task(folder).process[0].output == result
    log = (folder / "logs" / "processing-1-copy.log").read_text()
    assert f"copied {2 * len(tiny_series)} files" in log  # each instance and its .tags
    wait_until(lambda: not list(processor.data.stage(Stage.PROCESSING).iterdir()))
    events = processor.events("task.process.log")
    assert "copied" in events[0]["data"]["log"]
    assert processor.events("task.process.result")[0]["data"]["result"] == result


def test_task_with_targets_goes_to_outgoing(
    processor: Processor, tiny_series: GeneratedSeries
) -> None:
    """A processed task whose rule has targets is handed to the dispatcher."""
    processor.config["modules"]["copy"] = command_module("behave.py")
    processor.start()
    task_id = processor.add_task(tiny_series, ["copy"], targets=["pacs"])
    folder = processor.wait_for(task_id, Stage.OUTGOING)
    assert len(list(folder.glob("*.dcm"))) == len(tiny_series)


def test_chain_feeds_each_output_to_the_next_module(
    processor: Processor, tiny_series: GeneratedSeries
) -> None:
    """Two modules in a chain: the second sees the first's output, each its own settings."""
    processor.config["modules"]["first"] = command_module("behave.py")
    processor.config["modules"]["second"] = command_module("behave.py")
    processor.start()
    task_id = processor.add_task(tiny_series, ["first", "second"], settings={"prefix": "p-"})
    folder = processor.wait_for(task_id, Stage.SUCCESS)
    names = sorted(p.name for p in folder.glob("*.dcm"))
    assert names == module_names(tiny_series, "p-p-")
    task = read_task(folder)
    assert [p.output["module"] for p in task.process if p.output] == ["first", "second"]
    assert {p.name for p in (folder / "logs").iterdir()} == {
        "processing-1-first.log",
        "processing-2-second.log",
    }


def test_retained_input_images_sit_beside_the_output(
    processor: Processor, tiny_series: GeneratedSeries
) -> None:
    """retain_input_images keeps the original instances next to the module's output."""
    processor.config["modules"]["copy"] = command_module("behave.py")
    processor.start()
    task_id = processor.add_task(tiny_series, ["copy"], settings={"prefix": "new-"}, retain=True)
    folder = processor.wait_for(task_id, Stage.SUCCESS)
    originals = {p.name for p in tiny_series.paths}
    assert {p.name for p in folder.glob("*.dcm")} == originals | set(
        module_names(tiny_series, "new-")
    )


def _assert_failed_with_input_kept(
    processor: Processor, task_id: str, series: GeneratedSeries, reason: str
) -> Path:
    folder = processor.wait_for(task_id, Stage.ERROR)
    error = json.loads((folder / "error.json").read_text())
    assert error["fail_stage"] == "processing"
    assert reason in error["reason"]
    assert read_task(folder).info.reason == error["reason"]
    for original in series.paths:
        assert (folder / original.name).read_bytes() == original.read_bytes()
    assert not (folder / ".processor").exists()
    return folder


def test_failing_module_sends_task_to_error_with_input(
    processor: Processor, tiny_series: GeneratedSeries
) -> None:
    """A module exiting 1 fails the task; reason, log and the original input are kept."""
    processor.config["modules"]["bad"] = command_module("behave.py")
    processor.start()
    task_id = processor.add_task(tiny_series, ["bad"], settings={"behaviour": "fail"})
    folder = _assert_failed_with_input_kept(processor, task_id, tiny_series, "exit code 1")
    assert "something went wrong" in (folder / "logs" / "processing-1-bad.log").read_text()
    # The task reaches error/ a moment before its event is written.
    wait_until(lambda: processor.events("task.process.error"), timeout=10)


def test_hanging_module_is_killed_at_its_timeout(
    processor: Processor, tiny_series: GeneratedSeries, tmp_path: Path
) -> None:
    """A module running past its timeout is killed and the task fails with the reason."""
    pid_file = tmp_path / "pid"
    processor.config["modules"]["stuck"] = {
        "runner": "command",
        "command": ["/bin/sh", "-c", f"echo $$ > {pid_file}; exec sleep 3600"],
        "timeout": 1,
    }
    processor.start()
    task_id = processor.add_task(tiny_series, ["stuck"])
    _assert_failed_with_input_kept(processor, task_id, tiny_series, "timeout after 1 s")
    assert not Path(f"/proc/{pid_file.read_text().strip()}").exists()


def test_module_writing_nothing_fails_the_task_when_configured(
    processor: Processor, tiny_series: GeneratedSeries
) -> None:
    """With empty_output 'error', exit 0 without any output is a failure."""
    processor.config["modules"]["quiet"] = command_module("behave.py")
    processor.config["processing"]["empty_output"] = "error"
    processor.start()
    task_id = processor.add_task(tiny_series, ["quiet"], settings={"behaviour": "nothing"})
    _assert_failed_with_input_kept(processor, task_id, tiny_series, "wrote nothing")


def test_module_writing_nothing_completes_the_task_as_mercure_does(
    processor: Processor, tiny_series: GeneratedSeries
) -> None:
    """By default a module that writes nothing completes its task: nothing to send, success/."""
    processor.config["modules"]["quiet"] = command_module("behave.py")
    processor.start()
    task_id = processor.add_task(
        tiny_series, ["quiet"], settings={"behaviour": "nothing"}, targets=["pacs"]
    )
    folder = processor.wait_for(task_id, Stage.SUCCESS)
    assert not list(folder.glob("*.dcm"))
    assert read_task(folder).dispatch is None


def test_unknown_module_fails_the_task(processor: Processor, tiny_series: GeneratedSeries) -> None:
    """A task naming a module that is not configured fails with that reason."""
    processor.start()
    task_id = processor.add_task(tiny_series, ["missing"])
    _assert_failed_with_input_kept(processor, task_id, tiny_series, "module missing is not")


def test_two_tasks_run_in_parallel(
    processor: Processor, tiny_series: GeneratedSeries, tmp_path: Path
) -> None:
    """With max_parallel 2 two modules run at the same time (each waits for the other)."""
    processor.config["processing"]["max_parallel"] = 2
    processor.config["modules"]["meet"] = command_module("behave.py", timeout=30)
    processor.start()
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    settings = {"behaviour": "barrier", "barrier": str(barrier), "count": 2}
    tasks = [processor.add_task(tiny_series, ["meet"], settings=settings) for _ in range(2)]
    for task_id in tasks:
        processor.wait_for(task_id, Stage.SUCCESS)


def test_urgent_task_runs_before_older_normal_ones(
    processor: Processor, tiny_series: GeneratedSeries
) -> None:
    """Queued tasks run urgent first, then by age; offpeak waits outside its window."""
    processor.config["modules"]["copy"] = command_module("behave.py")
    now_hour = datetime.now().hour
    # A window that is certainly closed now.
    processor.config["offpeak"] = {
        "start": f"{(now_hour + 2) % 24:02d}:00",
        "end": f"{(now_hour + 3) % 24:02d}:00",
    }
    normal = processor.add_task(tiny_series, ["copy"])
    offpeak = processor.add_task(tiny_series, ["copy"], priority="offpeak")
    urgent = processor.add_task(tiny_series, ["copy"], priority="urgent")
    processor.start()
    processor.wait_for(normal, Stage.SUCCESS)
    begins = [e["task_id"] for e in processor.events("task.process.begin")]
    assert begins == [urgent, normal]
    assert processor.where(offpeak) == Stage.PROCESSING


def test_offpeak_task_runs_inside_its_window(
    processor: Processor, tiny_series: GeneratedSeries
) -> None:
    """An offpeak task runs when the off-peak window is open."""
    processor.config["modules"]["copy"] = command_module("behave.py")
    now_hour = datetime.now().hour
    processor.config["offpeak"] = {
        "start": f"{now_hour:02d}:00",
        "end": f"{(now_hour + 1) % 24:02d}:59",
    }
    processor.start()
    task_id = processor.add_task(tiny_series, ["copy"], priority="offpeak")
    processor.wait_for(task_id, Stage.SUCCESS)


def test_paused_queue_starts_nothing_until_resumed(
    processor: Processor, tiny_series: GeneratedSeries
) -> None:
    """While processing is paused tasks wait; after resume they run."""
    processor.config["modules"]["copy"] = command_module("behave.py")
    processor.data.pause(Stage.PROCESSING)
    task_id = processor.add_task(tiny_series, ["copy"])
    processor.start()
    wait_until(lambda: processor.events("processor.paused"), 20)
    assert processor.events("processor.paused")[0]["data"]["waiting"] == 1
    assert processor.where(task_id) == Stage.PROCESSING
    processor.data.resume(Stage.PROCESSING)
    processor.wait_for(task_id, Stage.SUCCESS)


def test_pydicom_reads_processed_output(processor: Processor, tiny_series: GeneratedSeries) -> None:
    """The output files are intact DICOM."""
    processor.config["modules"]["copy"] = command_module("behave.py")
    processor.start()
    folder = processor.wait_for(processor.add_task(tiny_series, ["copy"]), Stage.SUCCESS)
    for path in folder.glob("*.dcm"):
        assert pydicom.dcmread(path).SeriesInstanceUID == tiny_series.series_uid
