"""The Queue page and the task page: listing, filters, pages, task details with secrets
masked, and the operator's actions (their effect on the data folder, the audit, the refusals).
"""

from __future__ import annotations

import os
import re
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from webgui_harness import XSS_PAYLOADS, WebGui, assert_inert, csrf_of

from mercure.core.claims import Claim
from mercure.core.clock import utcnow
from mercure.core.datafolder import Stage
from mercure.core.events import Event
from mercure.core.masking import register_secret, registry
from mercure.core.task import (
    ERROR_FILE,
    TargetStatus,
    Task,
    TaskDispatch,
    TaskInfo,
    TaskProcessing,
    TaskStudy,
    read_task,
    write_task,
)

PAGE = {"accept": "text/html"}
HTMX = {"hx-request": "true"}


def place(
    webgui: WebGui,
    stage: Stage,
    task_id: str,
    *,
    patient: str = "Doe^Jane",
    mrn: str = "PID-1",
    accession: str = "ACC-1",
    rule: str = "ct",
    targets: tuple[str, ...] = ("pacs",),
    reason: str | None = None,
    files: int = 3,
    age: float = 0.0,
    settings: dict[str, object] | None = None,
) -> Path:
    """A task folder in ``stage`` with ``files`` DICOM files, last changed ``age`` s ago."""
    folder = webgui.data.stage(stage) / task_id
    folder.mkdir()
    for n in range(files):
        (folder / f"1.2.3.{n}.dcm").write_bytes(b"\0" * 1000)
    failed = stage is Stage.ERROR
    task = Task(
        id=task_id,
        info=TaskInfo(
            action="route",
            uid=f"1.2.840.{abs(hash(task_id)) % 10**8}",
            applied_rule=rule,
            triggered_rules={rule: True},
            patient_name=patient,
            mrn=mrn,
            acc=accession,
            sender_aet="CT01",
            fail_stage="dispatch" if failed else None,
            reason=reason,
        ),
        dispatch=TaskDispatch(
            target_name=list(targets),
            status={
                name: TargetStatus(
                    state="error" if failed else "waiting",
                    retries=5 if failed else 0,
                    instances_sent=1,
                    reason=reason,
                )
                for name in targets
            },
        ),
        process=[TaskProcessing(module_name="anon", settings=settings or {})],
    )
    write_task(folder, task)
    if failed:
        (folder / ERROR_FILE).write_text('{"fail_stage": "dispatch", "reason": "refused"}')
    if age:
        stamp = time.time() - age
        os.utime(folder, (stamp, stamp))
    return folder


def place_study(webgui: WebGui, study_uid: str, rule: str, task_id: str) -> Path:
    """A study being collected for ``rule``."""
    folder = webgui.data.stage(Stage.STUDIES) / f"{study_uid}#{rule}"
    folder.mkdir()
    (folder / "1.2.3.dcm").write_bytes(b"\0" * 100)
    task = Task(
        id=task_id,
        info=TaskInfo(action="route", uid=study_uid, uid_type="study", applied_rule=rule),
        dispatch=TaskDispatch(target_name=["pacs"]),
        study=TaskStudy(
            study_uid=study_uid, received_series=["T1 axial"], received_series_uid=["1"]
        ),
    )
    write_task(folder, task)
    return folder


def task_links(html: str) -> list[str]:
    """The task ids the page links to, in order."""
    return re.findall(r'href="/queue/tasks/([^"?]+)"', html)


def post(client: httpx.Client, path: str, **form: str) -> httpx.Response:
    """A form post with the session's CSRF token, not following the redirect."""
    return client.post(
        path, data={"csrf_token": csrf_of(client), **form}, headers=PAGE, follow_redirects=False
    )


def flash_after(client: httpx.Client, response: httpx.Response) -> str:
    """The one-time message on the page a 303 leads to."""
    assert response.status_code == 303, response.text
    page = client.get(response.headers["location"], headers=PAGE)
    match = re.search(r'<div class="flash (good|bad)"[^>]*>(.*?)</div>', page.text, re.S)
    assert match, page.text
    return f"{match.group(1)}: {match.group(2).strip()}"


