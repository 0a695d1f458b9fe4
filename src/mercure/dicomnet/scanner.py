"""Find a few top-level elements (SeriesInstanceUID ...) in a dataset stream, chunk by chunk.

The receiver must know an instance's series before it can place the file, but must not parse
the instance with pydicom. This scanner walks the element headers of the dataset as its bytes
arrive, skipping values (and whole sequences, defined or undefined length) without copying
them, and stops as soon as it has passed the highest wanted tag. Pixel data is never reached
for the usual tags, since group 7FE0 sorts after them.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable

from mercure.dicomnet.uids import is_big_endian, is_deflated, is_implicit_vr

SOP_INSTANCE_UID = 0x00080018
MODALITY = 0x00080060
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E

DEFAULT_TAGS = (STUDY_INSTANCE_UID, SERIES_INSTANCE_UID)

_UNDEFINED = 0xFFFFFFFF
_MAX_DEPTH = 64
_MAX_CAPTURE = 65536
_INFLATE_STEP = 262144
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)

_LE_TAG = struct.Struct("<HH")
_BE_TAG = struct.Struct(">HH")
_LE_U32 = struct.Struct("<I")
_BE_U32 = struct.Struct(">I")
_LE_U16 = struct.Struct("<H")
_BE_U16 = struct.Struct(">H")


class DatasetScanner:
    """Incremental scanner: ``feed`` it dataset chunks until it returns True (done).

    ``values`` maps each wanted tag found at the top level of the dataset to its raw value
    bytes; :meth:`text` gives them as stripped text. ``error`` says why scanning stopped early
    when the stream is malformed or ``limit`` bytes went by; what was found until then stays.
    Chunks are only read during ``feed`` (memoryviews of a reused buffer are fine).
    """

    __slots__ = (
        "_big",
        "_capture",
        "_capture_left",
        "_capture_tag",
        "_carry",
        "_checked_vr",
        "_implicit",
        "_inflater",
        "_last",
        "_limit",
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
        self._seen = 0
        self._implicit = is_implicit_vr(transfer_syntax_uid)
        self._checked_vr = self._implicit
        self._big = is_big_endian(transfer_syntax_uid)
        self._inflater = (
            zlib.decompressobj(-zlib.MAX_WBITS) if is_deflated(transfer_syntax_uid) else None
        )
        self._carry = b""
        self._skip = 0
        self._capture = bytearray()
        self._capture_left = 0
        self._capture_tag = 0
        # One entry per open undefined-length sequence or item: True when its content is
        # implicit VR (a UN of undefined length is implicit VR inside, PS3.5 6.2.2).
        self._stack: list[bool] = []

    def text(self, tag: int) -> str | None:
        """The value of ``tag`` as text without padding, or None when it was not found."""
        raw = self.values.get(tag)
        return None if raw is None else raw.decode("ascii", "replace").strip("\0 ")

    def feed(self, chunk: bytes | bytearray | memoryview) -> bool:
        """Scan the next chunk of the dataset; True once nothing more needs to be fed."""
        if self.done:
            return True
        self._seen += len(chunk)
        if self._inflater is None:
            self._scan(chunk)
        else:
            self._inflate(chunk)
        if not self.done and self._seen > self._limit:
            self._stop(f"gave up after {self._limit} bytes")
        return self.done

    def finish(self) -> None:
        """Tell the scanner the dataset ended (all wanted tags that exist have been seen)."""
        if not self.done and (self._skip or self._carry or self._stack or self._capture_left):
            self._stop("dataset ended inside an element")
        self.done = True

    def _stop(self, error: str | None) -> None:
        self.done = True
        self.error = error
        self._carry = b""

    def _inflate(self, chunk: bytes | bytearray | memoryview) -> None:
        inflater = self._inflater
        assert inflater is not None
        try:
            data = inflater.decompress(chunk, _INFLATE_STEP)
            self._scan(data)
            while inflater.unconsumed_tail and not self.done:
                self._scan(inflater.decompress(inflater.unconsumed_tail, _INFLATE_STEP))
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
        while not self.done:
            if size - pos < 8:
                self._carry = bytes(data[pos:])
                return
            group, element = tag_struct.unpack_from(data, pos)
            if group == 0xFFFE:
                # Items and delimiters carry no VR in any transfer syntax.
                length = u32.unpack_from(data, pos + 4)[0]
                pos += 8
                if not stack:
                    return self._stop("item or delimiter outside a sequence")
                if element == 0xE000:
                    if length == _UNDEFINED:
                        stack.append(stack[-1])
                    elif pos + length > size:
                        self._skip = pos + length - size
                        return
                    else:
                        pos += length
                elif element in (0xE00D, 0xE0DD):
                    stack.pop()
                continue
            implicit = stack[-1] if stack else self._implicit
            if not implicit and not self._checked_vr:
                self._checked_vr = True
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
                if vr in _LONG_VRS:
                    if size - pos < 12:
                        self._carry = bytes(data[pos:])
                        return
                    length = u32.unpack_from(data, pos + 8)[0]
                    header = 12
                else:
                    length = u16.unpack_from(data, pos + 6)[0]
                    header = 8
            tag = group << 16 | element
            if not stack and (tag > last or group >= 0x7FE0):
                return self._stop(None)
            pos += header
            if length == _UNDEFINED:
                if len(stack) >= _MAX_DEPTH:
                    return self._stop("sequences nested too deeply")
                stack.append(implicit or vr == b"UN")
                continue
            if not stack and tag in wanted and length <= _MAX_CAPTURE:
                end = pos + length
                if end <= size:
                    self.values[tag] = bytes(data[pos:end])
                    pos = end
                    if len(self.values) == len(wanted):
                        return self._stop(None)
                    continue
                self._capture_tag = tag
                self._capture = bytearray(data[pos:])
                self._capture_left = end - size
                return
            if pos + length > size:
                self._skip = pos + length - size
                return
            pos += length

    def _captured(self) -> None:
        self.values[self._capture_tag] = bytes(self._capture)
        self._capture = bytearray()
        if len(self.values) == len(self._wanted):
            self._stop(None)


def scan_dataset(
    data: bytes | bytearray | memoryview,
    transfer_syntax_uid: str,
    tags: Iterable[int] = DEFAULT_TAGS,
) -> dict[int, bytes]:
    """One-shot form of :class:`DatasetScanner` for a dataset (or its start) held in memory."""
    scanner = DatasetScanner(transfer_syntax_uid, tags)
    scanner.feed(data)
    return scanner.values
