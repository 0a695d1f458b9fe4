"""One processing job: run a task's module chain and hand the task on, or fail it.

The per-task error boundary is here: a :class:`PermanentError` (module failed, timed out, wrote
nothing, misconfigured) moves the task to ``error/`` with the reason and its original input; a
:class:`TransientError` (Docker API down) leaves it in ``processing/`` for a later attempt.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mercure.core.atomic import atomic_write_json
from mercure.core.clock import utcnow
from mercure.core.config.models import DockerModule, MercureConfig, Module
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.errors import PermanentError
from mercure.core.events import EventClient
from mercure.core.notifications.triggers import notify_safely
from mercure.core.task import (
    TASK_FILE,
    Task,
    TaskDispatch,
    TaskProcessing,
    event_uids,
    fail_and_report,
    module_document,
    read_task,
    write_task,
)
from mercure.processor import moduleinput, workspace
from mercure.processor.runners import JobRecorder, Runner, RunRequest

log = logging.getLogger(__name__)

LOG_EVENT_LIMIT = 64 * 1024
"""Bytes of a module's log sent with its event; the whole log stays with the task."""


@dataclass
class JobContext:
    """What a job needs from the service: folders, modules, runners and the event client."""

    data: DataFolder
    modules: Mapping[str, Module]
    runners: Mapping[str, Runner]
    events: EventClient
    instance: str
    config: MercureConfig | None = None
    """The configuration in force, for the task's notifications (none are queued without)."""

    def persistence_root(self) -> Path:
        """Where the persistence folders of modules are (processing.persistence_dir)."""
        configured = self.config.processing.persistence_dir if self.config else None
        return configured if configured is not None else self.data.root / "persistence"

    def empty_output(self) -> str:
        """What a module that writes nothing means for its task (processing.empty_output)."""
        return self.config.processing.empty_output if self.config else "complete"


class ModuleFailed(PermanentError):
    """A module ran and failed (exit code, timeout, nothing written, bad result.json)."""


def stop_leftovers(ctx: JobContext, task_dir: Path) -> None:
    """Stop what a killed processor left running for this task and drop its work area."""
    work = task_dir / workspace.WORK_DIR
    record = workspace.read_job_record(work)
    if record is not None:
        runner = ctx.runners.get(str(record.get("runner")))
        if runner is not None:
            runner.stop_orphans(task_dir.name, record)
        ctx.events.emit(
            "task.process.recovered",
            severity="warning",
            task_id=task_dir.name,
            message="a previous processor died while running this task; it runs again",
        )
    if work.exists():
        workspace.remove_tree(work)


def run_job(ctx: JobContext, task_dir: Path) -> Path:
    """Process the task in ``task_dir`` (claimed by the caller); returns where it went."""
    task_id = task_dir.name
    stop_leftovers(ctx, task_dir)
    work = task_dir / workspace.WORK_DIR
    logs: list[Path] = []
    try:
        task = read_task(task_dir)
        if not task.process:
            raise PermanentError("the task names no processing module")
        series_uid, study_uid = event_uids(task)
        ctx.events.emit(
            "task.process.begin",
            task_id=task_id,
            series_uid=series_uid,
            study_uid=study_uid,
            message="processing with " + " -> ".join(p.module_name for p in task.process),
            module=task.process[0].module_name,
            modules=[p.module_name for p in task.process],
            stage=Stage.PROCESSING.value,
        )
        work.mkdir()
        final_out = _run_chain(ctx, task_dir, task, work, logs)
        _apply_routing(ctx, task)
        final = _finish(ctx, task_dir, task, final_out, logs)
    except PermanentError as exc:
        return _fail(ctx, task_dir, str(exc), logs)
    return final


def report_complete(
    events: EventClient, task: Task, final: Path, *, time: datetime | None = None
) -> None:
    """Tell the bookkeeper a task was processed and handed on to ``final``.

    The event carries the task document as handed on (each module's result in
    ``process[].output``) and its stage now; a task without targets is finished here, which
    ``task.completed`` says.
    """
    series_uid, study_uid = event_uids(task)
    document = task.model_dump(mode="json")
    stage = final.parent.name
    events.emit(
        "task.process.complete",
        task_id=final.name,
        series_uid=series_uid,
        study_uid=study_uid,
        message=f"processed; now in {stage}/",
        time=time,
        task=document,
        stage=stage,
        results=[
            {"module": p.module_name, "result": p.output}
            for p in task.process
            if p.output is not None
        ],
    )
    if stage == Stage.SUCCESS.value:
        events.emit(
            "task.completed",
            task_id=final.name,
            series_uid=series_uid,
            study_uid=study_uid,
            message="processed; no dispatch target",
            task=document,
            stage=stage,
        )


