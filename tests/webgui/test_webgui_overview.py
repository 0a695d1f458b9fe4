"""The overview: services, queues, disk from the data folder; throughput from the bookkeeper."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import httpx
from webgui_harness import WebGui

from mercure.core.clock import utcnow
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.events import Event
from mercure.core.heartbeat import Heartbeat, write_heartbeat
from mercure.core.installed import installed_services
from mercure.webgui.overview import StageCounter, service_statuses

PAGE = {"accept": "text/html"}
FRAGMENT = {"hx-request": "true", "x-mercure-poll": "1"}


def beat(
    webgui: WebGui,
    service: str,
    *,
    age: float = 0.0,
    pid: int | None = None,
    state: str = "running",
) -> None:
    """A heartbeat of ``service`` written ``age`` seconds ago."""
    moment = utcnow() - timedelta(seconds=age)
    write_heartbeat(
        webgui.data.run_dir,
        Heartbeat(
            service=service,
            instance="test",
            host=os.uname().nodename,
            pid=pid or os.getpid(),
            state=state,  # type: ignore[arg-type]
            started_at=moment,
            time=moment,
            interval=5.0,
        ),
    )


def test_all_services_up_says_so(webgui: WebGui, viewer: httpx.Client) -> None:
    """Nine services and the supervisor with fresh heartbeats: all up, one green line."""
    webgui.beat_all()
    page = viewer.get("/", headers=PAGE).text
    assert f"All {len(installed_services())} services running" in page
    assert page.count("tile tone-good") == len(installed_services()) + 1
    assert len(installed_services()) == 9


def test_each_kind_of_trouble_is_named(webgui: WebGui, viewer: httpx.Client) -> None:
    """Down (process gone), no heartbeat (stale), stopped and never started, in the summary
    and on each service's tile."""
    webgui.beat_all()
    beat(webgui, "router", pid=2**22 + 12345)  # no such process
    beat(webgui, "dispatcher", age=60)
    beat(webgui, "cleaner", state="stopped")
    (webgui.data.run_dir / "processor@test.json").unlink()
    statuses = {s.name: s for s in service_statuses(webgui.data, webgui.config, utcnow())}
    assert statuses["router"].state == "down"
    assert statuses["dispatcher"].state == "stale"
    assert statuses["cleaner"].state == "stopped"
    assert statuses["processor"].state == "never"
    page = viewer.get("/overview/services", headers=FRAGMENT).text
    assert "3 services not running:" in page
    for name in ("router", "cleaner", "processor"):
        assert name in page.split("not running:")[1].split("</div>")[0]
    assert "no heartbeat ever" in page
    assert "heartbeat 60 s ago" in page or "heartbeat 1 min ago" in page


def test_services_left_out_of_the_supervisor_are_grey_not_red(tmp_path: object) -> None:
    """A service not in supervisor.services is 'not run here', not an alarm."""
    from pathlib import Path

    gui = WebGui(Path(str(tmp_path)))
    try:
        config = gui.config.model_copy(
            update={
                "supervisor": gui.config.supervisor.model_copy(
                    update={"services": ["bookkeeper", "receiver", "webgui"]}
                )
            }
        )
        statuses = {s.name: s for s in service_statuses(gui.data, config, utcnow())}
        assert statuses["router"].state == "off"
        assert statuses["router"].tone == "muted"
        assert statuses["receiver"].state == "never"
    finally:
        gui.close()


def test_queues_show_depth_pause_and_errors(webgui: WebGui, viewer: httpx.Client) -> None:
    """Each stage's depth; a paused stage with its reason; tasks in error/ in the summary."""
    webgui.beat_all()
    for n in range(3):
        (webgui.data.stage(Stage.ERROR) / f"task{n}").mkdir()
    (webgui.data.stage(Stage.OUTGOING) / "task9").mkdir()
    (webgui.data.stage(Stage.OUTGOING) / ".hidden").mkdir()
    webgui.data.pause(Stage.PROCESSING, "waiting for the GPU driver update")
    page = viewer.get("/overview/services", headers=FRAGMENT).text
    assert "3 tasks in error" in page
    assert "processing paused" in page
    assert "waiting for the GPU driver update" in page
    outgoing = page.split("<header>outgoing")[1].split("</article>")[0]
    assert '<p class="big">1</p>' in outgoing


def test_disk_shows_free_space_and_limits(webgui: WebGui, viewer: httpx.Client) -> None:
    """Free space of the data folder, with the receiver's floor and the cleaner's threshold."""
    page = viewer.get("/overview/services", headers=FRAGMENT).text
    stat = os.statvfs(webgui.data.root)
    assert "disk (data folder)" in page
    assert "receiver refuses below 1.0 GB free" in page
    assert "cleaner starts at 90 %" in page
    assert stat.f_bavail > 0


