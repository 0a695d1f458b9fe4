"""A stand-in for the receiver: writes ``incoming/`` exactly as docs/data-folder.md says.

For the router's tests and benchmarks, which need series arriving at a controlled pace without
a DICOM association each time. Per instance: a temporary file under ``incoming/.receiving/``
renamed to ``incoming/<series>/<sop>.dcm``, then one journal line; per series: ``tags.json``
after its first instance, a *shared* ``flock`` on the series folder for as long as the
association lasts, and a release line per series when the association is released normally.
The real receiver (``mercure receiver``) is tested against the router end to end as well.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mercure.core.atomic import atomic_write_json
from mercure.core.dicomtags import TAGS_FILE, tags_from_dicom
from mercure.router.journal import JOURNAL_FILE

if TYPE_CHECKING:
    from mercure.testing.series import GeneratedSeries

_ASSOCIATIONS = itertools.count(1)


class SimulatedAssociation:
    """One association of the stand-in receiver: holds the series it delivers to."""

    def __init__(
        self,
        incoming: Path,
        *,
        calling_aet: str,
        called_aet: str,
        address: str,
        listener: str,
        link: bool,
    ) -> None:
        self.incoming = incoming
        self.calling_aet = calling_aet
        self.called_aet = called_aet
        self.address = address
        self.listener = listener
        self.link = link
        self.key = f"sim-{os.getpid()}-{next(_ASSOCIATIONS)}"
        self._held: dict[str, tuple[int, int]] = {}
        self._staging = incoming / ".receiving"
        self._staging.mkdir(exist_ok=True)

    def _hold(self, series_uid: str) -> int:
        """The journal descriptor of ``incoming/<series>``, holding its shared lock."""
        held = self._held.get(series_uid)
        if held is not None:
            return held[1]
        folder = self.incoming / series_uid
        while True:
            folder.mkdir(exist_ok=True)
            try:
                fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # the router took it between mkdir and open
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # the router holds it for the moment it takes to rename it
                time.sleep(0.002)
                continue
            try:
                same = os.stat(folder).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        journal = os.open(
            folder / JOURNAL_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644
        )
        self._held[series_uid] = (fd, journal)
        return journal

    def store(self, source: Path, series_uid: str, sop_instance_uid: str) -> Path:
        """Place one instance (a copy, or a hard link of ``source``); its path in incoming/."""
        journal = self._hold(series_uid)
        folder = self.incoming / series_uid
        temp = self._staging / f"{sop_instance_uid}-{secrets.token_hex(4)}"
        if self.link:
            os.link(source, temp)
        else:
            shutil.copyfile(source, temp)
        final = folder / f"{sop_instance_uid}.dcm"
        os.rename(temp, final)
        line = {
            "sop": sop_instance_uid,
            "calling_aet": self.calling_aet,
            "called_aet": self.called_aet,
            "address": self.address,
            "listener": self.listener,
            "assoc": self.key,
            "time": time.time(),
            "size": os.stat(final).st_size,
            "ts": "1.2.840.10008.1.2.1",
        }
        os.write(journal, (json.dumps(line) + "\n").encode())
        if not (folder / TAGS_FILE).exists():
            tags = tags_from_dicom(final)
            tags.update(
                SenderAET=self.calling_aet, ReceiverAET=self.called_aet, SenderAddress=self.address
            )
            atomic_write_json(folder / TAGS_FILE, tags, fsync=False)
        return final

    def store_all(self, instances: Iterable[tuple[Path, str, str]]) -> int:
        """Place (path, series UID, SOP instance UID) triples; how many."""
        count = 0
        for path, series_uid, sop_uid in instances:
            self.store(path, series_uid, sop_uid)
            count += 1
        return count

    def close(self, *, released: bool = True) -> None:
        """End the association: release lines (if ``released``), then let the series go."""
        line = json.dumps(
            {"event": "released", "assoc": self.key, "listener": self.listener, "time": time.time()}
        )
        for fd, journal in self._held.values():
            if released:
                os.write(journal, (line + "\n").encode())
            os.close(journal)
            os.close(fd)
        self._held.clear()


class IncomingWriter:
    """Opens simulated associations on one data folder's ``incoming/``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        calling_aet: str = "MODALITY",
        called_aet: str = "MERCURE",
        address: str = "127.0.0.1",
        listener: str = "default",
        link: bool = False,
    ) -> None:
        self.incoming = Path(data_dir) / "incoming"
        self.defaults: dict[str, Any] = {
            "calling_aet": calling_aet,
            "called_aet": called_aet,
            "address": address,
            "listener": listener,
            "link": link,
        }

    @contextlib.contextmanager
    def association(
        self, *, released: bool = True, **overrides: Any
    ) -> Iterator[SimulatedAssociation]:
        """An association (``calling_aet=...`` etc. override the defaults), closed on exit."""
        options: dict[str, Any] = {**self.defaults, **overrides}
        association = SimulatedAssociation(self.incoming, **options)
        try:
            yield association
        finally:
            association.close(released=released)

    def send(self, series: GeneratedSeries, *, released: bool = True, **overrides: Any) -> int:
        """Deliver a generated series in one association."""
        instances = [
            (instance.path, series.series_uid, instance.sop_instance_uid)
            for instance in series.instances
        ]
        with self.association(released=released, **overrides) as association:
            return association.store_all(instances)
