"""Private and unknown SOP classes: what the acceptor negotiates, and what a real SCU then sees."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from dicomnet_helpers import dataset_bytes
from pydicom import Dataset
from pynetdicom import AE

from mercure.dicomnet.negotiation import negotiate
from mercure.dicomnet.pdu import AssociateRequest, PresentationContextProposal
from mercure.dicomnet.uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    VERIFICATION_SOP_CLASS,
    default_sop_classes,
)
from mercure.testing.series import generate_series

SIEMENS_CSA_NON_IMAGE = "1.3.12.2.1107.5.9.1"
SOME_PRIVATE_CLASS = "1.2.826.0.1.3680043.9.7433.42.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
STORAGE_COMMITMENT_PUSH = "1.2.840.10008.1.20.1"
MPPS = "1.2.840.10008.3.1.2.3.3"
BASIC_GRAYSCALE_PRINT_META = "1.2.840.10008.5.1.1.9"
UNRECOGNIZED_OPERATION = 0x0211
ABSTRACT_SYNTAX_NOT_SUPPORTED = 3

NON_STORAGE = [
    STUDY_ROOT_FIND,
    STUDY_ROOT_MOVE,
    PATIENT_ROOT_GET,
    MODALITY_WORKLIST_FIND,
    STORAGE_COMMITMENT_PUSH,
    MPPS,
    BASIC_GRAYSCALE_PRINT_META,
    EXPLICIT_VR_LITTLE_ENDIAN,  # a transfer syntax is no abstract syntax either
]


def results_for(
    *abstract_syntaxes: str, accept_unknown: bool, extra: frozenset[str] = frozenset()
) -> dict[str, int]:
    """The negotiated result code per proposed abstract syntax."""
    request = AssociateRequest(
        "DICOMNET",
        "SCU",
        [
            PresentationContextProposal(2 * i + 1, uid, (EXPLICIT_VR_LITTLE_ENDIAN,))
            for i, uid in enumerate(abstract_syntaxes)
        ],
    )
    negotiated = negotiate(
        request,
        default_sop_classes() | extra,
        [EXPLICIT_VR_LITTLE_ENDIAN],
        accept_unknown=accept_unknown,
    )
    return {uid: r.result for uid, r in zip(abstract_syntaxes, negotiated.results, strict=True)}


def test_default_negotiation_refuses_a_private_sop_class() -> None:
    """Without extra classes, a private SOP class is 'abstract syntax not supported' (3)."""
    results = results_for(SIEMENS_CSA_NON_IMAGE, CT_IMAGE_STORAGE, accept_unknown=False)
    assert results == {SIEMENS_CSA_NON_IMAGE: 3, CT_IMAGE_STORAGE: 0}


def test_extra_sop_class_is_accepted_and_others_still_refused() -> None:
    """A class in the accepted set is accepted; another private one is still refused."""
    results = results_for(
        SIEMENS_CSA_NON_IMAGE,
        SOME_PRIVATE_CLASS,
        accept_unknown=False,
        extra=frozenset({SIEMENS_CSA_NON_IMAGE}),
    )
    assert results == {SIEMENS_CSA_NON_IMAGE: 0, SOME_PRIVATE_CLASS: 3}


@pytest.mark.parametrize("uid", NON_STORAGE)
def test_promiscuous_negotiation_refuses_the_standards_other_services(uid: str) -> None:
    """Query/retrieve, worklist, commitment, MPPS, print, transfer syntaxes stay refused."""
    assert results_for(uid, SOME_PRIVATE_CLASS, accept_unknown=True) == {
        uid: ABSTRACT_SYNTAX_NOT_SUPPORTED,
        SOME_PRIVATE_CLASS: 0,
    }


@pytest.mark.parametrize("uid", ["", "1.2.abc", "1.02.3", "1." * 40 + "1", "1.2.3."])
def test_promiscuous_negotiation_refuses_what_is_not_a_uid(uid: str) -> None:
    """Only a syntactically valid UID can be taken as an unknown SOP class."""
    assert results_for(uid, accept_unknown=True) == {uid: ABSTRACT_SYNTAX_NOT_SUPPORTED}


def test_promiscuous_negotiation_keeps_verification_and_storage() -> None:
    """Verification and the standard storage classes are accepted as before."""
    results = results_for(VERIFICATION_SOP_CLASS, CT_IMAGE_STORAGE, accept_unknown=True)
    assert results == {VERIFICATION_SOP_CLASS: 0, CT_IMAGE_STORAGE: 0}


def private_file(folder: Path, sop_class: str) -> Path:
    """One tiny instance whose SOP class (dataset and File Meta) is ``sop_class``."""
    series = generate_series(folder, kind="tiny", count=1, tags={"SOPClassUID": sop_class})
    return series.paths[0]


def test_pynetdicom_cannot_store_a_private_class_by_default(scp, tmp_path: Path, caplog) -> None:
    """The private context is refused; pynetdicom then has no context to send on."""
    path = private_file(tmp_path / "in", SIEMENS_CSA_NON_IMAGE)
    server = scp()
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(SIEMENS_CSA_NON_IMAGE, EXPLICIT_VR_LITTLE_ENDIAN)
    ae.add_requested_context(VERIFICATION_SOP_CLASS)
    with caplog.at_level(logging.INFO, logger="mercure.dicomnet.acceptor"):
        assoc = ae.associate("127.0.0.1", server.port, ae_title="DICOMNET")
        assert assoc.is_established
        try:
            [refused] = assoc.rejected_contexts
            assert refused.abstract_syntax == SIEMENS_CSA_NON_IMAGE
            assert refused.result == ABSTRACT_SYNTAX_NOT_SUPPORTED
            with pytest.raises(ValueError, match="No presentation context"):
                assoc.send_c_store(path)
        finally:
            assoc.release()
    assert server.handler.instances == []
    assert f"abstract syntax not supported: {SIEMENS_CSA_NON_IMAGE}" in caplog.text


def test_pynetdicom_stores_a_private_class_on_an_extra_listener(scp, tmp_path: Path) -> None:
    """With the class in the listener's set, the dataset arrives byte for byte."""
    path = private_file(tmp_path / "in", SIEMENS_CSA_NON_IMAGE)
    server = scp(sop_classes=default_sop_classes() | {SIEMENS_CSA_NON_IMAGE})
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(SIEMENS_CSA_NON_IMAGE, EXPLICIT_VR_LITTLE_ENDIAN)
    assoc = ae.associate("127.0.0.1", server.port, ae_title="DICOMNET")
    assert assoc.is_established
    try:
        assert assoc.send_c_store(path).Status == 0x0000
    finally:
        assoc.release()
    [instance] = server.handler.instances
    assert instance.context.sop_class_uid == SIEMENS_CSA_NON_IMAGE
    assert instance.dataset == dataset_bytes(path)


