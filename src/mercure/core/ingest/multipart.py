"""``multipart/related`` bodies (PS3.18 8.6.1.2) read part by part as they stream in.

python-multipart does the boundary search (a well-kept parser, already the web interface's
form parser); its callbacks fire synchronously inside ``write``, while placing an instance
awaits its fsync. :class:`MultipartReader` therefore turns one chunk into a list of events
that the caller then handles in order, awaiting what it needs between them. Part data are
views of the chunk just given (or of the parser's own constant boundary bytes), valid until
the next call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

MAX_PART_HEADER = 8192
"""Longest header line of a part; DICOM parts carry one or two short headers."""
MAX_PART_HEADERS = 16


class MultipartError(ValueError):
    """The body is not well-formed ``multipart`` with the announced boundary."""


@dataclass
class PartStart:
    """A part's headers are complete (names lower-cased)."""

    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class PartData:
    """The next bytes of the current part."""

    data: memoryview


@dataclass
class PartEnd:
    """The current part is complete."""


Event = PartStart | PartData | PartEnd


def content_type_parameters(value: str) -> tuple[str, dict[str, str]]:
    """``multipart/related; type="application/dicom"; boundary=x`` as its media type (lower
    case) and parameters (names lower case, quotes removed)."""
    media, _, rest = value.partition(";")
    parameters: dict[str, str] = {}
    for item in rest.split(";"):
        name, sep, raw = item.partition("=")
        if not sep:
            continue
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1]
        parameters[name.strip().lower()] = raw
    return media.strip().lower(), parameters


class MultipartReader:
    """Feeds a body to the parser; :meth:`feed` answers the events of each chunk."""

    def __init__(self, boundary: str) -> None:
        self._events: list[Event] = []
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[str, str] = {}
        self.ended = False
        """True once the closing boundary was read."""
        try:
            self._parser = MultipartParser(
                boundary.encode("latin-1"),
                {
                    "on_part_begin": self._begin,
                    "on_header_field": self._header_field,
                    "on_header_value": self._header_value,
                    "on_header_end": self._header_end,
                    "on_headers_finished": self._headers_finished,
                    "on_part_data": self._data,
                    "on_part_end": self._end,
                    "on_end": self._finished,
                },
                max_header_count=MAX_PART_HEADERS,
                max_header_size=MAX_PART_HEADER,
            )
        except (UnicodeEncodeError, ValueError, MultipartParseError) as exc:
            raise MultipartError(f"unusable multipart boundary: {exc}") from exc

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse ``chunk``; the events it completes, in order."""
        self._events = []
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise MultipartError(f"malformed multipart body: {exc}") from exc
        return self._events

    def _begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        name = self._field.decode("latin-1").strip().lower()
        self._headers[name] = self._value.decode("latin-1").strip()
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        self._events.append(PartStart(self._headers))

    def _data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self._events.append(PartData(memoryview(data)[start:end]))

    def _end(self) -> None:
        self._events.append(PartEnd())

    def _finished(self) -> None:
        self.ended = True
