"""The logs page: a service's last lines, level and text filters, the live tail (across a
rotation, bounded per step), the journal note, and log text that stays text."""

from __future__ import annotations

import html
import re
from pathlib import Path

import httpx
from webgui_harness import XSS_PAYLOADS, WebGui, assert_inert

from mercure.core.installed import installed_services
from mercure.core.logs import log_file_for
from mercure.webgui.logs import STEP_BYTES

PAGE = {"accept": "text/html"}
POLL = {"hx-request": "true", "x-mercure-poll": "1"}


def record(level: str, message: str, service: str = "router") -> str:
    """One line as the services' text formatter writes it."""
    return f"2026-12-04 03:00:00.000 {level:<7} {service} mercure.{service}: {message}\n"


def write_log(webgui: WebGui, text: str, service: str = "router") -> Path:
    """Append ``text`` to the service's log file in the data folder."""
    path = log_file_for(webgui.config.data_dir, service)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
    return path


def shown(page: str) -> list[str]:
    """The log lines on a page or fragment, as text."""
    lines = re.findall(r'<div class="log-line[^"]*">(.*?)</div>', page, re.S)
    return [html.unescape(line) for line in lines]


def messages(page: str) -> list[str]:
    """The messages of the log lines shown."""
    return [line.rsplit(": ", 1)[-1] for line in shown(page)]


def tail_url(page: str) -> str:
    """The live tail's next request, from the poller on a page or fragment."""
    match = re.search(r'id="log-tail" hx-get="([^"]+)"', page)
    assert match, "no live tail poller"
    return html.unescape(match.group(1))


def test_shows_the_last_lines_of_the_chosen_service(webgui: WebGui, viewer: httpx.Client) -> None:
    """200 lines by default, fewer on request, oldest first; the router is the default."""
    write_log(webgui, "".join(record("INFO", f"line {n}") for n in range(300)))
    write_log(webgui, record("INFO", "dispatcher started", "dispatcher"), "dispatcher")

    page = viewer.get("/logs", headers=PAGE)
    assert page.status_code == 200
    assert messages(page.text) == [f"line {n}" for n in range(100, 300)]
    assert re.search(r'<a [^>]*aria-current="page"[^>]*>router</a>', page.text)

    few = viewer.get("/logs", params={"service": "router", "lines": "5"}, headers=PAGE)
    assert messages(few.text) == [f"line {n}" for n in range(295, 300)]
    other = viewer.get("/logs", params={"service": "dispatcher"}, headers=PAGE)
    assert messages(other.text) == ["dispatcher started"]


def test_every_service_and_the_supervisor_can_be_chosen(
    webgui: WebGui, viewer: httpx.Client
) -> None:
    """The menu of services has the supervisor, every installed service and named instances."""
    write_log(webgui, record("INFO", "second router"), "router@host2")
    page = viewer.get("/logs", headers=PAGE).text
    for name in ["supervisor", *installed_services(), "router@host2"]:
        assert f">{name}</a>" in page, name
    page = viewer.get("/logs", params={"service": "router@host2"}, headers=PAGE).text
    assert messages(page) == ["second router"]


def test_level_filter_shows_that_level_and_above(webgui: WebGui, viewer: httpx.Client) -> None:
    """Info is the default (no debug lines); a traceback stays with its record."""
    write_log(
        webgui,
        record("DEBUG", "debug detail")
        + record("INFO", "routine")
        + record("WARNING", "slow target")
        + record("ERROR", "failed")
        + "Traceback (most recent call last):\n  the cause\n"
        + record("CRITICAL", "stopping"),
    )
    default = viewer.get("/logs", headers=PAGE).text
    assert messages(default)[0] == "routine"
    assert "debug detail" not in default
    levels = {
        "debug": ["debug detail", "routine", "slow target", "the cause", "stopping"],
        "info": ["routine", "slow target", "the cause", "stopping"],
        "warning": ["slow target", "the cause", "stopping"],
        "error": ["the cause", "stopping"],
    }
    for level, expected in levels.items():
        page = viewer.get("/logs", params={"level": level}, headers=PAGE).text
        assert [m.splitlines()[-1].strip() for m in messages(page)] == expected, level
    errors = viewer.get("/logs", params={"level": "error"}, headers=PAGE).text
    assert 'class="log-line lvl-error"' in errors


