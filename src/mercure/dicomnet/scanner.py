"""Find a few top-level elements (SeriesInstanceUID ...) in a dataset stream, chunk by chunk,
and optionally check the element structure of the whole stream on the way.

The receiver must know an instance's series before it can place the file, but must not parse
the instance with pydicom. This scanner walks the element headers of the dataset as its bytes
arrive, skipping values (and defined-length sequences) without copying them. Looking for tags
only, it stops as soon as it has passed the highest wanted tag, so pixel data is never reached.

With ``check_structure`` it walks on to the end of the stream and reports, as ``error``, a
dataset that is not well formed (PS3.5 section 7), without parsing any value:

- every element's declared length fits in the stream (a truncated dataset ends inside one);
- every undefined-length sequence, item and encapsulated pixel data element is closed by its
  delimiter, items appear only in sequences, elements only in items or at the top level;
- in an explicit VR transfer syntax every element carries one of the standard's VRs;
- a deflated dataset is a complete deflate stream whose content passes the same checks.

What it cannot see: a stream cut exactly between two top-level elements is a well-formed,
shorter dataset; and the content of defined-length sequences and items is checked only as a
whole (its length fits), not element by element.

There are two implementations with one behaviour: :class:`PythonScanner` here, the reference,
and the same walk compiled (``_scanner.c``, built at install when a C compiler is there; about
12 times faster: 1.5 against 19 µs for a small instance, where the receiver spends about 95 µs
of CPU in all with fsync off).
:func:`new_scanner` gives the compiled one when it is built and the syntax is not deflated, else
the Python one. The tests feed both the same streams and compare what they report.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable
from typing import Protocol

from mercure.dicomnet.uids import is_big_endian, is_deflated, is_implicit_vr

SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
MODALITY = 0x00080060
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E

DEFAULT_TAGS = (STUDY_INSTANCE_UID, SERIES_INSTANCE_UID)

MAX_INFLATED = 4 << 30
"""A deflated dataset that inflates to more than this is refused (a deflate bomb)."""

_UNDEFINED = 0xFFFFFFFF
_MAX_DEPTH = 64
_MAX_CAPTURE = 65536
_INFLATE_STEP = 262144
# Header size of each VR in explicit VR syntaxes (PS3.5 7.1.2): 12 with a 4-byte length.
_VR_HEADER = {
    **dict.fromkeys(
        (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"),
        12,
    ),
    **dict.fromkeys(
        (b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT"),
        8,
    ),
    **dict.fromkeys(
        (b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"),
        8,
    ),
}

# An entry of the stack of open undefined-length containers: tag << 2 | ITEM | IMPLICIT.
_IMPLICIT = 1
"""Its content is implicit VR (a UN of undefined length is implicit VR inside, PS3.5 6.2.2)."""
_ITEM = 2
"""It is an item (elements follow); without it a sequence or pixel data (items follow)."""

_LE_HEAD = struct.Struct("<HH2sH")
"""Tag, VR and 2-byte length of an explicit VR little endian element header, in one unpack."""
_LE_IMPLICIT_HEAD = struct.Struct("<HHI")
"""Tag and length of an implicit VR little endian element header."""
_LE_TAG = struct.Struct("<HH")
_BE_TAG = struct.Struct(">HH")
_LE_U32 = struct.Struct("<I")
_BE_U32 = struct.Struct(">I")
_LE_U16 = struct.Struct("<H")
_BE_U16 = struct.Struct(">H")


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


class DatasetScanner(Protocol):
    """Incremental scanner: ``feed`` it dataset chunks until it returns True (done).

    ``values`` maps each wanted tag found at the top level of the dataset to its raw value
    bytes; ``error`` says why scanning stopped early, or is None. Made by :func:`new_scanner`.
    """

    @property
    def values(self) -> dict[int, bytes]: ...

    @property
    def done(self) -> bool: ...

    @property
    def error(self) -> str | None: ...

    def feed(self, chunk: bytes | bytearray | memoryview, /) -> bool: ...

    def finish(self) -> None: ...

    def text(self, tag: int, /) -> str | None: ...


SCANNER_ENV = "MERCURE_SCANNER"
"""``MERCURE_SCANNER=python`` in a service's environment makes it use the Python scanner even
where the compiled one is built: a switch for ruling the compiled one out."""

try:
    from mercure.dicomnet._scanner import CompiledScanner
except ImportError:  # not built (no C compiler at install): the Python walk does the work
    CompiledScanner = None  # type: ignore[assignment, misc]
COMPILED_BUILT = CompiledScanner is not None
"""Whether the compiled scanner is built (whatever ``MERCURE_SCANNER`` says)."""
if os.environ.get(SCANNER_ENV, "").strip().lower() == "python":
    CompiledScanner = None  # type: ignore[assignment, misc]


def new_scanner(
    transfer_syntax_uid: str,
    tags: Iterable[int] = DEFAULT_TAGS,
    limit: int = 64 * 1024 * 1024,
    *,
    check_structure: bool = False,
) -> DatasetScanner:
    """A scanner for a dataset in ``transfer_syntax_uid`` that looks for ``tags`` (see
    :class:`PythonScanner` for what ``limit`` and ``check_structure`` mean): the compiled one
    where it is built and the syntax is not deflated, else the Python one."""
    if CompiledScanner is not None and not is_deflated(transfer_syntax_uid):
        return CompiledScanner(
            tuple(tags),
            limit,
            check_structure=check_structure,
            implicit=is_implicit_vr(transfer_syntax_uid),
            big_endian=is_big_endian(transfer_syntax_uid),
        )
    return PythonScanner(transfer_syntax_uid, tags, limit, check_structure=check_structure)


class PythonScanner:
    """Incremental scanner in Python: ``feed`` it dataset chunks until it returns True (done).

    ``values`` maps each wanted tag found at the top level of the dataset to its raw value
    bytes; :meth:`text` gives them as stripped text. ``error`` says why scanning stopped early
    when the stream is malformed or ``limit`` bytes went by without the wanted tags; what was
    found until then stays. With ``check_structure`` the scanner is done only at a structural
    error or at :meth:`finish` (``limit`` then only ends the search for tags), and ``error``
    describes the first structural problem (see the module's docstring).
    Chunks are only read during ``feed`` (memoryviews of a reused buffer are fine).
    """

    __slots__ = (
        "_big",
        "_capture",
        "_capture_left",
        "_capture_tag",
        "_carry",
        "_check",
        "_checked_vr",
        "_implicit",
        "_inflated",
        "_inflater",
        "_last",
        "_limit",
        "_open_tag",
        "_searching",
        "_seen",
        "_skip",
        "_stack",
        "_wanted",
        "done",
        "error",
        "values",
    )

    def __init__(
        self,
        transfer_syntax_uid: str,
        tags: Iterable[int] = DEFAULT_TAGS,
        limit: int = 64 * 1024 * 1024,
        *,
        check_structure: bool = False,
    ) -> None:
        wanted = frozenset(tags)
        if not wanted:
            raise ValueError("DatasetScanner needs at least one tag to look for")
        self.values: dict[int, bytes] = {}
        self.done = False
        self.error: str | None = None
        self._wanted = wanted
        self._last = max(wanted)
        self._limit = limit
        self._check = check_structure
        self._searching = True
        self._seen = 0
        self._inflated = 0
        self._implicit = is_implicit_vr(transfer_syntax_uid)
        self._checked_vr = self._implicit
        self._big = is_big_endian(transfer_syntax_uid)
        self._inflater = (
            zlib.decompressobj(-zlib.MAX_WBITS) if is_deflated(transfer_syntax_uid) else None
        )
        self._carry = b""
        self._skip = 0
        self._open_tag = 0
        self._capture = bytearray()
        self._capture_left = 0
        self._capture_tag = 0
        self._stack: list[int] = []

    def text(self, tag: int) -> str | None:
        """The value of ``tag`` as text without padding, or None when it was not found."""
        raw = self.values.get(tag)
        return None if raw is None else raw.decode("ascii", "replace").strip("\0 ")

    def feed(self, chunk: bytes | bytearray | memoryview) -> bool:
        """Scan the next chunk of the dataset; True once nothing more needs to be fed."""
        if self.done:
            return True
        size = len(chunk)
        self._seen += size
        if self._skip > size and not self._searching and self._inflater is None:
            # Inside a long value (pixel data) with nothing left to find: only count it.
            self._skip -= size
            return False
        if self._inflater is None:
            self._scan(chunk)
        else:
            self._inflate(chunk)
        if self._searching and self._seen > self._limit and not self.done:
            self._end_search(f"gave up after {self._limit} bytes")
        return self.done

    def finish(self) -> None:
        """Tell the scanner the dataset ended (all wanted tags that exist have been seen)."""
        if not self.done:
            if self._capture_left or self._skip:
                tag = self._capture_tag if self._capture_left else self._open_tag
                missing = self._capture_left or self._skip
                self._stop(
                    f"dataset ends inside element {_tag_text(tag)}: {missing} bytes of its "
                    "declared length are missing"
                )
            elif self._carry:
                self._stop(f"dataset ends inside an element header ({len(self._carry)} bytes)")
            elif self._stack:
                entry = self._stack[-1]
                what = "an item" if entry & _ITEM else "a sequence"
                self._stop(
                    f"dataset ends inside {what} of undefined length {_tag_text(entry >> 2)} "
                    "that was never closed"
                )
            elif self._check and self._inflater is not None and not self._inflater.eof:
                self._stop("deflated dataset ends before the end of its deflate stream")
        self.done = True

    def _stop(self, error: str | None) -> None:
        self.done = True
        self.error = error
        self._carry = b""
        self._searching = False

    def _end_search(self, error: str | None) -> None:
        """The wanted tags are found, passed or given up on; walk on when checking."""
        if self._check:
            self._searching = False
        else:
            self._stop(error)

    def _inflate(self, chunk: bytes | bytearray | memoryview) -> None:
        inflater = self._inflater
        assert inflater is not None
        try:
            data = inflater.decompress(chunk, _INFLATE_STEP)
            self._inflated += len(data)
            self._scan(data)
            # Bytes after the end of the deflate stream (padding) are ignored.
            while inflater.unconsumed_tail and not inflater.eof and not self.done:
                data = inflater.decompress(inflater.unconsumed_tail, _INFLATE_STEP)
                self._inflated += len(data)
                if self._inflated > MAX_INFLATED:
                    return self._stop(
                        f"deflated dataset inflates to more than {MAX_INFLATED} bytes"
                    )
                self._scan(data)
        except zlib.error as exc:
            self._stop(f"deflated dataset is corrupt: {exc}")

    def _scan(self, chunk: bytes | bytearray | memoryview) -> None:
        data: bytes | bytearray | memoryview = chunk
        if self._carry:
            data = self._carry + bytes(chunk)
            self._carry = b""
        size = len(data)
        pos = 0
        if self._capture_left:
            take = min(self._capture_left, size)
            self._capture += data[:take]
            self._capture_left -= take
            pos = take
            if self._capture_left:
                return
            self._captured()
            if self.done:
                return
        elif self._skip:
            pos = min(self._skip, size)
            self._skip -= pos
            if self._skip:
                return
        big = self._big
        tag_struct = _BE_TAG if big else _LE_TAG
        u32 = _BE_U32 if big else _LE_U32
        u16 = _BE_U16 if big else _LE_U16
        stack = self._stack
        wanted = self._wanted
        last = self._last
        check = self._check
        vr_header = _VR_HEADER
        searching = self._searching
        checked_vr = self._checked_vr
        # Every way out of the loop returns (done, or more bytes needed).
        while True:
            if not stack and not big and checked_vr:
                pos = self._skip_flat(data, pos, size, searching)
            if size - pos < 8:
                self._carry = bytes(data[pos:])
                return
            group, element = tag_struct.unpack_from(data, pos)
            if group == 0xFFFE:
                # Items and delimiters carry no VR in any transfer syntax.
                length = u32.unpack_from(data, pos + 4)[0]
                pos += 8
                if not stack:
                    return self._stop(f"item or delimiter (FFFE,{element:04X}) outside a sequence")
                top = stack[-1]
                if element == 0xE000:
                    if check and top & _ITEM:
                        return self._stop(
                            f"item inside an item of {_tag_text(top >> 2)} without a sequence"
                        )
                    if length == _UNDEFINED:
                        if len(stack) >= _MAX_DEPTH:
                            return self._stop("sequences nested too deeply")
                        stack.append(top | _ITEM)
                    elif pos + length > size:
                        self._skip = pos + length - size
                        self._open_tag = 0xFFFEE000
                        return
                    else:
                        pos += length
                elif element == 0xE00D:
                    if check and not top & _ITEM:
                        return self._stop(
                            f"item delimiter in {_tag_text(top >> 2)} outside an item"
                        )
                    stack.pop()
                elif element == 0xE0DD:
                    if check and top & _ITEM:
                        return self._stop(
                            f"sequence delimiter inside an unclosed item of {_tag_text(top >> 2)}"
                        )
                    stack.pop()
                elif check:
                    return self._stop(f"unknown item tag (FFFE,{element:04X})")
                continue
            if stack:
                top = stack[-1]
                if check and not top & _ITEM:
                    return self._stop(
                        f"element {_tag_text(group << 16 | element)} inside sequence "
                        f"{_tag_text(top >> 2)} but outside an item"
                    )
                implicit = top & _IMPLICIT
            else:
                implicit = self._implicit
            if not implicit and not checked_vr:
                self._checked_vr = checked_vr = True
                vr0, vr1 = data[pos + 4], data[pos + 5]
                if not (65 <= vr0 <= 90 and 65 <= vr1 <= 90):
                    # Some senders write implicit VR under an explicit transfer syntax.
                    self._implicit = implicit = True
            if implicit:
                vr = b""
                length = u32.unpack_from(data, pos + 4)[0]
                header = 8
            else:
                vr = bytes(data[pos + 4 : pos + 6])
                header = vr_header.get(vr, 0)
                if header == 12:
                    if size - pos < 12:
                        self._carry = bytes(data[pos:])
                        return
                    length = u32.unpack_from(data, pos + 8)[0]
                elif header:
                    length = u16.unpack_from(data, pos + 6)[0]
                elif check:
                    return self._stop(
                        f"element {_tag_text(group << 16 | element)} has no valid VR ({vr!r}) "
                        "in an explicit VR transfer syntax"
                    )
                else:
                    length = u16.unpack_from(data, pos + 6)[0]
                    header = 8
            tag = group << 16 | element
            if searching and not stack and (tag > last or group >= 0x7FE0):
                self._end_search(None)
                if self.done:
                    return
                searching = False
            pos += header
            if length == _UNDEFINED:
                if len(stack) >= _MAX_DEPTH:
                    return self._stop("sequences nested too deeply")
                stack.append(tag << 2 | (_IMPLICIT if implicit or vr == b"UN" else 0))
                continue
            if searching and not stack and tag in wanted and length <= _MAX_CAPTURE:
                end = pos + length
                if end <= size:
                    self.values[tag] = bytes(data[pos:end])
                    pos = end
                    if len(self.values) == len(wanted):
                        self._end_search(None)
                        if self.done:
                            return
                        searching = False
                    continue
                self._capture_tag = tag
                self._capture = bytearray(data[pos:])
                self._capture_left = end - size
                return
            if pos + length > size:
                self._skip = pos + length - size
                self._open_tag = tag
                return
            pos += length

    def _skip_flat(
        self, data: bytes | bytearray | memoryview, pos: int, size: int, searching: bool
    ) -> int:
        """Where the general walk must go on, after skipping the common case at ``pos``.

        The common case, most of every dataset: top-level little endian elements with a
        defined length, each whole in this chunk and of no interest to the search. One unpack
        per header; anything else (an item, a sequence of undefined length, an invalid VR, an
        element cut by the chunk's end, a wanted or the last tag) is left to the general walk.
        """
        last = self._last
        wanted = self._wanted
        if self._implicit:
            implicit_head = _LE_IMPLICIT_HEAD.unpack_from
            while size - pos >= 8:
                group, element, length = implicit_head(data, pos)
                end = pos + 8 + length
                if group == 0xFFFE or length == _UNDEFINED or end > size:
                    return pos
                if searching:
                    tag = group << 16 | element
                    if tag >= last or group >= 0x7FE0 or tag in wanted:
                        return pos
                pos = end
            return pos
        explicit_head = _LE_HEAD.unpack_from
        u32 = _LE_U32.unpack_from
        vr_header = _VR_HEADER
        while size - pos >= 12:
            group, element, vr, length = explicit_head(data, pos)
            if group == 0xFFFE:
                return pos
            header = vr_header.get(vr, 0)
            if header == 12:
                length = u32(data, pos + 8)[0]
                if length == _UNDEFINED:
                    return pos
            elif not header:
                return pos
            end = pos + header + length
            if end > size:
                return pos
            if searching:
                tag = group << 16 | element
                if tag >= last or group >= 0x7FE0 or tag in wanted:
                    return pos
            pos = end
        return pos

    def _captured(self) -> None:
        self.values[self._capture_tag] = bytes(self._capture)
        self._capture = bytearray()
        if len(self.values) == len(self._wanted):
            self._end_search(None)


def scan_dataset(
    data: bytes | bytearray | memoryview,
    transfer_syntax_uid: str,
    tags: Iterable[int] = DEFAULT_TAGS,
) -> dict[int, bytes]:
    """One-shot form of :func:`new_scanner` for a dataset (or its start) held in memory."""
    scanner = new_scanner(transfer_syntax_uid, tags)
    scanner.feed(data)
    return scanner.values


def check_dataset(data: bytes | bytearray | memoryview, transfer_syntax_uid: str) -> str | None:
    """Why a complete dataset held in memory is not well formed, or None when it is."""
    scanner = new_scanner(transfer_syntax_uid, (SOP_INSTANCE_UID,), check_structure=True)
    scanner.feed(data)
    scanner.finish()
    return scanner.error