def audits(webgui: WebGui, action: str) -> list[Event]:
    """The audit events of ``action`` the webgui wrote."""
    return [e for e in webgui.written_events() if e.kind == f"audit.{action}"]


# --- listing ------------------------------------------------------------------------------
def test_queue_lists_active_stages_newest_first(webgui: WebGui, viewer: httpx.Client) -> None:
    """Default view: studies, processing, outgoing, error, newest first; not success/discard."""
    place(webgui, Stage.OUTGOING, "t-old", age=3600)
    place(webgui, Stage.ERROR, "t-new", reason="association refused by PACS")
    place(webgui, Stage.PROCESSING, "t-mid", age=60)
    place(webgui, Stage.SUCCESS, "t-done")
    place_study(webgui, "1.2.9", "collect", "study-task")
    page = viewer.get("/queue", headers=PAGE)
    assert page.status_code == 200
    links = task_links(page.text)
    assert links[-2:] == ["t-mid", "t-old"]
    assert set(links) == {"t-new", "study-task", "t-mid", "t-old"}
    assert "association refused by PACS" in page.text
    assert "Doe, Jane" in page.text and "ACC-1" in page.text
    assert "1 series, completes by timeout" in page.text
    # A whole stage, success/ included when asked for.
    success = viewer.get("/queue", params={"stage": "success"}, headers=PAGE)
    assert task_links(success.text) == ["t-done"]
    fragment = viewer.get("/queue/list", params={"stage": "error"}, headers=HTMX)
    assert task_links(fragment.text) == ["t-new"]
    assert "<html" not in fragment.text


def test_queue_filters_by_content_and_age(webgui: WebGui, viewer: httpx.Client) -> None:
    """Rule, target, patient (ID or part of the name), accession and age each narrow it."""
    place(webgui, Stage.OUTGOING, "t-ct", rule="ct", targets=("pacs",), accession="A1")
    place(webgui, Stage.OUTGOING, "t-mr", rule="mr", targets=("archive",), mrn="PID-9",
          patient="Roe^Richard", age=7200)  # fmt: skip
    place(webgui, Stage.ERROR, "t-both", rule="mr", targets=("pacs", "archive"), accession="A3")

    def shown(**params: str) -> set[str]:
        return set(task_links(viewer.get("/queue", params=params, headers=PAGE).text))

    assert shown(rule="mr") == {"t-mr", "t-both"}
    assert shown(target="pacs") == {"t-ct", "t-both"}
    assert shown(patient="PID-9") == {"t-mr"}
    assert shown(patient="roe") == {"t-mr"}
    assert shown(accession="A3") == {"t-both"}
    assert shown(min_age="3600") == {"t-mr"}
    assert shown(stage="error", rule="mr") == {"t-both"}
    assert shown(rule="nothing") == set()
    page = viewer.get("/queue", params={"stage": "nonsense"}, headers=PAGE)
    assert "There is no stage" in page.text
    assert len(task_links(page.text)) == 3