def _run_chain(ctx: JobContext, task_dir: Path, task: Task, work: Path, logs: list[Path]) -> Path:
    in_dir = work / "1-in"
    in_dir.mkdir()
    # Copies, never the task's hard links: a module may change its input (docs/modules.md).
    additional = ctx.config.router.additional_tags if ctx.config is not None else {}
    moduleinput.prepare_input(workspace.input_files(task_dir), in_dir, task.info, additional)
    out_dir = in_dir
    for step, processing in enumerate(task.process, 1):
        name = processing.module_name
        module = ctx.modules.get(name)
        if module is None:
            raise PermanentError(f"module {name} is not configured")
        if step > 1:
            # The previous module's output is this one's input.
            in_dir = work / f"{step}-in"
            os.rename(out_dir, in_dir)
        out_dir = work / f"{step}-out"
        out_dir.mkdir()
        moduleinput.make_writable(in_dir)
        # The router merges already; a task made another way still gets the module defaults.
        processing.settings = {**module.settings, **processing.settings}
        (in_dir / TASK_FILE).unlink(missing_ok=True)  # the previous module's copy
        _write_module_task(in_dir, task, processing, module)
        persistence = None
        if module.requires_persistence:
            persistence = ctx.persistence_root() / name
            persistence.mkdir(parents=True, exist_ok=True)
        log_path = work / f"{step}-{name}.log"
        logs.append(log_path)
        request = RunRequest(
            task_id=task_dir.name,
            step=step,
            module_name=name,
            module=module,
            in_dir=in_dir,
            out_dir=out_dir,
            log_path=log_path,
            record=_recorder(work, step, ctx.instance),
            persistence_dir=persistence,
        )
        started_at = utcnow()
        outcome = ctx.runners[module.runner].run(request)
        (work / workspace.JOB_FILE).unlink(missing_ok=True)
        run = _ModuleRun(name, log_path, outcome.exit_code, started_at)
        try:
            if outcome.timed_out:
                raise ModuleFailed(f"module {name}: timeout after {module.timeout:g} s")
            if outcome.exit_code != 0:
                raise ModuleFailed(f"module {name} failed with exit code {outcome.exit_code}")
            (out_dir / TASK_FILE).unlink(missing_ok=True)
            if not any(out_dir.iterdir()):
                if ctx.empty_output() == "error":
                    raise ModuleFailed(
                        f"module {name} wrote nothing (no output files, no result.json; "
                        "processing.empty_output is 'error')"
                    )
                log.info("task %s: module %s wrote nothing", task_dir.name, name)
            processing.output = _read_result(name, out_dir)
            run.success = True
        finally:
            # One event per run, failed or not: the bookkeeper stores it with log and result.
            _report_log(ctx, task_dir.name, task, run, processing.output if run.success else None)
        if processing.output is not None:
            series_uid, study_uid = event_uids(task)
            ctx.events.emit(
                "task.process.result",
                task_id=task_dir.name,
                series_uid=series_uid,
                study_uid=study_uid,
                module=name,
                result=processing.output,
            )
    return out_dir


def _recorder(work: Path, step: int, instance: str) -> JobRecorder:
    def record(values: dict[str, Any]) -> None:
        workspace.write_job_record(
            work, {**values, "step": step, "instance": instance, "host": socket.gethostname()}
        )

    return record


def _write_module_task(
    in_dir: Path, task: Task, processing: TaskProcessing, module: Module
) -> None:
    # mercure's modules read process.settings from a single object: give each module its own.
    document = module_document(task, processing, _module_config(module))
    atomic_write_json(in_dir / TASK_FILE, document, fsync=False)


def _module_config(module: Module) -> dict[str, Any]:
    """The module as mercure's task.json shows it (``process.module_config``).

    Its environment is left out: it may hold the secrets of the installation.
    """
    docker = module if isinstance(module, DockerModule) else None
    arguments = docker.docker_arguments if docker is not None else {}
    return {
        "docker_tag": docker.image if docker is not None else "",
        "additional_volumes": "",
        "environment": "",
        "docker_arguments": json.dumps(arguments) if arguments else "",
        "settings": module.settings,
        "contact": "",
        "comment": module.comment,
        "constraints": docker.constraints if docker is not None else "",
        "resources": docker.resources if docker is not None else "",
        "requires_root": docker.requires_root if docker is not None else False,
        "requires_persistence": module.requires_persistence,
    }


ROUTING_KEY = "__mercure_routing"


