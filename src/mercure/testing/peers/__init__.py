"""Real peers for tests and benchmarks, started on 127.0.0.1 with free ports.

- :class:`StoreSCP`: DCMTK's storescp as a receiver; :func:`storescu`, :func:`dcmsend`,
  :func:`echoscu` run DCMTK's clients against any receiver (ours included).
- :class:`Orthanc`: a PACS with DICOM, DICOMweb and a REST API to check what arrived.

Every peer runs with ``TCP_NODELAY=1``, logs to a file, is ready when :meth:`start` returns
(polled, never slept), and stops by the PID it was started with (context managers).
"""

from mercure.testing.peers.dcmtk import (
    DCMSEND_DECOMPRESS_OPTIONS,
    STORESCP_SYNTAX_OPTIONS,
    StoreSCP,
    dcmsend,
    dcmtk_program,
    echoscu,
    storescu,
    storescu_reporting_acks,
)
from mercure.testing.peers.orthanc import Modality, Orthanc
from mercure.testing.peers.process import (
    PeerError,
    PeerNotInstalledError,
    PeerProcess,
    is_listening,
    peer_environment,
)

__all__ = [
    "DCMSEND_DECOMPRESS_OPTIONS",
    "STORESCP_SYNTAX_OPTIONS",
    "Modality",
    "Orthanc",
    "PeerError",
    "PeerNotInstalledError",
    "PeerProcess",
    "StoreSCP",
    "dcmsend",
    "dcmtk_program",
    "echoscu",
    "is_listening",
    "peer_environment",
    "storescu",
    "storescu_reporting_acks",
]
