"""C-MOVE and C-GET as SCU (PS3.4 annex C.4.2 and C.4.3): the retrieve side of the requestor.

A retrieve is one request followed by a stream of responses: pending C-MOVE-RSP / C-GET-RSP
messages with sub-operation counts, then one final response (whose identifier, if any, lists
the failed SOP instances). A C-GET also carries the instances themselves on the same
association: the peer sends C-STORE-RQ sub-operations to us (we took the SCP role for the
storage SOP classes at association set-up) and waits for each C-STORE-RSP. Those instances
are streamed into the application's sinks exactly as the acceptor streams them (views of the
receive buffer, no pydicom per instance), so a C-GET lands instances through the receiver's
own write path.

:class:`RetrieveOperation` is plugged into the requestor's connection for the time of one
request; :class:`~mercure.dicomnet.requestor.Association` sends the request and awaits it.

Role selection and transfer syntaxes (what a peer does with them): a C-GET peer sends each
instance on an accepted context of its SOP class for which we proposed the SCP role. Where
one of them is in the instance's stored transfer syntax, Orthanc and DCMTK send the stored
bytes unchanged; otherwise they convert (Orthanc transcodes) or fail that sub-operation. So
:func:`get_contexts` proposes one context per SOP class and syntax group (Explicit VR LE,
Implicit VR LE, and for images the compressed syntaxes): the acceptor picks one syntax per
context, and separate contexts let it keep each instance's own encoding.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from mercure.dicomnet import dimse
from mercure.dicomnet.connection import UpperLayerConnection
from mercure.dicomnet.errors import AssociationError
from mercure.dicomnet.handler import (
    DISCARD_SINK,
    AssociationInfo,
    StoreContext,
    StoreSink,
    failure_status,
)
from mercure.dicomnet.negotiation import AcceptedContext, ContextProposal
from mercure.dicomnet.pdu import RoleSelection, encode_pdata
from mercure.dicomnet.uids import (
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    JPEG_2000,
    JPEG_2000_LOSSLESS,
    JPEG_BASELINE,
    JPEG_LOSSLESS_SV1,
    RLE_LOSSLESS,
)

log = logging.getLogger(__name__)

Model = Literal["study", "patient"]
"""The Query/Retrieve information model: Study Root or Patient Root."""

_FIND_CLASSES: dict[str, str] = {
    "study": "1.2.840.10008.5.1.4.1.2.2.1",
    "patient": "1.2.840.10008.5.1.4.1.2.1.1",
}
_MOVE_CLASSES: dict[str, str] = {
    "study": "1.2.840.10008.5.1.4.1.2.2.2",
    "patient": "1.2.840.10008.5.1.4.1.2.1.2",
}
_GET_CLASSES: dict[str, str] = {
    "study": "1.2.840.10008.5.1.4.1.2.2.3",
    "patient": "1.2.840.10008.5.1.4.1.2.1.3",
}

ProgressCallback = Callable[[int, int, int, int], None]
"""Called per pending response with (remaining, completed, failed, warning) sub-operations."""

MAX_IDENTIFIER = 16 << 20
"""Largest response identifier kept (a failed-instance list of 100 000 UIDs is ~7 MB)."""

_PENDING = frozenset({dimse.PENDING, dimse.PENDING_WITH_WARNINGS})

JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
COMPRESSED_SYNTAXES: tuple[str, ...] = (
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
    JPEG_2000_LOSSLESS,
    RLE_LOSSLESS,
    JPEG_BASELINE,
    JPEG_EXTENDED,
    JPEG_LS_NEAR_LOSSLESS,
    JPEG_2000,
)
"""Proposed (in one context per image SOP class) so that compressed instances stay compressed:
lossless first, as an acceptor that must choose one should prefer not to lose anything."""

IMAGE_STORAGE_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.4",  # MR Image
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.128",  # PET Image
    "1.2.840.10008.5.1.4.1.1.130",  # Enhanced PET Image
    "1.2.840.10008.5.1.4.1.1.20",  # Nuclear Medicine Image
    "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image
    "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image - For Processing
    "1.2.840.10008.5.1.4.1.1.1.2",  # Digital Mammography X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography X-Ray Image - For Processing
    "1.2.840.10008.5.1.4.1.1.13.1.3",  # Breast Tomosynthesis Image
    "1.2.840.10008.5.1.4.1.1.12.1",  # X-Ray Angiographic Image
    "1.2.840.10008.5.1.4.1.1.12.2",  # X-Ray Radiofluoroscopic Image
    "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image
    "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.481.1",  # RT Image
    "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic Image
    "1.2.840.10008.5.1.4.1.1.77.1.6",  # VL Whole Slide Microscopy Image
    "1.2.840.10008.5.1.4.1.1.77.1.5.1",  # Ophthalmic Photography 8 Bit Image
)
"""Image storage SOP classes proposed for C-GET by default (three contexts each)."""

OTHER_STORAGE_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.481.2",  # RT Dose
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT Structure Set
    "1.2.840.10008.5.1.4.1.1.481.5",  # RT Plan
    "1.2.840.10008.5.1.4.1.1.481.8",  # RT Ion Plan
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.66.1",  # Spatial Registration
    "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection Document
    "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.66",  # Raw Data
)
"""Non-image storage SOP classes proposed for C-GET by default (two contexts each)."""

MAX_CONTEXTS = 128
"""PS3.8 9.3.2.2: context IDs are odd numbers 1..255."""


@dataclass(frozen=True, slots=True)
class RetrieveResult:
    """How a C-MOVE or C-GET ended: the final status and the sub-operation counts."""

    status: int
    error_comment: str
    completed: int
    failed: int
    warning: int
    failed_sop_instances: tuple[str, ...]
    """From the final response's identifier (Failed SOP Instance UID List), if it had one."""

    @property
    def ok(self) -> bool:
        """True when the retrieve succeeded (possibly with warnings) and nothing failed."""
        return dimse.is_success(self.status) and self.failed == 0