def test_text_filter_finds_lines_in_any_case(webgui: WebGui, viewer: httpx.Client) -> None:
    """Only records containing the text, at the chosen level, the last N of them."""
    write_log(
        webgui,
        "".join(record("INFO", f"sent to PACS-{n % 3}") for n in range(30))
        + record("DEBUG", "pacs-1 debug"),
    )
    page = viewer.get("/logs", params={"q": "pacs-1"}, headers=PAGE).text
    assert messages(page) == ["sent to PACS-1"] * 10
    page = viewer.get("/logs", params={"q": "pacs-1", "lines": "3", "level": "debug"}).text
    assert messages(page) == ["sent to PACS-1", "sent to PACS-1", "pacs-1 debug"]
    nothing = viewer.get("/logs", params={"q": "no such text"}, headers=PAGE).text
    assert messages(nothing) == []
    assert "No lines containing “no such text”" in nothing


def test_bad_filters_are_named_and_replaced(webgui: WebGui, viewer: httpx.Client) -> None:
    """A wrong level, line count or service is said on the page, never a server error."""
    write_log(webgui, record("INFO", "hello"))
    page = viewer.get("/logs", params={"level": "loud", "lines": "many"}, headers=PAGE)
    assert page.status_code == 200
    assert "Level &#39;loud&#39; is not one of debug, info, warning, error" in page.text
    assert "Lines &#39;many&#39; is not a number" in page.text
    assert messages(page.text) == ["hello"]
    huge = viewer.get("/logs", params={"lines": "999999"}, headers=PAGE)
    assert "Lines must be 1 to 2000" in huge.text
    unknown = viewer.get("/logs", params={"service": "../../etc/passwd"}, headers=PAGE)
    assert unknown.status_code == 404
    assert "There is no log of a service &#39;../../etc/passwd&#39;" in unknown.text


def test_a_service_without_a_file_says_where_its_log_is(
    webgui: WebGui, viewer: httpx.Client
) -> None:
    """No file for the service: the note names the folder and the journal command."""
    page = viewer.get("/logs", params={"service": "cleaner"}, headers=PAGE).text
    assert "No log file for cleaner in" in page
    assert str(webgui.config.data_dir / "logs") in page
    assert "journalctl -u mercure@cleaner" in page
    assert 'id="log-tail"' not in page


def test_with_log_files_off_the_page_points_to_the_journal(
    webgui: WebGui, viewer: httpx.Client
) -> None:
    """logging.files: false: the page says the logs are in the journal, with the command."""
    config = webgui.context.config
    webgui.context.config = config.model_copy(
        update={"logging": config.logging.model_copy(update={"files": False})}
    )
    page = viewer.get("/logs", params={"service": "router"}, headers=PAGE).text
    assert "This installation writes no log files" in page
    assert "journalctl -u mercure" in page


def test_live_tail_returns_only_new_lines_and_survives_rotation(
    webgui: WebGui, viewer: httpx.Client
) -> None:
    """Each step gives what came after the last one; lines written just before a rotation
    and the new file's lines both arrive, each once."""
    path = write_log(webgui, record("INFO", "old"))
    page = viewer.get("/logs", headers=PAGE).text
    assert messages(page) == ["old"]
    step = viewer.get(tail_url(page), headers=POLL)
    assert step.status_code == 200
    assert messages(step.text) == []

    write_log(webgui, record("INFO", "new 1") + record("DEBUG", "hidden") + record("INFO", "new 2"))
    step = viewer.get(tail_url(step.text), headers=POLL)
    assert messages(step.text) == ["new 1", "new 2"]
    step = viewer.get(tail_url(step.text), headers=POLL)
    assert messages(step.text) == []

    write_log(webgui, record("INFO", "just before rotation"))
    path.rename(path.with_name(path.name + ".1"))
    write_log(webgui, record("INFO", "first after rotation"))
    seen = []
    next_url = tail_url(step.text)
    for _ in range(3):
        step = viewer.get(next_url, headers=POLL)
        seen += messages(step.text)
        next_url = tail_url(step.text)
    assert seen == ["just before rotation", "first after rotation"]


