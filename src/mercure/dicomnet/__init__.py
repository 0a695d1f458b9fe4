"""mercure's own DICOM upper layer on asyncio: acceptor (Storage/Verification SCP) and
requestor (SCU), built for throughput.

Layers, one module each: ``pdu`` (PS3.8 PDUs), ``connection`` (PDU framing on a buffered
asyncio protocol, the receive hot path), ``negotiation`` (presentation contexts and roles),
``dimse`` (command sets), ``acceptor`` + ``server`` (the listening side), ``requestor``
(the sending side, with ``find`` for C-FIND and ``retrieve`` for C-MOVE and C-GET). Helpers
for applications: ``filemeta`` (File Meta Information) and ``scanner`` (find
SeriesInstanceUID & co. in a dataset stream without parsing it).

The package knows nothing about files or folders of mercure: an application implements an
:class:`AssociationHandler` whose :meth:`~AssociationHandler.open_store` returns a
:class:`StoreSink` per instance, and the acceptor streams the dataset bytes into it.
"""

from mercure.dicomnet.dimse import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH_SOP_CLASS,
    HANDLER_FAILURE,
    OUT_OF_RESOURCES,
    SOP_CLASS_NOT_SUPPORTED,
    SUCCESS,
    is_success,
)
from mercure.dicomnet.errors import (
    AssociationAborted,
    AssociationError,
    AssociationRejected,
    DicomFileError,
    DicomNetError,
    FindFailed,
    PresentationContextError,
    StoreRefused,
)
from mercure.dicomnet.filemeta import FileMeta, build_file_meta, read_file_meta
from mercure.dicomnet.find import find_contexts
from mercure.dicomnet.handler import (
    REJECT_CALLED_AET,
    REJECT_CALLING_AET,
    REJECT_CONGESTION,
    REJECT_LOCAL_LIMIT,
    REJECT_NO_REASON,
    AssociationHandler,
    AssociationInfo,
    AssociationRequest,
    AssociationStats,
    DiscardSink,
    Rejection,
    StoreContext,
    StoreSink,
    failure_status,
)
from mercure.dicomnet.negotiation import AcceptedContext
from mercure.dicomnet.requestor import Association, ContextProposal, DimseResponse
from mercure.dicomnet.retrieve import RetrieveResult, get_contexts, move_contexts
from mercure.dicomnet.scanner import (
    SERIES_INSTANCE_UID,
    SOP_INSTANCE_UID,
    STUDY_INSTANCE_UID,
    DatasetScanner,
    new_scanner,
    scan_dataset,
)
from mercure.dicomnet.server import DicomServer, ListenerSettings, serve

__all__ = [
    "CANNOT_UNDERSTAND",
    "DATASET_DOES_NOT_MATCH_SOP_CLASS",
    "HANDLER_FAILURE",
    "OUT_OF_RESOURCES",
    "REJECT_CALLED_AET",
    "REJECT_CALLING_AET",
    "REJECT_CONGESTION",
    "REJECT_LOCAL_LIMIT",
    "REJECT_NO_REASON",
    "SERIES_INSTANCE_UID",
    "SOP_CLASS_NOT_SUPPORTED",
    "SOP_INSTANCE_UID",
    "STUDY_INSTANCE_UID",
    "SUCCESS",
    "AcceptedContext",
    "Association",
    "AssociationAborted",
    "AssociationError",
    "AssociationHandler",
    "AssociationInfo",
    "AssociationRejected",
    "AssociationRequest",
    "AssociationStats",
    "ContextProposal",
    "DatasetScanner",
    "DicomFileError",
    "DicomNetError",
    "DicomServer",
    "DimseResponse",
    "DiscardSink",
    "FileMeta",
    "FindFailed",
    "ListenerSettings",
    "PresentationContextError",
    "Rejection",
    "RetrieveResult",
    "StoreContext",
    "StoreRefused",
    "StoreSink",
    "build_file_meta",
    "failure_status",
    "find_contexts",
    "get_contexts",
    "is_success",
    "move_contexts",
    "new_scanner",
    "read_file_meta",
    "scan_dataset",
    "serve",
]