def find_class(model: Model) -> str:
    """The C-FIND SOP class UID of an information model (the query: see ``find``)."""
    return _model_class(_FIND_CLASSES, model)


def move_class(model: Model) -> str:
    """The C-MOVE SOP class UID of an information model."""
    return _model_class(_MOVE_CLASSES, model)


def get_class(model: Model) -> str:
    """The C-GET SOP class UID of an information model."""
    return _model_class(_GET_CLASSES, model)


def _model_class(classes: dict[str, str], model: str) -> str:
    try:
        return classes[model]
    except KeyError:
        raise ValueError(
            f"unknown query/retrieve model {model!r} (use 'study' or 'patient')"
        ) from None


def move_contexts(model: Model = "study") -> list[ContextProposal]:
    """The presentation context to propose for C-MOVE (the instances go elsewhere)."""
    return [ContextProposal(move_class(model))]


def get_contexts(
    model: Model = "study",
    *,
    image_classes: Sequence[str] = IMAGE_STORAGE_CLASSES,
    other_classes: Sequence[str] = OTHER_STORAGE_CLASSES,
    compressed_syntaxes: Sequence[str] = COMPRESSED_SYNTAXES,
) -> tuple[list[ContextProposal], list[RoleSelection]]:
    """Contexts and role selections to propose for C-GET.

    The C-GET context first, then per image class three contexts (Explicit VR LE, Implicit VR
    LE, the compressed syntaxes) and per other class two, each with a role selection taking
    the SCP role for that class (PS3.7 D.3.3.4): without it the peer may not send C-STORE
    sub-operations to us. Raises ValueError when that makes more than 128 contexts.
    """
    contexts = [ContextProposal(get_class(model))]
    uncompressed = ((EXPLICIT_VR_LITTLE_ENDIAN,), (IMPLICIT_VR_LITTLE_ENDIAN,))
    for sop_class in image_classes:
        contexts.extend(ContextProposal(sop_class, syntaxes) for syntaxes in uncompressed)
        if compressed_syntaxes:
            contexts.append(ContextProposal(sop_class, tuple(compressed_syntaxes)))
    for sop_class in other_classes:
        contexts.extend(ContextProposal(sop_class, syntaxes) for syntaxes in uncompressed)
    if len(contexts) > MAX_CONTEXTS:
        raise ValueError(
            f"C-GET would propose {len(contexts)} presentation contexts; at most {MAX_CONTEXTS} "
            "fit an association: propose fewer storage SOP classes"
        )
    classes = dict.fromkeys([*image_classes, *other_classes])
    roles = [RoleSelection(sop_class, scu_role=False, scp_role=True) for sop_class in classes]
    return contexts, roles