def test_queue_pages_through_a_big_stage_reading_only_the_page(
    webgui: WebGui, viewer: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """120 tasks: 50 a page, Older/Newest links, and only the shown task.json files read."""
    for n in range(120):
        place(webgui, Stage.ERROR, f"t-{n:03d}", files=1, age=1000 - n)
    import mercure.webgui.queue as queue_module

    reads: list[Path] = []
    real = queue_module.read_task

    def counting(folder: Path | str) -> Task:
        reads.append(Path(folder))
        return real(folder)

    monkeypatch.setattr(queue_module, "read_task", counting)
    first = viewer.get("/queue", params={"stage": "error"}, headers=PAGE)
    assert len(reads) == 50
    assert task_links(first.text)[:2] == ["t-119", "t-118"]
    assert "1\u201350 of 120" in first.text
    older = re.search(r'href="(/queue\?[^"]*start=50[^"]*)"', first.text)
    assert older, first.text
    second = viewer.get(older.group(1).replace("&amp;", "&"), headers=PAGE)
    assert task_links(second.text)[0] == "t-069"
    last = viewer.get("/queue", params={"stage": "error", "start": "100"}, headers=PAGE)
    assert len(task_links(last.text)) == 20
    assert "Older" not in last.text and "Newest" in last.text


def test_an_accession_search_asks_the_bookkeeper_which_tasks_to_read(
    webgui: WebGui, viewer: httpx.Client
) -> None:
    """2,100 failed tasks, the one wanted the oldest: the bookkeeper names it and only it is
    read; with the bookkeeper down the search reads 2,000 and says that it stopped."""
    from mercure.webgui.queue import SCAN_LIMIT

    wanted = place(webgui, Stage.ERROR, "t-wanted", accession="ACC-RARE", files=0, age=9000)
    for n in range(SCAN_LIMIT + 100):
        place(webgui, Stage.ERROR, f"t-{n:04d}", files=0, age=600)
    task = read_task(wanted)
    webgui.store_events(
        [
            Event(
                service="router",
                instance="t",
                kind="task.created",
                task_id="t-wanted",
                data={"task": task.model_dump(mode="json"), "stage": "error"},
            )
        ]
    )
    found = viewer.get("/queue", params={"accession": "ACC-RARE"}, headers=PAGE)
    assert task_links(found.text) == ["t-wanted"]
    assert "1 of 2\u202f101 entries read" in found.text
    assert "the bookkeeper named the tasks" in found.text
    webgui.bookkeeper_down = True
    cut = viewer.get("/queue", params={"accession": "ACC-RARE"}, headers=PAGE)
    assert task_links(cut.text) == []
    assert "the search stopped after 2\u202f000 entries" in cut.text
    assert "Bookkeeper unreachable" in cut.text
    older = re.search(r'href="(/queue\?[^"]*start=2000[^"]*)"', cut.text)
    assert older, cut.text
    rest = viewer.get(older.group(1).replace("&amp;", "&"), headers=PAGE)
    assert task_links(rest.text) == ["t-wanted"]


def test_stage_tiles_show_pause_and_only_operators_get_the_switch(
    webgui: WebGui, viewer: httpx.Client, operator: httpx.Client
) -> None:
    """The paused state is shown to all; the pause/resume buttons only to operators."""
    webgui.data.pause(Stage.OUTGOING, "paused by x: PACS maintenance")
    seen = viewer.get("/queue", headers=PAGE).text
    assert "paused" in seen and "PACS maintenance" in seen
    assert "/queue/stages/" not in seen
    mine = operator.get("/queue", headers=PAGE).text
    assert 'action="/queue/stages/outgoing/resume"' in mine
    assert 'action="/queue/stages/processing/pause"' in mine


# --- one task -----------------------------------------------------------------------------
def test_task_page_shows_where_it_is_delivery_files_and_timeline(
    webgui: WebGui, viewer: httpx.Client
) -> None:
    """Stage, file count and size, per-target progress and reason, the bookkeeper's events."""
    folder = place(webgui, Stage.ERROR, "t-1", reason="PACS refused: out of resources", files=4)
    task = read_task(folder)
    webgui.store_events(
        [
            Event(
                service="router",
                instance="test",
                kind="task.created",
                task_id="t-1",
                message="task created for rule ct",
                data={"task": task.model_dump(mode="json"), "stage": "outgoing"},
                time=utcnow() - timedelta(minutes=5),
            ),
            Event(
                service="dispatcher",
                instance="test",
                kind="task.failed",
                severity="error",
                task_id="t-1",
                message="PACS refused: out of resources",
                data={"stage": "error", "fail_stage": "dispatch", "reason": "refused"},
            ),
        ]
    )
    page = viewer.get("/queue/tasks/t-1", headers=PAGE)
    assert page.status_code == 200
    text = page.text
    assert "error/t-1" in text
    assert "4 DICOM files, 3.9 kB" in text
    assert "1 / 4" in text  # instances sent / total to pacs
    assert "PACS refused: out of resources" in text
    assert "task created for rule ct" in text and "task.failed" in text
    assert "Requeue" not in text  # a viewer sees no action
    live = viewer.get("/queue/tasks/t-1/live", headers=HTMX)
    assert live.status_code == 200 and "1 / 4" in live.text


def test_task_json_is_shown_without_secrets(webgui: WebGui, viewer: httpx.Client) -> None:
    """A password in a module's settings, a token in a reason, a registered target password:
    none of them on the page."""
    secret = "Tr0ub4dor&3-target-password"
    register_secret(secret)
    try:
        place(
            webgui,
            Stage.ERROR,
            "t-1",
            reason=f"login failed with {secret}; Authorization: Bearer abcdefghijklmnop",
            settings={"password": "module-password-123", "api_key": "k-123456789", "level": 3},
        )
        page = viewer.get("/queue/tasks/t-1", headers=PAGE).text
    finally:
        registry().clear()
    for leaked in (secret, "module-password-123", "k-123456789", "abcdefghijklmnop"):
        assert leaked not in page
        assert leaked.replace("&", "&amp;") not in page
    assert "&#34;password&#34;: &#34;***&#34;" in page
    assert "&#34;level&#34;: 3" in page


def test_task_known_only_to_the_bookkeeper_or_only_to_the_folder(
    webgui: WebGui, viewer: httpx.Client
) -> None:
    """A cleaned task: the bookkeeper's record and last task.json; bookkeeper down: the folder
    and a banner, no error; neither knows it: 404 with the id."""
    task = Task(id="t-gone", info=TaskInfo(action="route", uid="1.2.3", acc="ACC-GONE"))
    webgui.store_events(
        [
            Event(
                service="router",
                instance="t",
                kind="task.created",
                task_id="t-gone",
                data={"task": task.model_dump(mode="json"), "stage": "outgoing"},
            ),
            Event(service="cleaner", instance="t", kind="task.cleaned", task_id="t-gone"),
        ]
    )
    gone = viewer.get("/queue/tasks/t-gone", headers=PAGE)
    assert gone.status_code == 200
    assert "Not in the data folder any more" in gone.text and "cleaned" in gone.text
    assert "ACC-GONE" in gone.text  # from the last version of task.json
    place(webgui, Stage.OUTGOING, "t-here")
    webgui.bookkeeper_down = True
    here = viewer.get("/queue/tasks/t-here", headers=PAGE)
    assert here.status_code == 200
    assert "Bookkeeper unreachable" in here.text and "outgoing/t-here" in here.text
    missing = viewer.get("/queue/tasks/t-nowhere", headers=PAGE)
    assert missing.status_code == 404 and "t-nowhere" in missing.text
    assert viewer.get("/queue", headers=PAGE).status_code == 200


# --- actions ------------------------------------------------------------------------------
def test_operator_requeues_a_failed_task(webgui: WebGui, operator: httpx.Client) -> None:
    """error/ back to outgoing/, the message says so, the audit names the operator."""
    place(webgui, Stage.ERROR, "t-1", reason="refused")
    page = operator.get("/queue/tasks/t-1", headers=PAGE).text
    assert 'action="/queue/tasks/t-1/requeue"' in page
    answer = post(operator, "/queue/tasks/t-1/requeue")
    assert flash_after(operator, answer) == "good: t-1: back in outgoing/"
    assert (webgui.data.stage(Stage.OUTGOING) / "t-1").is_dir()
    [entry] = audits(webgui, "task.requeue")
    assert entry.data["user"] == "operator" and entry.data["object"] == "t-1"
    [requeued] = [e for e in webgui.written_events() if e.kind == "task.requeued"]
    assert requeued.data["user"] == "operator (web interface)"
    # Again: it is queued now, so there is nothing to requeue; said, not a 500.
    again = post(operator, "/queue/tasks/t-1/requeue")
    assert "still queued in outgoing/" in flash_after(operator, again)


def test_operator_discards_with_a_reason(webgui: WebGui, operator: httpx.Client) -> None:
    """To discard/ with the reason; without a reason it is refused."""
    place(webgui, Stage.ERROR, "t-1")
    refused = post(operator, "/queue/tasks/t-1/discard", reason="")
    assert "say why" in flash_after(operator, refused)
    answer = post(operator, "/queue/tasks/t-1/discard", reason="duplicate")
    assert flash_after(operator, answer) == "good: t-1: discarded from error/"
    task = read_task(webgui.data.stage(Stage.DISCARD) / "t-1")
    assert task.info.reason == "discarded by operator (web interface): duplicate"
    assert [e.data["object"] for e in audits(webgui, "task.discard")] == ["t-1"]


def test_operator_deletes_after_confirming(webgui: WebGui, operator: httpx.Client) -> None:
    """The confirmation page first; a post without the confirmation deletes nothing."""
    folder = place(webgui, Stage.OUTGOING, "t-1")
    confirm = operator.get("/queue/tasks/t-1/delete", headers=PAGE)
    assert confirm.status_code == 200 and "for good" in confirm.text
    assert 'name="confirm" value="yes"' in confirm.text
    unconfirmed = post(operator, "/queue/tasks/t-1/delete")
    assert "confirm the deletion" in flash_after(operator, unconfirmed)
    assert folder.is_dir()
    answer = post(operator, "/queue/tasks/t-1/delete", confirm="yes", reason="test")
    assert answer.headers["location"] == "/queue"
    assert flash_after(operator, answer) == "good: t-1: deleted from outgoing/"
    assert not folder.exists()
    [deleted] = [e for e in webgui.written_events() if e.kind == "task.deleted"]
    assert deleted.data["reason"] == "test"
    assert len(audits(webgui, "task.delete")) == 1


def test_a_task_being_worked_on_is_refused_with_the_reason(
    webgui: WebGui, operator: httpx.Client
) -> None:
    """A claimed task (a dispatcher sending it): discard and delete say so; nothing moves,
    nothing is audited."""
    folder = place(webgui, Stage.OUTGOING, "t-busy")
    with Claim.take(folder):
        page = operator.get("/queue/tasks/t-busy", headers=PAGE).text
        assert "being worked on" in page
        message = flash_after(operator, post(operator, "/queue/tasks/t-busy/discard", reason="x"))
        assert "being worked on" in message and "pause the queue" in message
        delete = post(operator, "/queue/tasks/t-busy/delete", confirm="yes")
        assert "being worked on" in flash_after(operator, delete)
    assert folder.is_dir()
    assert audits(webgui, "task.discard") == audits(webgui, "task.delete") == []


def test_operator_completes_or_discards_a_study(webgui: WebGui, operator: httpx.Client) -> None:
    """Complete now: on to its action's stage; Discard: to discard/."""
    place_study(webgui, "1.2.9", "collect", "study-1")
    place_study(webgui, "1.2.8", "collect", "study-2")
    page = operator.get("/queue/tasks/study-1", headers=PAGE).text
    assert "Complete study now" in page and "T1 axial" in page
    done = post(operator, "/queue/tasks/study-1/complete")
    assert "moved to outgoing/" in flash_after(operator, done)
    assert (webgui.data.stage(Stage.OUTGOING) / "study-1").is_dir()
    dropped = post(operator, "/queue/tasks/study-2/complete", discard="yes")
    assert "moved to discard/" in flash_after(operator, dropped)
    assert [e.data["object"] for e in audits(webgui, "study.complete")] == ["1.2.9#collect"]
    assert [e.data["object"] for e in audits(webgui, "study.discard")] == ["1.2.8#collect"]
    wrong = post(operator, "/queue/tasks/study-1/complete")
    assert "no study being collected (it is in outgoing/)" in flash_after(operator, wrong)


def test_operator_pauses_and_resumes_a_stage(webgui: WebGui, operator: httpx.Client) -> None:
    """The switch file appears and goes; the audit has both; back to the page it came from."""
    answer = post(operator, "/queue/stages/outgoing/pause", back="/queue?stage=outgoing")
    assert answer.headers["location"] == "/queue?stage=outgoing"
    assert flash_after(operator, answer) == "good: outgoing queue paused"
    assert webgui.data.is_paused(Stage.OUTGOING)
    assert "paused by operator (web interface)" in operator.get("/queue", headers=PAGE).text
    resumed = post(operator, "/queue/stages/outgoing/resume", back="https://evil.example/")
    assert resumed.headers["location"] == "/queue"
    split = post(operator, "/queue/stages/outgoing/pause", back="/queue?x\r\nSet-Cookie: a=b")
    assert split.headers["location"] == "/queue" and "a=b" not in split.headers["set-cookie"]
    post(operator, "/queue/stages/outgoing/resume")
    assert not webgui.data.is_paused(Stage.OUTGOING)
    assert [e.data["object"] for e in audits(webgui, "queue.pause")] == ["outgoing"] * 2
    assert [e.data["object"] for e in audits(webgui, "queue.resume")] == ["outgoing"] * 2
    bad = post(operator, "/queue/stages/incoming/pause")
    assert "cannot be paused" in flash_after(operator, bad)


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/queue/tasks/t-1/requeue", {}),
        ("/queue/tasks/t-1/discard", {"reason": "x"}),
        ("/queue/tasks/t-1/delete", {"confirm": "yes"}),
        ("/queue/tasks/t-1/complete", {}),
        ("/queue/stages/outgoing/pause", {}),
        ("/queue/stages/outgoing/resume", {}),
    ],
)
def test_viewer_may_not_act(
    webgui: WebGui, viewer: httpx.Client, path: str, form: dict[str, str]
) -> None:
    """Every action answers 403 to a viewer with a valid CSRF token; nothing changes."""
    folder = place(webgui, Stage.ERROR, "t-1")
    answer = post(viewer, path, **form)
    assert answer.status_code == 403
    assert "needs the operator role" in answer.text
    assert folder.is_dir() and not webgui.data.is_paused(Stage.OUTGOING)
    assert viewer.get("/queue/tasks/t-1/delete", headers=PAGE).status_code == 403


