"""The Queue page and the task page, with the operator's actions.

- ``GET /queue``: the stages (depth, paused or not, pause/resume for operators) and a page of
  their tasks, newest first, filtered by stage, rule, target, patient, accession and age;
  read from the data folder (:mod:`mercure.webgui.queue`), so it works while the bookkeeper is
  down; then the retrieve jobs (each job's latest ``retrieve.job`` event, from the
  bookkeeper). The list refreshes itself every 5 s (htmx, ``/queue/list``).
- ``GET /queue/tasks/{task_id}``: where the task is now, delivery per target, its files,
  task.json (secrets masked), failure, processing runs and the event timeline from the
  bookkeeper; a task known only to one of the two is shown with what that one knows.
- ``POST`` actions (operator): requeue, discard, delete (after a confirmation page), complete
  or discard a study, pause/resume a stage. Each calls :mod:`mercure.core.operations` (what the
  CLI calls), is audited, and answers 303 to the page with a one-time message
  (:mod:`mercure.webgui.flash`); a refusal (busy, gone, wrong stage) is that message too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from mercure.bookkeeper.kinds import NOTIFICATION_KINDS
from mercure.core.datafolder import PAUSABLE_STAGES, Stage
from mercure.core.errors import MercureError
from mercure.core.operations import (
    DELETE_STAGES,
    DISCARD_STAGES,
    complete_study,
    delete_task,
    discard_task,
    pause_stage,
    requeue,
    resume_stage,
)
from mercure.webgui.audit import audit
from mercure.webgui.auth import OperatorSession, ViewerSession
from mercure.webgui.bookkeeper import (
    BookkeeperError,
    EventRecord,
    RetrieveJobRecord,
    TaskDetail,
    TaskVersion,
)
from mercure.webgui.context import web_context
from mercure.webgui.flash import clear_flash, redirect_with, take_flash
from mercure.webgui.overview import stage_statuses
from mercure.webgui.queue import (
    ACTIVE,
    AGES,
    LIST_STAGES,
    QueueFilter,
    TargetProgress,
    TaskOnDisk,
    find_task,
    list_entries,
    masked_json,
    target_progress,
)
from mercure.webgui.rendering import render, url
from mercure.webgui.roles import Role
from mercure.webgui.sessions import Session

router = APIRouter()

REQUEUE_FROM = (Stage.ERROR, Stage.SUCCESS, Stage.DISCARD)
MAX_REASON = 500
BOOKKEEPER_CANDIDATES = 1000
"""An accession search asks the bookkeeper for at most this many tasks (its largest page)."""
STAGE_CHOICES = (ACTIVE, *(stage.value for stage in LIST_STAGES))


def _filter(request: Request) -> tuple[QueueFilter, str]:
    """The filter of the query string, and what was wrong with it (shown, not an error)."""
    params = request.query_params
    problem = ""
    stage = params.get("stage", ACTIVE) or ACTIVE
    if stage not in STAGE_CHOICES:
        problem = f"There is no stage '{stage}'; showing the active stages."
        stage = ACTIVE
    try:
        min_age = int(params.get("min_age", "0") or 0)
    except ValueError:
        min_age = 0
    if min_age not in AGES:
        min_age = 0
    try:
        start = max(0, int(params.get("start", "0") or 0))
    except ValueError:
        start = 0
    text = {k: params.get(k, "").strip()[:200] for k in ("rule", "target", "patient", "accession")}
    return QueueFilter(stage=stage, min_age=min_age, start=start, **text), problem


def _user(session: Session) -> str:
    """Who acts, as the events of an operation name them."""
    return f"{session.user} (web interface)"


def _may_operate(session: Session | None) -> bool:
    return session is not None and session.role.allows(Role.OPERATOR)


async def _accession_candidates(request: Request, wanted: QueueFilter) -> set[str] | None:
    """The ids of the tasks of the accession searched for, from the bookkeeper; None when it
    cannot narrow the search (no accession, too many tasks, or it does not answer)."""
    if not wanted.accession:
        return None
    try:
        found = await web_context(request).bookkeeper.tasks(
            accession=wanted.accession, limit=BOOKKEEPER_CANDIDATES
        )
    except BookkeeperError as exc:
        request.state.bookkeeper_problem = str(exc)
        return None
    if found.next_offset is not None:
        return None
    return {task.task_id for task in found.items}


async def _retrieve_jobs(request: Request) -> tuple[list[RetrieveJobRecord], str]:
    """The retrieve jobs to show, and why there are none to show if the bookkeeper failed."""
    try:
        return await web_context(request).bookkeeper.retrieve_jobs(), ""
    except BookkeeperError as exc:
        return [], str(exc)


async def _list_context(request: Request) -> dict[str, Any]:
    web = web_context(request)
    wanted, problem = _filter(request)
    now = web.wall_clock()
    candidates = await _accession_candidates(request, wanted)
    jobs, jobs_problem = await _retrieve_jobs(request)

    def read() -> dict[str, Any]:
        stages = [s for s in stage_statuses(web.data) if s.stage in LIST_STAGES]
        page = list_entries(web.data, wanted, now.timestamp(), candidates=candidates)
        return {"stages": stages, "page": page}

    found = await run_in_threadpool(read)
    return {
        **found,
        "wanted": wanted,
        "filter_problem": problem,
        "query": urlencode(wanted.query()),
        "next_query": urlencode(wanted.query(start=found["page"].next_start))
        if found["page"].next_start is not None
        else None,
        "first_query": urlencode(wanted.query(start=0)) if wanted.start else None,
        "ages": AGES,
        "stage_choices": STAGE_CHOICES,
        "may_operate": _may_operate(getattr(request.state, "session", None)),
        "now_ts": now.timestamp(),
        "pausable": [s.value for s in PAUSABLE_STAGES],
        "retrieve_jobs": jobs,
        "retrieve_problem": jobs_problem,
    }


def _with_flash(request: Request, template: str, context: dict[str, Any], **kw: Any) -> Response:
    flash = take_flash(request)
    response = render(request, template, {**context, "flash": flash}, **kw)
    clear_flash(request, response)
    return response


@router.get("/queue", name="queue")
async def queue_page(request: Request, _session: ViewerSession) -> Response:
    """The stages and a page of their tasks."""
    return _with_flash(request, "queue.html", await _list_context(request))


@router.get("/queue/list", name="queue_list")
async def queue_list(request: Request, _session: ViewerSession) -> Response:
    """The stages and the task list (fragment, refreshed every few seconds)."""
    return render(request, "queue/_list.html", await _list_context(request))


# --- one task -----------------------------------------------------------------------------
async def _bookkeeper_part(
    request: Request, task_id: str
) -> tuple[TaskDetail | None, list[EventRecord], TaskVersion | None]:
    web = web_context(request)
    try:
        detail = await web.bookkeeper.task_detail(task_id)
        if detail is None:
            return None, [], None
        timeline = await web.bookkeeper.task_timeline(task_id)
        latest = None
        if detail.versions:
            versions = await web.bookkeeper.task_versions(task_id)
            latest = versions[-1] if versions else None
        return detail, timeline, latest
    except BookkeeperError as exc:
        request.state.bookkeeper_problem = str(exc)
        return None, [], None


def _targets(disk: TaskOnDisk | None, detail: TaskDetail | None) -> list[TargetProgress]:
    """Delivery per target: task.json's progress, with the bookkeeper's state beside it."""
    progress = target_progress(disk.task, disk.files) if disk is not None else []
    recorded = {t.target: t for t in detail.task.targets} if detail is not None else {}
    merged = []
    for item in progress:
        record = recorded.pop(item.name, None)
        if record is not None:
            item = replace(item, bookkeeper_state=record.state, bookkeeper_reason=record.reason)
        merged.append(item)
    for name, record in recorded.items():
        merged.append(
            TargetProgress(
                name=name,
                state=record.state,
                since=record.state_time,
                reason=record.reason,
                bookkeeper_state=record.state,
                bookkeeper_reason=record.reason,
            )
        )
    return merged


def _actions(disk: TaskOnDisk | None) -> dict[str, bool]:
    stage = disk.stage if disk is not None else None
    return {
        "requeue": stage in REQUEUE_FROM,
        "discard": stage in DISCARD_STAGES,
        "delete": stage in DELETE_STAGES,
        "complete": stage is Stage.STUDIES,
    }


async def _live_context(request: Request, task_id: str) -> dict[str, Any]:
    web = web_context(request)
    disk = await run_in_threadpool(find_task, web.data, task_id)
    paused = False
    if disk is not None and disk.stage in PAUSABLE_STAGES:
        paused = await run_in_threadpool(web.data.is_paused, disk.stage)
    return {
        "task_id": task_id,
        "disk": disk,
        "paused": paused,
        "now_ts": web.wall_clock().timestamp(),
        "may_operate": _may_operate(getattr(request.state, "session", None)),
        "actions": _actions(disk),
    }


@router.get("/queue/tasks/{task_id}", name="task")
async def task_page(request: Request, task_id: str, _session: ViewerSession) -> Response:
    """One task: where it is, delivery, files, task.json, processing, timeline."""
    live = await _live_context(request, task_id)
    detail, timeline, latest = await _bookkeeper_part(request, task_id)
    disk: TaskOnDisk | None = live["disk"]
    if disk is None and detail is None:
        where = (
            "in the data folder (the bookkeeper cannot be asked now)"
            if getattr(request.state, "bookkeeper_problem", None)
            else "in the data folder or the bookkeeper"
        )
        return render(
            request,
            "error.html",
            {"title": "No such task", "message": f"There is no task {task_id} {where}."},
            status_code=404,
        )
    if disk is not None and disk.document is not None:
        document, source = disk.document, f"{disk.stage.value}/{disk.name}/task.json"
    elif latest is not None:
        document, source = latest.document, f"the bookkeeper's last version ({latest.kind})"
    else:
        document, source = None, ""
    context = {
        **live,
        "detail": detail,
        "timeline": timeline,
        "notifications": [ev for ev in timeline if ev.kind in NOTIFICATION_KINDS],
        "targets": _targets(disk, detail),
        "document": masked_json(document) if document is not None else None,
        "document_source": source,
        "error_record": masked_json(disk.error) if disk is not None and disk.error else None,
    }
    return _with_flash(request, "task.html", context)


@router.get("/queue/tasks/{task_id}/live", name="task_live")
async def task_live(request: Request, task_id: str, _session: ViewerSession) -> Response:
    """Where the task is and its delivery (fragment, refreshed every few seconds)."""
    live = await _live_context(request, task_id)
    detail = None
    try:
        detail = await web_context(request).bookkeeper.task_detail(task_id)
    except BookkeeperError as exc:
        request.state.bookkeeper_problem = str(exc)
    context = {**live, "detail": detail, "targets": _targets(live["disk"], detail)}
    return render(request, "task/_live.html", context)


# --- actions ------------------------------------------------------------------------------
async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v.strip()[:MAX_REASON] for k, v in form.items() if isinstance(v, str)}


async def _act(
    request: Request,
    back: str,
    action: str,
    obj: str,
    operation: Callable[[], str],
) -> Response:
    """Run an operation in a thread; audit and say what happened, or say why not."""
    try:
        line = await run_in_threadpool(operation)
    except (MercureError, OSError) as exc:
        return redirect_with(request, back, f"Not done: {exc}", "bad")
    audit(request, action, obj, line)
    return redirect_with(request, back, line)


def _task_url(request: Request, task_id: str) -> str:
    return url(request, "task", task_id=quote(task_id, safe=""))


@router.post("/queue/tasks/{task_id}/requeue", name="task_requeue")
async def task_requeue(request: Request, task_id: str, session: OperatorSession) -> Response:
    """Failed: back to where it failed; finished: re-sent as a new task."""
    web = web_context(request)
    return await _act(
        request,
        _task_url(request, task_id),
        "task.requeue",
        task_id,
        lambda: requeue(web.data, task_id, web.events, user=_user(session), config=web.config),
    )


@router.post("/queue/tasks/{task_id}/discard", name="task_discard")
async def task_discard(request: Request, task_id: str, session: OperatorSession) -> Response:
    """To discard/ with the reason given."""
    web = web_context(request)
    reason = (await _form(request)).get("reason", "")
    return await _act(
        request,
        _task_url(request, task_id),
        "task.discard",
        task_id,
        lambda: discard_task(web.data, task_id, web.events, user=_user(session), reason=reason),
    )


@router.get("/queue/tasks/{task_id}/delete", name="task_delete_confirm")
async def task_delete_confirm(
    request: Request, task_id: str, _session: OperatorSession
) -> Response:
    """Are you sure? (the deletion is a form on this page)."""
    disk = await run_in_threadpool(find_task, web_context(request).data, task_id)
    return render(request, "task_delete.html", {"task_id": task_id, "disk": disk})


@router.post("/queue/tasks/{task_id}/delete", name="task_delete")
async def task_delete(request: Request, task_id: str, session: OperatorSession) -> Response:
    """Remove the task's folder (after the confirmation page)."""
    web = web_context(request)
    form = await _form(request)
    if form.get("confirm") != "yes":
        return redirect_with(
            request,
            _task_url(request, task_id),
            "Not deleted: confirm the deletion on its page first.",
            "bad",
        )
    reason = form.get("reason") or None
    try:
        line = await run_in_threadpool(
            lambda: delete_task(web.data, task_id, web.events, user=_user(session), reason=reason)
        )
    except (MercureError, OSError) as exc:
        return redirect_with(request, _task_url(request, task_id), f"Not deleted: {exc}", "bad")
    audit(request, "task.delete", task_id, line)
    return redirect_with(request, url(request, "queue"), line)