def test_throughput_counts_this_hour_and_the_last_day(webgui: WebGui, viewer: httpx.Client) -> None:
    """Instances received and sent, tasks completed and failed, from the statistics API;
    the recent errors list the failures."""
    now = utcnow()
    hour = now.replace(minute=0, second=0, microsecond=0)
    earlier = hour - timedelta(hours=5)
    events = [
        Event(
            time=hour,
            service="receiver",
            kind="series.received",
            series_uid="s1",
            data={"instances": 1200},
        ),
        Event(
            time=earlier,
            service="receiver",
            kind="series.received",
            series_uid="s2",
            data={"instances": 34},
        ),
        Event(
            time=hour,
            service="dispatcher",
            kind="dispatch.complete",
            task_id="t1",
            data={"target": "pacs", "instances": 1200},
        ),
        Event(time=hour, service="dispatcher", kind="task.completed", task_id="t1"),
        Event(
            time=earlier,
            service="dispatcher",
            kind="task.failed",
            task_id="t2",
            severity="error",
            message="pacs refused the association",
        ),
    ]
    webgui.store_events(events)
    page = viewer.get("/overview/throughput", headers=FRAGMENT).text
    received = page.split("instances received")[1].split("</tr>")[0]
    assert "1\u202f200" in received and "1\u202f234" in received
    sent = page.split("instances sent")[1].split("</tr>")[0]
    assert sent.count("1\u202f200") == 2
    failed = page.split("tasks failed")[1].split("</tr>")[0]
    assert '<td class="big">0</td><td class="big bad-text">1</td>' in failed
    assert "pacs refused the association" in page
    assert 'id="bookkeeper-banner" hx-swap-oob="true"' in page


def test_chart_has_seven_days_of_hours(webgui: WebGui, viewer: httpx.Client) -> None:
    """168 hourly points, the last one the current hour, received and sent per hour."""
    now = utcnow()
    webgui.store_events(
        [
            Event(
                time=now,
                service="receiver",
                kind="series.received",
                series_uid="s1",
                data={"instances": 7},
            ),
            Event(
                time=now - timedelta(days=3),
                service="dispatcher",
                kind="dispatch.complete",
                task_id="t",
                data={"instances": 5},
            ),
        ]
    )
    data = viewer.get("/overview/chart.json", headers={"accept": "application/json"}).json()
    assert len(data["x"]) == len(data["received"]) == len(data["dispatched"]) == 168
    assert data["received"][-1] == 7
    assert sum(data["dispatched"]) == 5
    assert data["x"][-1] == int(now.replace(minute=0, second=0, microsecond=0).timestamp())


def test_bookkeeper_down_keeps_the_data_folder_parts_live(
    webgui: WebGui, viewer: httpx.Client
) -> None:
    """Throughput and chart say they are unavailable, services and queues still answer."""
    webgui.beat_all()
    webgui.bookkeeper_down = True
    throughput = viewer.get("/overview/throughput", headers=FRAGMENT)
    assert throughput.status_code == 200
    assert "Not available while the bookkeeper is unreachable" in throughput.text
    assert "Bookkeeper unreachable" in throughput.text  # the banner, out of band
    assert viewer.get("/overview/chart.json").status_code == 503
    services = viewer.get("/overview/services", headers=FRAGMENT)
    assert f"All {len(installed_services())} services running" in services.text


def test_queue_depth_is_listed_again_only_when_the_folder_may_have_changed(
    tmp_path: Path,
) -> None:
    """A settled folder whose mtime did not move keeps its count (not listed again); an entry
    added moves the mtime and the count; a folder changed within the last seconds is listed
    on every call, since a change in the same clock tick leaves its mtime as it was."""
    data = DataFolder(tmp_path / "data")
    data.ensure()
    folder = data.stage(Stage.SUCCESS)
    for n in range(3):
        (folder / f"task{n}").mkdir()
    (folder / ".deleting-task9").mkdir()
    counter = StageCounter()

    def set_mtime(mtime_ns: int) -> None:
        os.utime(folder, ns=(mtime_ns, mtime_ns))

    settled = time.time_ns() - 60 * 10**9
    set_mtime(settled)
    assert counter.depths(data)[Stage.SUCCESS] == 3
    (folder / "task3").mkdir()
    assert counter.depth(folder) == 4
    set_mtime(settled)
    assert counter.depth(folder) == 4
    (folder / "task4").mkdir()
    set_mtime(settled)  # a change that left the mtime as it was: not seen, by design
    assert counter.depth(folder) == 4

    recent = time.time_ns() - 10**9
    set_mtime(recent)
    assert counter.depth(folder) == 5
    (folder / "task5").mkdir()
    set_mtime(recent)  # racy: the same mtime, but too recent to trust
    assert counter.depth(folder) == 6
    assert counter.depths(data) == data.queue_depths()


def test_a_multi_process_receiver_is_one_row_until_a_process_is_down() -> None:
    """receiver.processes: the children's heartbeats (`<instance>:<n>`) fold into the parent's
    row while they are up; a child that is not up keeps its own row, so it shows."""
    from mercure.webgui.overview import ServiceStatus, _folded

    rows = [
        ServiceStatus(name="receiver", state="up", instance="host1"),
        ServiceStatus(name="receiver", state="up", instance="host1:1"),
        ServiceStatus(name="receiver", state="up", instance="host1:2"),
    ]
    folded = _folded(rows)
    assert [(r.instance, r.processes) for r in folded] == [("host1", 2)]
    rows[2] = ServiceStatus(name="receiver", state="stale", instance="host1:2")
    folded = _folded(rows)
    assert [(r.instance, r.state, r.processes) for r in folded] == [
        ("host1", "up", 1),
        ("host1:2", "stale", 0),
    ]
    # an instance name with a colon but no parent heartbeat stays as it is
    lone = [ServiceStatus(name="router", state="up", instance="edge:7")]
    assert _folded(lone) == lone
