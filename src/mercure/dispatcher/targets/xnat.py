"""The ``xnat`` target: each task uploaded as one zip through XNAT's image session import.

The calls, as XNAT documents them and mercure makes them:

1. ``POST /data/JSESSION`` with the user and password (HTTP basic): XNAT answers a session id,
   kept as the ``JSESSIONID`` cookie for the next calls, so the password is sent once.
2. ``POST /data/services/import?PROJECT_ID=…&SUBJECT_ID=…&EXPT_LABEL=…&rename=true&
   overwrite=append&inbody=true`` with the zip of the task's instances as the body
   (``Content-Type: application/zip``). The subject is the patient ID and the session label
   ``<patient ID>_<study date YYYY-MM-DD>``, as mercure names them.
3. ``DELETE /data/JSESSION``: the session ends.

mercure imports with ``overwrite=delete``, which replaces a session of the same label: the
second series of a study routed as its own task would delete the first. This target appends
(``overwrite=append``), so every series of a study ends up in its session.
The import is all or nothing: the instances are confirmed when XNAT answers 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import tempfile
import zipfile
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO

import httpx
import pydicom

from mercure.core.config.models import XnatTarget
from mercure.core.masking import excerpt
from mercure.dispatcher.errors import DeliveryError, TargetConfigError
from mercure.dispatcher.targets.base import Confirm, SendJob, SendResult, TargetPlugin, TestSteps

SESSION = "/data/JSESSION"
IMPORT = "/data/services/import"
TIMEOUT = httpx.Timeout(600.0, connect=15.0)
TEST_TIMEOUT = httpx.Timeout(10.0)
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


def xnat_labels(first_file: Path) -> tuple[str, str]:
    """(subject, session label) for the instance in ``first_file``, as mercure names them:
    the patient ID, and ``<patient ID>_<study date as YYYY-MM-DD>``; characters XNAT refuses
    in labels become ``_``. Raises :class:`TargetConfigError` when the file lacks them."""
    try:
        dataset = pydicom.dcmread(
            first_file, stop_before_pixels=True, specific_tags=["PatientID", "StudyDate"]
        )
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise DeliveryError(f"cannot read {first_file.name}: {exc}") from exc
    patient = str(dataset.get("PatientID", "") or "").strip()
    study_date = str(dataset.get("StudyDate", "") or "").strip()
    if not patient:
        raise TargetConfigError("XNAT needs a subject: the instances have no PatientID")
    try:
        day = datetime.strptime(study_date, "%Y%m%d").strftime("%Y-%m-%d")
    except ValueError:
        raise TargetConfigError(
            "XNAT needs a session label: the instances have no valid StudyDate"
        ) from None
    subject = _LABEL_UNSAFE.sub("_", patient)
    return subject, f"{subject}_{day}"


def write_zip(files: Sequence[Path], into: IO[bytes]) -> None:
    """The instances, each under its own name, stored (DICOM pixel data rarely shrinks)."""
    with zipfile.ZipFile(into, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for path in files:
            archive.write(path, path.name)


class XnatPlugin(TargetPlugin):
    """Uploads through XNAT's REST import service."""

    def __init__(self, name: str, config: XnatTarget) -> None:
        super().__init__(name)
        self.config = config

    @property
    def base(self) -> str:
        """The server's base URL, without a trailing slash."""
        return str(self.config.host).rstrip("/")

    def _client(self, timeout: httpx.Timeout) -> httpx.AsyncClient:
        config = self.config
        verify: ssl.SSLContext | bool = config.verify_tls
        if config.ca_certificate and config.verify_tls:
            verify = ssl.create_default_context(cafile=str(config.ca_certificate))
        return httpx.AsyncClient(base_url=self.base, verify=verify, timeout=timeout)

    async def _open_session(self, client: httpx.AsyncClient) -> None:
        """Log in: ``POST /data/JSESSION``; the session cookie authenticates what follows."""
        password = self.config.password.get_secret_value() if self.config.password else ""
        try:
            response = await client.post(SESSION, auth=httpx.BasicAuth(self.config.user, password))
        except httpx.HTTPError as exc:
            raise DeliveryError(f"cannot reach XNAT at {self.base}: {exc}") from exc
        if response.status_code in (401, 403):
            raise DeliveryError(
                f"XNAT at {self.base} refused the login of {self.config.user!r} "
                f"(HTTP {response.status_code})"
            )
        if response.status_code != 200:
            raise DeliveryError(
                f"XNAT login at {self.base} answered HTTP {response.status_code}: "
                f"{excerpt(response.text)}"
            )
        session_id = response.text.strip()
        if session_id and "JSESSIONID" not in client.cookies:
            client.cookies.set("JSESSIONID", session_id)

    async def _close_session(self, client: httpx.AsyncClient) -> None:
        """Log out (``DELETE /data/JSESSION``); a failure here loses nothing."""
        with contextlib.suppress(httpx.HTTPError):
            await client.delete(SESSION)

    async def send(self, job: SendJob, confirm: Confirm) -> SendResult:
        """Zip the pending instances, import them in one request, then confirm them all."""
        if not job.files:
            return SendResult()
        subject, label = await asyncio.to_thread(xnat_labels, job.files[0])
        params = {
            "PROJECT_ID": self.config.project_id,
            "SUBJECT_ID": subject,
            "EXPT_LABEL": label,
            "rename": "true",
            "overwrite": "append",
            "inbody": "true",
        }
        with tempfile.TemporaryFile(prefix="mercure-xnat-") as archive:
            await asyncio.to_thread(write_zip, job.files, archive)
            size = archive.tell()
            archive.seek(0)
            async with self._client(TIMEOUT) as client:
                await self._open_session(client)
                try:
                    response = await client.post(
                        IMPORT,
                        params=params,
                        content=_chunks(archive),
                        headers={"Content-Type": "application/zip", "Content-Length": str(size)},
                    )
                except httpx.HTTPError as exc:
                    raise DeliveryError(f"XNAT import at {self.base} failed: {exc}") from exc
                finally:
                    await self._close_session(client)
        if response.status_code != 200:
            # The answer may name the subject (a patient ID): keep it out of the reason.
            text = excerpt(response.text).replace(subject, "<subject>")
            raise DeliveryError(
                f"XNAT import into project {self.config.project_id} answered HTTP "
                f"{response.status_code}: {text}"
            )
        for path in job.files:
            confirm(path, path.stat().st_size)
        return SendResult()

    async def test(self, steps: TestSteps) -> str:
        """Log in (a session), find the project, log out."""
        async with self._client(TEST_TIMEOUT) as client:
            try:
                await self._open_session(client)
            except DeliveryError as exc:
                steps.fail("login", exc)
            steps.ok("login", f"{self.config.user} has a session at {self.base}")
            project = self.config.project_id
            try:
                response = await client.get(f"/data/projects/{project}", params={"format": "json"})
            except httpx.HTTPError as exc:
                await self._close_session(client)
                steps.fail("project", DeliveryError(f"cannot reach XNAT at {self.base}: {exc}"))
            await self._close_session(client)
        if response.status_code != 200:
            what = "no such project" if response.status_code == 404 else "no access"
            steps.fail(
                "project",
                DeliveryError(
                    f"project {project}: {what} for {self.config.user} "
                    f"(HTTP {response.status_code})"
                ),
            )
        steps.ok("project", f"project {project} is there")
        return f"XNAT at {self.base}: logged in, project {project} found"


async def _chunks(archive: IO[bytes], size: int = 1 << 20) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(archive.read, size):
        yield chunk
