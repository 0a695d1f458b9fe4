"""Errors raised by the DICOM upper layer.

::

    MercureError
    └── DicomNetError                  every error of mercure.dicomnet
        ├── AssociationError           (also TransientError) the link failed; retrying may help
        │   ├── AssociationRejected    the peer answered A-ASSOCIATE-RJ (result/source/reason)
        │   └── AssociationAborted     A-ABORT, a lost connection or a timeout ended the link
        ├── PresentationContextError   (also PermanentError) no accepted context fits a dataset
        ├── DicomFileError             (also PermanentError) a file to send is not usable DICOM
        ├── FindFailed                 a C-FIND ended in a failure status or an unreadable match
        └── StoreRefused               raised by an application's sink: answer with ``status``

Peer protocol violations never surface as exceptions on the acceptor side: the association is
aborted (A-ABORT) and the handler told so in its statistics.
"""

from __future__ import annotations

from mercure.core.errors import MercureError, PermanentError, TransientError


class DicomNetError(MercureError):
    """Base class of the errors of the DICOM upper layer."""


class AssociationError(DicomNetError, TransientError):
    """An association could not be set up, or ended before the work was done."""


class AssociationRejected(AssociationError):
    """The peer rejected the association request (A-ASSOCIATE-RJ)."""

    def __init__(self, result: int, source: int, reason: int, message: str) -> None:
        self.result = result
        self.source = source
        self.reason = reason
        super().__init__(message)


class AssociationAborted(AssociationError):
    """The association ended abnormally: A-ABORT, a lost connection or a timeout."""


class PresentationContextError(DicomNetError, PermanentError):
    """No accepted presentation context fits the SOP class and transfer syntax to send."""


class DicomFileError(DicomNetError, PermanentError):
    """A file to send is not a DICOM Part 10 file this layer can read."""


class FindFailed(DicomNetError):
    """A C-FIND that the peer answered with a failure status (``status``, with the peer's
    ``comment``), or stopped because of a ``problem`` with its matches (unreadable, too large;
    ``status`` is then the peer's final one). The association is still usable.

    Neither transient nor permanent by itself: an out-of-resources answer (0xA700) may pass
    on a retry, an identifier the peer does not understand (0xA900) will not.
    """

    def __init__(self, status: int, comment: str, message: str, problem: str = "") -> None:
        self.status = status
        self.comment = comment
        self.problem = problem
        super().__init__(message)


class StoreRefused(DicomNetError):
    """Raised by an application's store sink to answer the C-STORE with ``status``.

    Use it for expected refusals (out of resources: 0xA700, no place for the dataset: 0xC000
    class); any other exception from a sink is answered with 0xC211 and logged.
    """

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"C-STORE refused with status 0x{status:04X}: {reason}")
