"""A module's input folder in mercure's form: ``<series>#<sop>.dcm`` with a ``.tags`` beside each.

The task's instances are stored as ``<SOPInstanceUID>.dcm`` and shared through hard links with
the other tasks of the same series. A module gets *copies* (a reflink where the filesystem has
them, else a plain copy), in a writable folder as mercure gives it: whatever a module does to
its input, no other task's file changes (docs/modules.md, "Input isolation").

Each instance is read once here, header only, for its name and its ``.tags``: mercure's tag set
(:mod:`mercure.core.mercuretags`: its standard tags, ``""`` for those the file lacks, how the
series arrived, ``router.additional_tags``, and ``Filename``). A task folder moved over from
mercure, whose files already carry ``#`` names and ``.tags``, is copied as it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterable
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from mercure.core.mercuretags import mercure_tags
from mercure.core.task import TaskInfo

log = logging.getLogger(__name__)

DICOM_SUFFIX = ".dcm"
TAGS_SUFFIX = ".tags"
SEPARATOR = "#"

_FICLONE = 0x40049409
"""ioctl that shares a file's blocks copy-on-write (btrfs, XFS): a copy that costs nothing."""


def mercure_name(series_uid: str, sop_instance_uid: str) -> str:
    """The file name mercure gives an instance: ``<series>#<sop>.dcm``."""
    return f"{series_uid}{SEPARATOR}{sop_instance_uid}{DICOM_SUFFIX}"


def read_instance(source: Path, info: TaskInfo, additional_tags: Iterable[str]) -> dict[str, str]:
    """An instance's ``.tags`` (mercure's tag set, :func:`mercure_tags`), from its header."""
    with warnings.catch_warnings():
        # Odd character sets make pydicom warn for every value; the values are read leniently.
        warnings.simplefilter("ignore")
        dataset = pydicom.dcmread(source, stop_before_pixels=True)
        tags = mercure_tags(
            dataset,
            additional_tags,
            sender_address=info.sender_address or "",
            sender_aet=info.sender_aet or "",
            receiver_aet=info.receiver_aet or "",
        )
    tags["Filename"] = source.name
    return tags


def copy_file(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` (new): a reflink where possible, else the bytes."""
    with open(source, "rb") as reader, open(target, "xb") as writer:
        try:
            fcntl.ioctl(writer.fileno(), _FICLONE, reader.fileno())
            return
        except OSError:
            pass
        shutil.copyfileobj(reader, writer, 1024 * 1024)


def prepare_input(
    files: list[Path], folder: Path, info: TaskInfo, additional_tags: Iterable[str] = ()
) -> int:
    """Fill ``folder`` with copies of ``files`` in mercure's form; the number of instances.

    ``additional_tags``: the keys of ``router.additional_tags``, written into each ``.tags``.
    """
    present = {path.name for path in files}
    instances = 0
    for source in files:
        if source.suffix == TAGS_SUFFIX and source.with_suffix(DICOM_SUFFIX).name in present:
            copy_file(source, folder / source.name)  # mercure's own, from a moved-over task
            continue
        if source.suffix != DICOM_SUFFIX or SEPARATOR in source.name:
            copy_file(source, folder / source.name)
            instances += source.suffix == DICOM_SUFFIX
            continue
        try:
            tags = read_instance(source, info, additional_tags)
        except (InvalidDicomError, OSError) as exc:
            log.warning(
                "%s is not readable as DICOM (%s); the module gets it as it is", source, exc
            )
            copy_file(source, folder / source.name)
            continue
        series = tags.get("SeriesInstanceUID") or info.uid
        sop = tags.get("SOPInstanceUID") or source.stem
        name = mercure_name(series, sop)
        if (folder / name).exists():
            continue  # the same instance stored twice: one copy
        copy_file(source, folder / name)
        text = json.dumps(tags, indent=1, ensure_ascii=False)
        (folder / name).with_suffix(TAGS_SUFFIX).write_text(text + "\n", encoding="utf-8")
        instances += 1
    return instances


def make_writable(folder: Path) -> None:
    """Let the module (any user in a container, root without capabilities too) change its
    input, as mercure does: the folder holds this task's private copies only."""
    with contextlib.suppress(OSError):
        os.chmod(folder, 0o777)
        for entry in folder.iterdir():
            if entry.is_file() and not entry.is_symlink():
                os.chmod(entry, 0o666)