def encode_identifier(identifier: Dataset, transfer_syntax_uid: str) -> bytes:
    """The identifier dataset encoded in the context's transfer syntax (once per request)."""
    fp = DicomBytesIO()
    fp.is_little_endian = transfer_syntax_uid != EXPLICIT_VR_BIG_ENDIAN
    fp.is_implicit_VR = transfer_syntax_uid == IMPLICIT_VR_LITTLE_ENDIAN
    write_dataset(fp, identifier)
    return fp.getvalue()


def failed_instances(data: bytes, transfer_syntax_uid: str) -> tuple[str, ...]:
    """The Failed SOP Instance UID List of a final response's identifier ('' parts dropped)."""
    if not data:
        return ()
    try:
        ds = read_dataset(
            io.BytesIO(data),
            transfer_syntax_uid == IMPLICIT_VR_LITTLE_ENDIAN,
            transfer_syntax_uid != EXPLICIT_VR_BIG_ENDIAN,
        )
        value = ds.get("FailedSOPInstanceUIDList")
    except Exception as exc:
        log.warning("unreadable identifier in a final retrieve response: %s", exc)
        return ()
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else list(value)
    return tuple(str(uid) for uid in values if str(uid))


class RetrieveOperation:
    """One C-MOVE or C-GET in progress on a requestor connection.

    The connection hands every message to it while it is installed: responses to our request,
    and (C-GET) the peer's C-STORE-RQ sub-operations, whose datasets go into sinks from
    ``open_store`` and whose answers carry the sink's status. ``done`` gets the result, or the
    error that ended the association.
    """

    def __init__(
        self,
        connection: UpperLayerConnection,
        *,
        message_id: int,
        context: AcceptedContext,
        response_field: int,
        peer_max_pdu: int,
        progress: ProgressCallback | None = None,
        storage_contexts: dict[int, AcceptedContext] | None = None,
        association: AssociationInfo | None = None,
        open_store: Callable[[StoreContext], StoreSink] | None = None,
    ) -> None:
        self._conn = connection
        self._loop = asyncio.get_running_loop()
        self.message_id = message_id
        self.context = context
        self._response_field = response_field
        self._peer_max_pdu = peer_max_pdu
        self._progress = progress
        self._storage_contexts = storage_contexts or {}
        self._association = association
        self._open_store = open_store
        self.done: asyncio.Future[RetrieveResult] = self._loop.create_future()
        self.finishing: asyncio.Task[None] | None = None
        # Counts as last reported, in case the final response leaves them out.
        self._counts = (0, 0, 0)
        self._final: tuple[int, str, int, int, int] | None = None
        self._identifier = bytearray()
        self._failed_in_command: tuple[str, ...] = ()
        # The C-STORE sub-operation in progress: its sink, write method and answer.
        self._sink: StoreSink | None = None
        self._write: Callable[[memoryview], None] = _drop
        self._status: int | None = None
        self._comment = ""
        self._rsp_context = 0
        self._rsp_message_id = 0
        self._rsp_class = b""
        self._rsp_instance = b""
        self._storing = False
        self.stored = 0
        self.refused = 0

    # --- messages from the connection ------------------------------------------------------

    def on_command(self, context_id: int, cmd: dict[int, bytes]) -> bool:
        """A complete command set; True when a dataset follows."""
        field = dimse.command_int(cmd, dimse.COMMAND_FIELD)
        has_dataset = dimse.command_int(cmd, dimse.COMMAND_DATA_SET_TYPE) != dimse.NO_DATASET
        if field == dimse.C_STORE_RQ:
            self._begin_store(context_id, cmd, has_dataset)
            if has_dataset:
                return True
            self._respond_store()
            return False
        self._write = _drop
        if (
            field == self._response_field
            and dimse.command_int(cmd, dimse.MESSAGE_ID_BEING_RESPONDED_TO) == self.message_id
        ):
            self._on_response(cmd, has_dataset)
        else:
            log.debug("ignoring an unexpected message (command 0x%04X) during a retrieve", field)
        return has_dataset

    def _on_response(self, cmd: dict[int, bytes], has_dataset: bool) -> None:
        status = dimse.command_int(cmd, dimse.STATUS)
        counts = tuple(
            dimse.command_int(cmd, element)
            for element in (
                dimse.COMPLETED_SUBOPERATIONS,
                dimse.FAILED_SUBOPERATIONS,
                dimse.WARNING_SUBOPERATIONS,
            )
        )
        completed, failed, warning = (
            last if now is None else now for now, last in zip(counts, self._counts, strict=True)
        )
        self._counts = (completed, failed, warning)
        if status in _PENDING:
            remaining = dimse.command_int(cmd, dimse.REMAINING_SUBOPERATIONS) or 0
            if self._progress is not None:
                try:
                    self._progress(remaining, completed, failed, warning)
                except Exception:
                    log.exception("retrieve progress callback failed")
            return
        if status is None:
            # Never read a missing status as success: instances may be missing.
            status = dimse.CANNOT_UNDERSTAND
        comment = dimse.command_text(cmd, dimse.ERROR_COMMENT)
        self._final = (status, comment, completed, failed, warning)
        in_command = dimse.command_text(cmd, dimse.FAILED_SOP_INSTANCE_UID_LIST)
        self._failed_in_command = tuple(uid for uid in in_command.split("\\") if uid)
        if has_dataset:
            self._identifier.clear()
            self._write = self._collect_identifier
        else:
            self._complete()

    def _collect_identifier(self, chunk: memoryview) -> None:
        if len(self._identifier) + len(chunk) <= MAX_IDENTIFIER:
            self._identifier += chunk

    def on_data(self, chunk: memoryview) -> None:
        """A fragment of the current message's dataset."""
        try:
            self._write(chunk)
        except Exception as exc:
            self._abort_sink("write failed")
            self._refused_by(exc, "sink.write")

    def on_dataset_end(self) -> None:
        """The current message's dataset is complete."""
        self._write = _drop
        if self._final is not None and not self.done.done():
            self._complete()
            return
        sink = self._sink
        self._sink = None
        if not self._storing:
            return  # the dataset of a pending response or of a stray message: dropped
        if self._status is not None or sink is None or sink is DISCARD_SINK:
            self._respond_store()
            return
        try:
            result = sink.finish()
        except Exception as exc:
            self._sink = sink
            self._abort_sink("finish failed")
            self._refused_by(exc, "sink.finish")
            self._respond_store()
            return
        if type(result) is int:
            self._status = result
            self._respond_store()
            return
        assert not isinstance(result, int)
        self._conn.halt()
        self.finishing = self._loop.create_task(self._await_finish(sink, result))

    def on_failure(self, error: AssociationError) -> None:
        """The association ended: drop the instance being received, fail the request."""
        self._abort_sink("association ended mid-dataset")
        if not self.done.done():
            self.done.set_exception(error)
            self.done.exception()  # retrieved here: the caller may be gone

    def close(self) -> None:
        """The request is over or abandoned: drop an instance still being received."""
        self._abort_sink("retrieve ended mid-dataset")

    # --- C-STORE sub-operations (C-GET) ----------------------------------------------------

    def _begin_store(self, context_id: int, cmd: dict[int, bytes], has_dataset: bool) -> None:
        sop_class_raw = cmd.get(dimse.AFFECTED_SOP_CLASS_UID, b"")
        instance_raw = cmd.get(dimse.AFFECTED_SOP_INSTANCE_UID, b"")
        self._storing = True
        self._rsp_context = context_id
        self._rsp_message_id = dimse.command_int(cmd, dimse.MESSAGE_ID) or 0
        self._rsp_class = sop_class_raw
        self._rsp_instance = instance_raw
        self._status = None
        self._comment = ""
        self._sink = DISCARD_SINK
        self._write = _drop
        context = self._storage_contexts.get(context_id)
        sop_class = sop_class_raw.decode("ascii", "replace").rstrip("\0 ")
        if self._open_store is None or self._association is None or context is None:
            self._refuse(dimse.SOP_CLASS_NOT_SUPPORTED, "no storage context for this C-STORE")
            return
        if not has_dataset:
            self._refuse(dimse.CANNOT_UNDERSTAND, "C-STORE-RQ without a dataset")
            return
        if sop_class != context.abstract_syntax:
            self._refuse(
                dimse.DATASET_DOES_NOT_MATCH_SOP_CLASS, "SOP class differs from the context's"
            )
            return
        store = StoreContext(
            self._association,
            sop_class,
            instance_raw.decode("ascii", "replace").rstrip("\0 "),
            context.transfer_syntax,
            context_id,
            self._rsp_message_id,
            dimse.command_int(cmd, dimse.PRIORITY) or 0,
            dimse.command_text(cmd, dimse.MOVE_ORIGINATOR_AET),
        )
        try:
            sink = self._open_store(store)
        except Exception as exc:
            self._refused_by(exc, "open_store")
            return
        self._sink = sink
        self._write = sink.write

    def _refuse(self, status: int, comment: str) -> None:
        self._status = status
        self._comment = comment
        self._sink = DISCARD_SINK
        self._write = _drop

    def _refused_by(self, exc: Exception, where: str) -> None:
        status = failure_status(exc)
        if status == dimse.HANDLER_FAILURE:
            log.error("%s failed for a C-GET sub-operation", where, exc_info=exc)
        else:
            log.warning("%s refused a C-GET sub-operation: %s", where, exc)
        self._refuse(status, str(exc))

    def _abort_sink(self, why: str) -> None:
        sink = self._sink
        self._sink = None
        self._write = _drop
        if sink is None or sink is DISCARD_SINK:
            return
        log.debug("aborting a C-GET sub-operation: %s", why)
        try:
            sink.abort()
        except Exception:
            log.exception("sink.abort failed for a C-GET sub-operation")

    async def _await_finish(self, sink: StoreSink, pending: Awaitable[int]) -> None:
        try:
            status = await pending
        except Exception as exc:
            self._sink = sink
            self._abort_sink("finish failed")
            self._refused_by(exc, "sink.finish")
            status = self._status if self._status is not None else dimse.HANDLER_FAILURE
        self._status = status
        self._respond_store()
        self.finishing = None
        self._conn.resume()

    def _respond_store(self) -> None:
        status = self._status
        self._status = None
        if status is None:
            status = dimse.HANDLER_FAILURE
        if dimse.is_success(status):
            self.stored += 1
        else:
            self.refused += 1
        payload = dimse.encode_response(
            dimse.C_STORE_RSP,
            self._rsp_message_id,
            status,
            self._rsp_class,
            self._rsp_instance,
            self._comment if status else None,
        )
        self._storing = False
        self._conn.write(
            encode_pdata(self._rsp_context, payload, command=True, max_pdu=self._peer_max_pdu)
        )

    # --- the end ---------------------------------------------------------------------------

    def _complete(self) -> None:
        assert self._final is not None
        status, comment, completed, failed, warning = self._final
        failed_list = (
            failed_instances(bytes(self._identifier), self.context.transfer_syntax)
            or self._failed_in_command
        )
        self._identifier.clear()
        if not self.done.done():
            self.done.set_result(
                RetrieveResult(status, comment, completed, failed, warning, failed_list)
            )


def _drop(chunk: memoryview) -> None:
    """Where dataset bytes nobody wants go."""
