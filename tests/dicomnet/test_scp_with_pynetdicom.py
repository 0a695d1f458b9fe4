"""The acceptor against pynetdicom's SCU: datasets byte-identical, roles and contexts right."""

from __future__ import annotations

from dicomnet_helpers import dataset_bytes, pydicom_file
from pynetdicom import AE, build_role

from mercure.dicomnet import read_file_meta
from mercure.dicomnet.uids import VERIFICATION_SOP_CLASS

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


# Well-formed files in many syntaxes: pynetdicom streams these from disk unchanged (it re-encodes
# some of pydicom's deliberately broken files, so those are tested with our own SCU instead).
WELL_FORMED = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "rtplan.dcm",
    "waveform_ecg.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "JPEG-lossy.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm",
    "JPEG2000.dcm",
    "MR_small_RLE.dcm",
    "SC_rgb_rle_32bit_2frame.dcm",
    "examples_rgb_color.dcm",
]


def test_pynetdicom_scu_files_arrive_byte_identical(scp) -> None:
    """pynetdicom streams each file's dataset from disk; we receive exactly those bytes."""
    files = [pydicom_file(name) for name in WELL_FORMED]
    metas = [read_file_meta(path) for path in files]
    server = scp()
    ae = AE(ae_title="PYNETDICOM")
    for sop_class, syntax in sorted({(m.sop_class_uid, m.transfer_syntax_uid) for m in metas}):
        ae.add_requested_context(sop_class, syntax)
    # One association per file: pynetdicom's reactor thread can take the response of a C-STORE
    # sent right after another one off its queue when the machine is loaded (it logs "Received
    # unexpected C-STORE service message" and the send waits out its DIMSE timeout), a race in
    # its pause handshake, not in what we answer. Many files on one association are tested with
    # storescu and our own SCU.
    for path in files:
        assoc = ae.associate("127.0.0.1", server.port, ae_title="DICOMNET")
        assert assoc.is_established
        try:
            assert assoc.send_c_store(path).Status == 0x0000, path.name
        finally:
            assoc.release()
    received = server.handler.instances
    assert len(received) == len(files)
    for path, meta, instance in zip(files, metas, received, strict=True):
        assert instance.context.transfer_syntax_uid == meta.transfer_syntax_uid
        assert instance.dataset == dataset_bytes(path), path.name


def test_role_selection_is_answered_scu_yes_scp_no(scp) -> None:
    """A requestor proposing both roles is granted SCU only: we serve as SCP, never as SCU."""
    server = scp()
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(CT_IMAGE_STORAGE)
    ae.add_requested_context(VERIFICATION_SOP_CLASS)
    role = build_role(CT_IMAGE_STORAGE, scu_role=True, scp_role=True)
    assoc = ae.associate("127.0.0.1", server.port, ae_title="DICOMNET", ext_neg=[role])
    assert assoc.is_established
    try:
        (ct,) = [c for c in assoc.accepted_contexts if c.abstract_syntax == CT_IMAGE_STORAGE]
        assert ct.as_scu and not ct.as_scp
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()


def test_requestor_declining_the_scu_role_gets_the_context_rejected(scp) -> None:
    """A C-GET style proposal (requestor only SCP) leaves nothing for us to do: context rejected."""
    server = scp()
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(CT_IMAGE_STORAGE)
    ae.add_requested_context(VERIFICATION_SOP_CLASS)
    role = build_role(CT_IMAGE_STORAGE, scu_role=False, scp_role=True)
    assoc = ae.associate("127.0.0.1", server.port, ae_title="DICOMNET", ext_neg=[role])
    assert assoc.is_established
    try:
        assert [c.abstract_syntax for c in assoc.accepted_contexts] == [VERIFICATION_SOP_CLASS]
        assert [c.abstract_syntax for c in assoc.rejected_contexts] == [CT_IMAGE_STORAGE]
    finally:
        assoc.release()


def test_unknown_abstract_syntax_is_rejected_and_the_rest_accepted(scp) -> None:
    """A non-storage SOP class (C-FIND model) is refused per context; Verification still works."""
    server = scp()
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.2.2.1")  # Study Root Q/R FIND
    ae.add_requested_context(VERIFICATION_SOP_CLASS)
    assoc = ae.associate("127.0.0.1", server.port, ae_title="DICOMNET")
    try:
        assert [c.abstract_syntax for c in assoc.accepted_contexts] == [VERIFICATION_SOP_CLASS]
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()


def test_pynetdicom_sees_our_implementation_uid_and_version(scp) -> None:
    """The A-ASSOCIATE-AC carries mercure's implementation class UID and version name."""
    server = scp()
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(VERIFICATION_SOP_CLASS)
    assoc = ae.associate("127.0.0.1", server.port, ae_title="DICOMNET")
    try:
        acceptor = assoc.acceptor
        assert acceptor.implementation_class_uid.startswith("2.25.")
        assert acceptor.implementation_version_name.startswith("MERCURE")
        assert acceptor.maximum_length == server.server.settings.max_pdu
    finally:
        assoc.release()