def test_live_tail_keeps_the_filters(webgui: WebGui, viewer: httpx.Client) -> None:
    """The tail shows only new lines of the page's level and text."""
    write_log(webgui, record("INFO", "start"))
    page = viewer.get("/logs", params={"level": "warning", "q": "pacs"}, headers=PAGE).text
    write_log(
        webgui,
        record("WARNING", "PACS slow") + record("WARNING", "other") + record("INFO", "pacs ok"),
    )
    step = viewer.get(tail_url(page), headers=POLL)
    assert messages(step.text) == ["PACS slow"]


def test_live_tail_reads_a_bounded_amount_per_step(webgui: WebGui, viewer: httpx.Client) -> None:
    """A flood of lines comes in steps of at most STEP_BYTES, with a note that it is behind."""
    write_log(webgui, record("INFO", "start"))
    page = viewer.get("/logs", headers=PAGE).text
    line = record("INFO", "x" * 200)
    count = 3 * STEP_BYTES // len(line)
    write_log(webgui, line * count)
    step = viewer.get(tail_url(page), headers=POLL)
    assert 0 < len(shown(step.text)) * len(line) <= STEP_BYTES
    assert "The live tail is" in step.text and "behind the file" in step.text
    total = len(shown(step.text))
    for _ in range(5):
        step = viewer.get(tail_url(step.text), headers=POLL)
        total += len(shown(step.text))
    assert total == count
    assert "behind the file" not in step.text


def test_a_paused_page_has_no_live_tail(webgui: WebGui, viewer: httpx.Client) -> None:
    """live=0 renders the lines without the poller, with a link to resume."""
    write_log(webgui, record("INFO", "hello"))
    page = viewer.get("/logs", params={"live": "0"}, headers=PAGE).text
    assert messages(page) == ["hello"]
    assert 'id="log-tail"' not in page
    assert "resume live tail" in page


def test_unknown_service_in_the_tail_is_refused(webgui: WebGui, viewer: httpx.Client) -> None:
    """The tail reads only the files the page lists."""
    answer = viewer.get("/logs/tail", params={"service": "../secrets"}, headers=POLL)
    assert answer.status_code == 404


def test_hostile_log_lines_stay_text(webgui: WebGui, viewer: httpx.Client) -> None:
    """A log line may hold anything (a peer's AE title, a patient name at debug level)."""
    write_log(webgui, record("INFO", "start"))
    page = viewer.get("/logs", headers=PAGE).text
    write_log(webgui, "".join(record("ERROR", f"from AE {p} patient {p}") for p in XSS_PAYLOADS))
    step = viewer.get(tail_url(page), headers=POLL).text
    full = viewer.get("/logs", params={"q": XSS_PAYLOADS[1]}, headers=PAGE).text
    for text in (step, full):
        assert_inert(text)
        for payload in XSS_PAYLOADS:
            assert payload not in text
    assert len(messages(step)) == 2
    assert messages(step)[0] == f"from AE {XSS_PAYLOADS[0]} patient {XSS_PAYLOADS[0]}"
    assert messages(full) == [f"from AE {XSS_PAYLOADS[1]} patient {XSS_PAYLOADS[1]}"]


def test_hostile_log_file_names_stay_text(webgui: WebGui, viewer: httpx.Client) -> None:
    """A file planted in the log folder with markup in its name is listed as text and can
    be chosen; nothing of it runs."""
    name = '"><img src=x onerror=alert(1)>'
    write_log(webgui, record("INFO", "router started"))  # makes the folder
    (webgui.config.data_dir / "logs" / f"{name}.log").write_text(record("INFO", "planted"))
    page = viewer.get("/logs", headers=PAGE).text
    assert_inert(page)
    assert name not in page
    link = re.search(
        r'<a href="([^"]+)"[^>]*>&#34;&gt;&lt;img src=x onerror=alert\(1\)&gt;</a>', page
    )
    assert link is not None
    chosen = viewer.get(html.unescape(link.group(1)), headers=PAGE)
    assert chosen.status_code == 200
    assert_inert(chosen.text)
    assert messages(chosen.text) == ["planted"]
