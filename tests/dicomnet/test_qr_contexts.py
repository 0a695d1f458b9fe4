"""What a C-GET or C-MOVE association proposes: contexts, transfer syntaxes, role selection."""

from __future__ import annotations

import pytest

from mercure.dicomnet.retrieve import (
    COMPRESSED_SYNTAXES,
    IMAGE_STORAGE_CLASSES,
    get_class,
    get_contexts,
    move_class,
    move_contexts,
)
from mercure.dicomnet.uids import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN
from mercure.testing.series import CT_IMAGE_STORAGE


def test_get_proposes_each_image_class_per_syntax_group_with_the_scp_role() -> None:
    """CT three times (explicit, implicit, compressed), the SCP role for it once, GET first."""
    contexts, roles = get_contexts()
    assert contexts[0].abstract_syntax == get_class("study")
    ct = [c.transfer_syntaxes for c in contexts if c.abstract_syntax == CT_IMAGE_STORAGE]
    assert ct == [(EXPLICIT_VR_LITTLE_ENDIAN,), (IMPLICIT_VR_LITTLE_ENDIAN,), COMPRESSED_SYNTAXES]
    ct_roles = [r for r in roles if r.sop_class_uid == CT_IMAGE_STORAGE]
    assert len(ct_roles) == 1 and not ct_roles[0].scu_role and ct_roles[0].scp_role
    assert len(contexts) <= 128


def test_more_than_128_contexts_is_refused_with_a_clear_error() -> None:
    """Too many storage classes for one association: ValueError that says what to do."""
    classes = [f"{IMAGE_STORAGE_CLASSES[0]}.{i}" for i in range(43)]
    with pytest.raises(ValueError, match="at most 128"):
        get_contexts(image_classes=classes)


def test_patient_root_and_unknown_models() -> None:
    """Patient Root has its own SOP classes; an unknown model names the choices."""
    assert move_contexts("patient")[0].abstract_syntax == move_class("patient")
    assert move_class("patient") != move_class("study")
    with pytest.raises(ValueError, match="'study' or 'patient'"):
        get_contexts("worklist")  # type: ignore[arg-type]