def test_promiscuous_listener_stores_unknown_class_and_refuses_query(scp, tmp_path: Path) -> None:
    """An arbitrary private class is stored; C-FIND and worklist contexts are refused."""
    path = private_file(tmp_path / "in", SOME_PRIVATE_CLASS)
    server = scp(accept_unknown_sop_classes=True)
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(SOME_PRIVATE_CLASS, EXPLICIT_VR_LITTLE_ENDIAN)
    ae.add_requested_context(STUDY_ROOT_FIND)
    ae.add_requested_context(STUDY_ROOT_MOVE)
    ae.add_requested_context(MODALITY_WORKLIST_FIND)
    assoc = ae.associate("127.0.0.1", server.port, ae_title="DICOMNET")
    assert assoc.is_established
    try:
        refused = {c.abstract_syntax: c.result for c in assoc.rejected_contexts}
        assert refused == {
            STUDY_ROOT_FIND: ABSTRACT_SYNTAX_NOT_SUPPORTED,
            STUDY_ROOT_MOVE: ABSTRACT_SYNTAX_NOT_SUPPORTED,
            MODALITY_WORKLIST_FIND: ABSTRACT_SYNTAX_NOT_SUPPORTED,
        }
        assert [c.abstract_syntax for c in assoc.accepted_contexts] == [SOME_PRIVATE_CLASS]
        assert assoc.send_c_store(path).Status == 0x0000
    finally:
        assoc.release()
    [instance] = server.handler.instances
    assert instance.context.sop_class_uid == SOME_PRIVATE_CLASS
    assert instance.dataset == dataset_bytes(path)


def test_c_find_on_an_accepted_unknown_class_is_not_taken_as_storage(scp) -> None:
    """A C-FIND-RQ sent on a context accepted as unknown storage is 'unrecognized operation'."""
    server = scp(accept_unknown_sop_classes=True)
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(SOME_PRIVATE_CLASS, EXPLICIT_VR_LITTLE_ENDIAN)
    assoc = ae.associate("127.0.0.1", server.port, ae_title="DICOMNET")
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    try:
        responses = list(assoc.send_c_find(query, SOME_PRIVATE_CLASS))
        assert [status.Status for status, _identifier in responses] == [UNRECOGNIZED_OPERATION]
    finally:
        assoc.release()
    assert server.handler.instances == []
