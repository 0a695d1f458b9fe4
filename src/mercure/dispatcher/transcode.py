"""Re-encoding an instance for a target that does not accept its stored transfer syntax.

Compressed pixel data is decompressed with pydicom and its pixel-data plug-ins (pylibjpeg with
libjpeg, openjpeg and rle: JPEG baseline/extended/lossless, JPEG 2000, RLE); uncompressed
datasets are re-encoded between Explicit and Implicit VR Little Endian. What cannot be
converted raises :class:`ConversionError` with the reason, so the instance is reported as
refused instead of being skipped silently.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import UID

from mercure.core.errors import PermanentError
from mercure.dicomnet.uids import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN

CONVERTIBLE_TO = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
"""Syntaxes this module can produce, in order of preference."""


class ConversionError(PermanentError):
    """An instance cannot be converted to a transfer syntax the target accepts."""


def encode_as(path: Path, transfer_syntax: str) -> bytes:
    """The dataset of ``path`` (without File Meta) encoded in ``transfer_syntax``.

    ``transfer_syntax`` must be Explicit or Implicit VR Little Endian. The pixel data keeps its
    values (lossless decompression); the SOP Instance UID is kept, since the target receives the
    same instance in another encoding.
    """
    if transfer_syntax not in CONVERTIBLE_TO:
        raise ConversionError(f"conversion to {transfer_syntax} is not supported")
    try:
        dataset = pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises many types for unreadable files
        raise ConversionError(f"{path.name} cannot be read: {exc}") from exc
    stored = UID(dataset.file_meta.get("TransferSyntaxUID", IMPLICIT_VR_LITTLE_ENDIAN))
    if stored.is_compressed:
        try:
            dataset.decompress(generate_instance_uid=False)
        except Exception as exc:  # plug-in errors vary (missing decoder, corrupt stream)
            name = stored.name or str(stored)
            raise ConversionError(f"cannot decompress {name}: {exc}") from exc
    elif not stored.is_little_endian:
        raise ConversionError(f"conversion from {stored.name or stored} is not supported")
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN
    try:
        write_dataset(buffer, dataset)
    except Exception as exc:  # an element that cannot be written in the new encoding
        raise ConversionError(f"cannot encode in {transfer_syntax}: {exc}") from exc
    return buffer.getvalue()