# --- hostile text -------------------------------------------------------------------------
def test_hostile_text_on_queue_and_task_pages_stays_text(
    webgui: WebGui, operator: httpx.Client
) -> None:
    """Patient name, rule, reason, target, AE title, task id with markup: escaped everywhere."""
    for n, payload in enumerate(XSS_PAYLOADS):
        folder = place(
            webgui,
            Stage.ERROR,
            f"t-{n}",
            patient=payload,
            rule=payload,
            reason=payload,
            targets=(payload,),
            accession=payload,
        )
        task = read_task(folder)
        task.info.sender_aet = payload
        write_task(folder, task)
        webgui.store_events(
            [
                Event(
                    service="dispatcher",
                    instance="t",
                    kind="task.failed",
                    task_id=f"t-{n}",
                    message=payload,
                    data={"user": payload},
                )
            ]
        )
    hostile_name = webgui.data.stage(Stage.ERROR) / f"x{XSS_PAYLOADS[1]}"
    hostile_name.mkdir()
    webgui.data.pause(Stage.OUTGOING, XSS_PAYLOADS[0])
    pages = [
        operator.get("/queue", headers=PAGE),
        operator.get("/queue", params={"rule": XSS_PAYLOADS[0]}, headers=PAGE),
        operator.get("/queue/list", params={"patient": XSS_PAYLOADS[1]}, headers=HTMX),
        operator.get("/queue/tasks/t-0", headers=PAGE),
        operator.get("/queue/tasks/t-1", headers=PAGE),
        operator.get("/queue/tasks/t-1/live", headers=HTMX),
        operator.get("/queue/tasks/t-1/delete", headers=PAGE),
        operator.get(f"/queue/tasks/{XSS_PAYLOADS[0]}", headers=PAGE),
        flash_page(operator, post(operator, "/queue/tasks/t-0/discard", reason=XSS_PAYLOADS[1])),
    ]
    for page in pages:
        assert page.status_code in (200, 404)
        assert_inert(page.text)
        for payload in XSS_PAYLOADS:
            assert payload not in page.text
    assert "&lt;script&gt;" in pages[0].text


