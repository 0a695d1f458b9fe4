"""A DICOM Part 10 byte stream (one part of a STOW-RS request or a WADO-RS answer) placed as
the C-STORE receiver places an instance.

The placer's sinks take what a C-STORE carries: a dataset without File Meta, with the SOP class,
SOP instance and transfer syntax known beforehand from the request (the placer writes its own
File Meta in front). A Part 10 stream carries those three in its File Meta instead, so
:class:`Part10Stream` reads the preamble, ``DICM`` and group 0002 (bounded by ``max_meta``),
makes the :class:`~mercure.dicomnet.handler.StoreContext` from it, opens the sink, and streams
every following byte straight into it: no instance is ever held in memory, and what lands in
``incoming/<series>/`` is byte for byte the dataset that was sent.

Usage, per part::

    stream = Part10Stream(association, open_sink, expected_study_uid=study_uid)
    try:
        for chunk in body:
            stream.feed(chunk)
        status = await stream.finish()
    except BaseException:
        stream.abort()
        raise

``feed`` raises :class:`Part10Error` for a stream that is not Part 10 (and whatever the sink
raises, e.g. :class:`~mercure.dicomnet.errors.StoreRefused` at the disk floor); ``finish``
answers the C-STORE status the placer decided (``SUCCESS`` only once the file is durable in its
series folder) and sets :attr:`Part10Stream.reason` when it is not a success.
"""

from __future__ import annotations

import inspect
import itertools
import struct
import time
from collections.abc import Callable

from mercure.core.errors import PermanentError
from mercure.dicomnet.dimse import DATASET_DOES_NOT_MATCH_SOP_CLASS, SUCCESS
from mercure.dicomnet.handler import AssociationInfo, StoreContext, StoreSink
from mercure.dicomnet.scanner import STUDY_INSTANCE_UID, DatasetScanner, new_scanner

MAX_META = 64 * 1024
"""Largest File Meta Information accepted (preamble included); real ones are a few hundred
bytes, so anything bigger is not a DICOM file (or an attempt to make us buffer it)."""

_PREAMBLE = 128
_HEAD = struct.Struct("<HH2s")
_SHORT_LENGTH = struct.Struct("<H")
_LONG_LENGTH = struct.Struct("<I")
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_STUDY_SCAN_LIMIT = 1 << 20
"""StudyInstanceUID comes early in a dataset; stop looking for it after this many bytes."""

_ids = itertools.count(1)

OpenSink = Callable[[StoreContext], StoreSink]
"""Opens the placer's sink for one instance (e.g. a receiver handler's ``open_store``)."""


class Part10Error(PermanentError):
    """The stream is not a usable DICOM Part 10 file (no ``DICM``, File Meta too large or
    lacking its UIDs, truncated). Nothing of it was kept."""


def ingest_association(
    calling_aet: str, called_aet: str, peer: tuple[str, int], *, tls: bool = False
) -> AssociationInfo:
    """An :class:`AssociationInfo` for instances that arrive over HTTP rather than DICOM: the
    titles are what the File Meta's Source AE and the placer's error records show (the AE
    title in the File Meta is cut to its 16 characters)."""
    return AssociationInfo(
        id=-next(_ids),  # negative: never the id of a DICOM association of this process
        calling_aet=calling_aet[:16],
        called_aet=called_aet[:16],
        peer_host=peer[0],
        peer_port=peer[1],
        contexts=(),
        peer_max_pdu=0,
        tls=tls,
        started_at=time.time(),
    )


