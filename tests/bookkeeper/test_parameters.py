"""Absurd numbers and times in query parameters get a 422 that names them, never a 500.

The routes and their parameters are read from the application itself, so a route or a
parameter added later is covered without touching this test.
"""

from __future__ import annotations

import datetime
import types
import typing
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from bookkeeper_harness import RunningApp
from fastapi.routing import APIRoute

from mercure.bookkeeper.app import create_app

HUGE_INTEGERS = ["9" * 20, "-" + "9" * 20, "18446744073709551616", "1e400", "nan", "-1"]
EXTREME_TIMES = [
    "0001-01-01T00:00:00",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59",
    "9999-12-31T23:59:59-14:00",
    "99999-01-01",
    "-1",
    "1" + "0" * 30,
]


def _base(annotation: object) -> object:
    """``int`` for ``int | None``, ``Annotated[int, ...]`` and their combinations."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _base(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return _base(next(a for a in typing.get_args(annotation) if a is not type(None)))
    return annotation


def _numeric_parameters() -> Iterator[tuple[str, str, object]]:
    """(path, parameter, type) of every numeric or time query parameter of every GET route."""
    # Building the application runs no query: an engine that was never connected will do.
    app = create_app(sa.create_engine("sqlite://"), api_key="unused")
    for route in app.routes:
        if not isinstance(route, APIRoute) or "GET" not in route.methods:
            continue
        for param in route.dependant.query_params:
            kind = _base(param.field_info.annotation)
            if kind in (int, float, datetime.datetime):
                yield route.path, param.name, kind


PARAMETERS = list(_numeric_parameters())


def test_the_enumeration_finds_the_paging_and_time_parameters() -> None:
    """The enumeration is not empty: it sees offsets, limits and times of several routes."""
    names = {(path, name) for path, name, _ in PARAMETERS}
    assert ("/api/v1/events", "offset") in names
    assert ("/api/v1/tasks", "limit") in names
    assert ("/api/v1/statistics", "until") in names
    assert len({path for path, _, _ in PARAMETERS}) >= 5


@pytest.mark.parametrize(("path", "name", "kind"), PARAMETERS, ids=lambda v: str(v))
def test_absurd_values_are_refused_with_422(
    bookkeeper: RunningApp, path: str, name: str, kind: object
) -> None:
    """Every absurd value of a numeric or time parameter is 200 or 422 (naming it), never 500;
    an integer beyond any page (20 digits) is always 422."""
    url = path.replace("{task_id}", "t-1")
    values = EXTREME_TIMES if kind is datetime.datetime else HUGE_INTEGERS
    for value in values:
        response = bookkeeper.client.get(url, params={name: value})
        assert response.status_code in (200, 422), (name, value, response.text)
        if response.status_code == 422:
            assert name in response.text, response.text
        if kind is int and value.lstrip("-").isdigit() and len(value.lstrip("-")) >= 20:
            assert response.status_code == 422, (name, value)


def test_extreme_times_together_are_refused(bookkeeper: RunningApp) -> None:
    """A range that reaches past the calendar's ends (since/until at year 1 or 9999 with a
    zone) is a 422, on every route that takes a range."""
    for path in {p for p, n, _ in PARAMETERS if n == "since"}:
        for since, until in (
            ("0001-01-01T00:00:00+14:00", "0001-01-01T01:00:00+14:00"),
            ("9999-12-31T00:00:00-14:00", "9999-12-31T23:00:00-14:00"),
        ):
            response = bookkeeper.client.get(path, params={"since": since, "until": until})
            assert response.status_code in (200, 422), (path, response.text)