def flash_page(client: httpx.Client, response: httpx.Response) -> httpx.Response:
    """The page a 303 leads to."""
    assert response.status_code == 303
    return client.get(response.headers["location"], headers=PAGE)


def test_task_page_lists_the_tasks_notifications(webgui: WebGui, viewer: httpx.Client) -> None:
    """Queued, attempts, sent and failed, with channel, trigger, rule, attempts and reason."""
    place(webgui, Stage.SUCCESS, "t-n")
    common = {"notification_id": "n-1", "trigger": "completion", "rule": "ct_rule"}

    def event(kind: str, service: str, minutes: int, **data: object) -> Event:
        return Event(
            service=service,
            instance="test",
            kind=kind,
            severity="error" if kind == "notification.failed" else "info",
            task_id="t-n",
            message=f"{kind} for channel {data.get('channel')}",
            data={**common, **data},
            time=utcnow() - timedelta(minutes=minutes),
        )

    webgui.store_events(
        [
            event("notification.queued", "processor", 5, channel="teams_hook"),
            event("notification.queued", "processor", 5, channel="lab_mail"),
            event(
                "notification.attempt",
                "notifier",
                4,
                channel="teams_hook",
                attempts=1,
                reason="connection refused; retrying",
            ),
            event(
                "notification.sent",
                "notifier",
                3,
                channel="teams_hook",
                attempts=2,
                answer="HTTP 200",
            ),
            event(
                "notification.failed",
                "notifier",
                2,
                channel="lab_mail",
                attempts=7,
                reason="SMTP 550 mailbox unavailable",
            ),
        ]
    )
    page = viewer.get("/queue/tasks/t-n", headers=PAGE)
    assert page.status_code == 200
    section = page.text.split("<h2>Notifications</h2>", 1)[1].split("<h2>Timeline</h2>", 1)[0]
    rows = re.findall(r"<tr class=\"([^\"]*)\">(.*?)</tr>", section, re.S)
    cells = [(tone.strip(), re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)) for tone, row in rows]
    none = "\N{EN DASH}"
    assert [c[1][1:7] for c in cells] == [
        ["queued", "teams_hook", "completion", "ct_rule", none, ""],
        ["queued", "lab_mail", "completion", "ct_rule", none, ""],
        ["attempt", "teams_hook", "completion", "ct_rule", "1", "connection refused; retrying"],
        ["sent", "teams_hook", "completion", "ct_rule", "2", "HTTP 200"],
        ["failed", "lab_mail", "completion", "ct_rule", "7", "SMTP 550 mailbox unavailable"],
    ]
    assert [tone for tone, _cells in cells] == ["", "", "", "", "tone-bad"]


def test_task_page_without_notifications_says_so(webgui: WebGui, viewer: httpx.Client) -> None:
    place(webgui, Stage.SUCCESS, "t-q")
    webgui.store_events(
        [Event(service="router", instance="test", kind="task.created", task_id="t-q", data={})]
    )
    page = viewer.get("/queue/tasks/t-q", headers=PAGE)
    assert page.status_code == 200
    assert "None queued for this task." in page.text