class Part10Stream:
    """Feeds one Part 10 stream, chunk by chunk, into a sink opened from its File Meta."""

    def __init__(
        self,
        association: AssociationInfo,
        open_sink: OpenSink,
        *,
        expected_study_uid: str | None = None,
        max_meta: int = MAX_META,
        message_id: int = 0,
    ) -> None:
        self._association = association
        self._open_sink = open_sink
        self._expected_study = expected_study_uid
        self._max_meta = max_meta
        self._message_id = message_id
        self._head = bytearray()
        self._sink: StoreSink | None = None
        self._study_scanner: DatasetScanner | None = None
        self.context: StoreContext | None = None
        """The instance's identity, once its File Meta has been read."""
        self.size = 0
        """Dataset bytes fed to the sink so far (File Meta not counted)."""
        self.reason: str | None = None
        """Why the instance was not stored, once :meth:`finish` answered a failure."""

    @property
    def study_uid(self) -> str | None:
        """The dataset's StudyInstanceUID, when it was seen (only looked for when an expected
        study was given)."""
        scanner = self._study_scanner
        return None if scanner is None else scanner.text(STUDY_INSTANCE_UID)

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """The next bytes of the stream."""
        if self._sink is None:
            self._head += chunk
            dataset_at = self._read_meta(final=False)
            if dataset_at is None:
                return
            rest = memoryview(self._head)[dataset_at:]
            self._head = bytearray()
            self._start()
            if len(rest):
                self._write(rest)
            return
        self._write(chunk if isinstance(chunk, memoryview) else memoryview(chunk))

    def _write(self, chunk: memoryview) -> None:
        assert self._sink is not None
        self._sink.write(chunk)
        self.size += len(chunk)
        scanner = self._study_scanner
        if scanner is not None and not scanner.done:
            scanner.feed(chunk)

    def _start(self) -> None:
        assert self.context is not None
        self._sink = self._open_sink(self.context)
        if self._expected_study is not None:
            self._study_scanner = new_scanner(
                self.context.transfer_syntax_uid, (STUDY_INSTANCE_UID,), _STUDY_SCAN_LIMIT
            )

    def _read_meta(self, *, final: bool) -> int | None:
        """Where the dataset starts once the whole File Meta is buffered; None while more is
        needed. Sets :attr:`context`. Raises :class:`Part10Error` for what is not Part 10."""
        head = self._head
        if len(head) < _PREAMBLE + 4:
            if final:
                raise Part10Error(f"stream ends after {len(head)} bytes, before 'DICM'")
            return None
        if head[_PREAMBLE : _PREAMBLE + 4] != b"DICM":
            raise Part10Error("not a DICOM Part 10 stream: no 'DICM' after the 128-byte preamble")
        values: dict[int, bytes] = {}
        pos = _PREAMBLE + 4
        while True:
            if len(head) - pos < 8:
                if final and len(head) == pos:
                    break  # a File Meta and no dataset: the placer refuses it
                self._need_more(final)
                return None
            group, element, vr = _HEAD.unpack_from(head, pos)
            if group != 0x0002:
                break
            if bytes(vr) in _LONG_VRS:
                if len(head) - pos < 12:
                    self._need_more(final)
                    return None
                length = _LONG_LENGTH.unpack_from(head, pos + 8)[0]
                value_at = pos + 12
            else:
                length = _SHORT_LENGTH.unpack_from(head, pos + 6)[0]
                value_at = pos + 8
            if value_at + length > self._max_meta:
                raise Part10Error(
                    f"File Meta Information larger than {self._max_meta} bytes: not accepted"
                )
            if value_at + length > len(head):
                self._need_more(final)
                return None
            values[element] = bytes(head[value_at : value_at + length])
            pos = value_at + length

        def text(element: int) -> str:
            return values.get(element, b"").decode("ascii", "replace").strip("\0 ")

        sop_class, sop_instance, syntax = text(0x0002), text(0x0003), text(0x0010)
        missing = [
            name
            for name, value in (
                ("MediaStorageSOPClassUID (0002,0002)", sop_class),
                ("MediaStorageSOPInstanceUID (0002,0003)", sop_instance),
                ("TransferSyntaxUID (0002,0010)", syntax),
            )
            if not value
        ]
        if missing:
            raise Part10Error(f"File Meta Information lacks {', '.join(missing)}")
        self.context = StoreContext(
            self._association,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
            transfer_syntax_uid=syntax,
            context_id=0,
            message_id=self._message_id,
            priority=0,
            move_originator_aet="",
        )
        return pos

    def _need_more(self, final: bool) -> None:
        """Waiting for more of the File Meta: refused at the end of the stream or past the
        bound."""
        if final:
            raise Part10Error("stream ends inside its File Meta Information")
        if len(self._head) > self._max_meta:
            raise Part10Error(
                f"File Meta Information larger than {self._max_meta} bytes: not accepted"
            )

    async def finish(self) -> int:
        """The stream is complete: the placer's status for the instance (``SUCCESS`` once it
        is durable in ``incoming/<series>/``). A dataset whose StudyInstanceUID differs from
        the expected one is not kept and answers 0xA900."""
        if self._sink is None:
            dataset_at = self._read_meta(final=True)
            assert dataset_at is not None
            rest = memoryview(self._head)[dataset_at:]
            self._head = bytearray()
            self._start()
            if len(rest):
                self._write(rest)
        assert self._sink is not None and self.context is not None
        if self._expected_study is not None:
            found = self.study_uid
            if found != self._expected_study:
                self.abort()
                shown = "missing" if found is None else f"{found[:80]!r}"
                self.reason = (
                    f"StudyInstanceUID {shown} differs from the request's "
                    f"{self._expected_study[:80]!r}"
                )
                return DATASET_DOES_NOT_MATCH_SOP_CLASS
        outcome = self._sink.finish()
        status = await outcome if inspect.isawaitable(outcome) else outcome
        self._sink = None
        if status != SUCCESS:
            self.reason = (
                f"not placed (status 0x{status:04X}; kept in error/ when the dataset is broken)"
            )
        return status

    def abort(self) -> None:
        """Drop what was written of this instance (safe to call more than once)."""
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.abort()