def _apply_routing(ctx: JobContext, task: Task) -> None:
    """Follow the last module's ``__mercure_routing``: new targets, or no dispatch at all.

    ``{"target": "pacs"}`` or ``{"target": ["pacs", "archive"]}`` replaces the task's targets;
    ``{"discard": true}`` sends it nowhere (it ends in success/, as in mercure). Only when the
    task's rule has ``dynamic_routing`` (else the key is ignored, as in mercure), and only to
    targets the configuration has and the rule's ``dynamic_routing_allowed_targets`` (when
    given) lists: a module cannot make the router send anywhere else.
    """
    output = task.process[-1].output if task.process else None
    directive = output.get(ROUTING_KEY) if output else None
    if directive is None:
        return
    module = task.process[-1].module_name
    rule_name = task.info.applied_rule
    rule = ctx.config.rules.get(rule_name) if ctx.config is not None and rule_name else None
    if rule is None or not rule.dynamic_routing:
        log.warning(
            "task %s: module %s asks for %s, ignored: rule %s does not have dynamic_routing",
            task.id,
            module,
            ROUTING_KEY,
            rule_name or "(none)",
        )
        return
    if not isinstance(directive, dict):
        raise ModuleFailed(f"module {module}: {ROUTING_KEY} in result.json is not an object")
    if directive.get("discard") is True:
        log.info("task %s: module %s asked for no dispatch", task.id, module)
        task.dispatch = None
        return
    requested = directive.get("target")
    if requested is None or requested == [] or requested == "":
        return
    names = [requested] if isinstance(requested, str) else requested
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModuleFailed(
            f"module {module}: {ROUTING_KEY}.target must be a target name or a list of names"
        )
    known = ctx.config.targets if ctx.config is not None else {}
    refused = [name for name in names if name not in known]
    if refused:
        raise ModuleFailed(
            f"module {module}: {ROUTING_KEY} asks for target(s) "
            + ", ".join(repr(n) for n in refused)
            + " that the configuration does not have"
        )
    allowed = rule.dynamic_routing_allowed_targets
    refused = [name for name in names if allowed and name not in allowed]
    if refused:
        raise ModuleFailed(
            f"module {module}: {ROUTING_KEY} asks for target(s) "
            + ", ".join(repr(n) for n in refused)
            + f" that rule {rule_name} does not allow (dynamic_routing_allowed_targets)"
        )
    log.info("task %s: module %s routes it to %s", task.id, module, ", ".join(names))
    previous = task.dispatch
    task.dispatch = TaskDispatch(
        target_name=list(dict.fromkeys(names)),
        series_uid=previous.series_uid if previous is not None else None,
    )


def _read_result(module_name: str, out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / workspace.RESULT_FILE
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModuleFailed(f"module {module_name}: result.json is not valid JSON: {exc}") from None
    return result if isinstance(result, dict) else {"result": result}


@dataclass
class _ModuleRun:
    """One run of one module, as reported to the bookkeeper."""

    module: str
    log_path: Path
    exit_code: int | None
    started_at: datetime
    success: bool = False


def _report_log(
    ctx: JobContext, task_id: str, task: Task, run: _ModuleRun, result: dict[str, Any] | None
) -> None:
    try:
        text = run.log_path.read_bytes()[-LOG_EVENT_LIMIT:].decode("utf-8", "replace")
    except FileNotFoundError:
        text = ""
    series_uid, study_uid = event_uids(task)
    ctx.events.emit(
        "task.process.log",
        task_id=task_id,
        series_uid=series_uid,
        study_uid=study_uid,
        message=f"module {run.module} ended with exit code {run.exit_code}",
        module=run.module,
        exit_code=run.exit_code,
        success=run.success,
        started_at=run.started_at.isoformat(),
        log=text,
        result=result,
    )


def _finish(ctx: JobContext, task_dir: Path, task: Task, final_out: Path, logs: list[Path]) -> Path:
    done = task_dir.with_name(workspace.DONE_PREFIX + task_dir.name)
    workspace.remove_tree(done)
    os.rename(final_out, done)
    if any(p.retain_input_images for p in task.process):
        workspace.link_files(workspace.input_files(task_dir), done)
    if task.dispatch is not None and not any(done.glob("*" + moduleinput.DICOM_SUFFIX)):
        # processing.empty_output 'complete': nothing to send, so the task ends in success/.
        log.info("task %s: no DICOM output, nothing to dispatch", task.id)
        task.dispatch = None
    _keep_logs(logs, done)
    write_task(done, task)
    # Reported before the hand-over: once the task is in its next stage (success/, for a task
    # without targets) nothing would report it again. Killed before the hand-over, the task is
    # processed again and reported again; the bookkeeper keeps the latest state. Dated now:
    # the dispatcher may report on the task as soon as it is handed on.
    final = ctx.data.stage(workspace.destination_of(done)) / task_dir.name
    report_complete(ctx.events, task, final, time=utcnow())
    if ctx.config is not None and final.parent.name == Stage.SUCCESS.value:
        # No targets: the task is complete here, with each module's result.json in
        # process[].output (which a completion on request reads).
        notify_safely(ctx.data, ctx.config, task, "completion", task_dir=done, events=ctx.events)
    return workspace.hand_over(task_dir, done, ctx.data)


def _keep_logs(logs: list[Path], folder: Path) -> None:
    target = folder / workspace.LOGS_DIR
    target.mkdir(exist_ok=True)
    for path in logs:
        if path.exists():
            os.replace(path, target / f"processing-{path.name}")


def _fail(ctx: JobContext, task_dir: Path, reason: str, logs: list[Path]) -> Path:
    log.error("task %s failed: %s", task_dir.name, reason)
    _keep_logs(logs, task_dir)
    workspace.remove_tree(task_dir / workspace.WORK_DIR)
    return fail_and_report(
        task_dir,
        ctx.data,
        ctx.events,
        stage="processing",
        reason=reason,
        service="processor",
        kind="task.process.error",
        config=ctx.config,
    )


__all__ = ["JobContext", "ModuleFailed", "report_complete", "run_job"]
