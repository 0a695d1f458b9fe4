"""The standard's storage SOP classes: every one a sender may use is accepted by default."""

from __future__ import annotations

from pynetdicom import sop_class
from pynetdicom.service_class import StorageServiceClass

from mercure.core.uids import non_storage_uids, storage_sop_classes, uid_name


def pynetdicom_storage_classes() -> set[str]:
    """The storage SOP classes pynetdicom knows (its registry, by service class)."""
    return {
        str(value)
        for value in vars(sop_class).values()
        if isinstance(value, sop_class.SOPClass)
        and sop_class.uid_to_service_class(value) is StorageServiceClass
    }


def test_every_storage_class_pynetdicom_knows_is_a_storage_class_here() -> None:
    known = pynetdicom_storage_classes()
    assert len(known) > 150
    assert known - storage_sop_classes() == set()


def test_newer_classes_than_pydicom_knows_have_names_and_are_not_refused_as_other_services() -> (
    None
):
    label_map = "1.2.840.10008.5.1.4.1.1.66.7"
    assert label_map in storage_sop_classes()
    assert uid_name(label_map) == "Label Map Segmentation Storage"
    assert storage_sop_classes().isdisjoint(non_storage_uids())