@router.post("/queue/tasks/{task_id}/complete", name="task_complete")
async def task_complete(request: Request, task_id: str, session: OperatorSession) -> Response:
    """A study being collected: complete it now, or discard it (``discard=yes``)."""
    web = web_context(request)
    form = await _form(request)
    discard = form.get("discard") == "yes"
    back = _task_url(request, task_id)
    disk = await run_in_threadpool(find_task, web.data, task_id)
    if disk is None or disk.stage is not Stage.STUDIES:
        where = f"it is in {disk.stage.value}/" if disk is not None else "it is not there"
        return redirect_with(
            request, back, f"Not done: task {task_id} is no study being collected ({where}).", "bad"
        )
    reason = form.get("reason") or f"{'discarded' if discard else 'completed'} by {session.user}"
    return await _act(
        request,
        back,
        "study.discard" if discard else "study.complete",
        disk.name,
        lambda: complete_study(
            web.data, disk.name, web.events, user=_user(session), discard=discard, reason=reason
        ),
    )


def _queue_back(request: Request, form: dict[str, str]) -> str:
    """The queue page the form came from (only a queue page of this site)."""
    base = url(request, "queue")
    back = form.get("back", "")
    if (
        back.startswith(base)
        and "//" not in back
        and "\\" not in back
        and not any(c.isspace() or ord(c) < 32 for c in back)
    ):
        return back
    return base


@router.post("/queue/stages/{stage}/pause", name="queue_pause")
async def queue_pause(request: Request, stage: str, session: OperatorSession) -> Response:
    """Services take no new work from the stage until it is resumed."""
    web = web_context(request)
    form = await _form(request)
    reason = form.get("reason", "")
    return await _act(
        request,
        _queue_back(request, form),
        "queue.pause",
        stage,
        lambda: pause_stage(web.data, stage, web.events, user=_user(session), reason=reason),
    )


@router.post("/queue/stages/{stage}/resume", name="queue_resume")
async def queue_resume(request: Request, stage: str, session: OperatorSession) -> Response:
    """Services take work from the stage again."""
    web = web_context(request)
    form = await _form(request)
    return await _act(
        request,
        _queue_back(request, form),
        "queue.resume",
        stage,
        lambda: resume_stage(web.data, stage, web.events, user=_user(session)),
    )
