"""Orthanc as a real PACS peer: DICOM (C-STORE both ways) and DICOMweb, checked over REST.

Each instance has its own working folder (configuration, storage and index, log) and free
ports for DICOM and HTTP. Start-up is quick (well under a second here), but a session can
share one instance and :meth:`Orthanc.reset` it between tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from mercure.testing.peers.process import PeerError, PeerProcess, is_listening, require_program
from mercure.testing.ports import free_port

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")

#: A DICOM modality as Orthanc knows it: (AE title, host, port).
Modality = tuple[str, str, int]


class Orthanc(PeerProcess):
    """Orthanc on free ports with its state in ``workdir``; DICOMweb under ``/dicom-web/``.

    ``modalities`` are the peers Orthanc may send to (``{"mercure": ("MERCURE", "127.0.0.1",
    port)}``); ``config`` entries are merged over the generated configuration last (for example
    ``{"AcceptedTransferSyntaxes": ["1.2.840.10008.1.2"]}`` for a target that refuses the rest).
    """

    name = "Orthanc"
    # A polite stop takes ~3 s (its HTTP and DICOM servers poll for shutdown). A test's Orthanc
    # is disposable and its SQLite index survives a kill, so it is killed unless asked otherwise.
    graceful_stop = False

    def __init__(
        self,
        workdir: Path | str,
        *,
        aet: str = "ORTHANC",
        dicom_port: int | None = None,
        http_port: int | None = None,
        modalities: Mapping[str, Modality] | None = None,
        dicomweb: bool = True,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        program = require_program("Orthanc", "Orthanc", "orthanc")
        if dicomweb and not DICOMWEB_PLUGIN.exists():
            raise PeerError(
                f"Orthanc's DICOMweb plugin {DICOMWEB_PLUGIN} not found: install Debian package "
                "orthanc-dicomweb (scripts/install.sh --test does)"
            )
        self.workdir = Path(workdir)
        self.aet = aet
        self.dicom_port = dicom_port or free_port()
        self.http_port = http_port or free_port()
        self.initial_modalities: dict[str, Modality] = dict(modalities or {})
        storage = self.workdir / "storage"
        settings: dict[str, Any] = {
            "Name": f"mercure-test-{self.http_port}",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "DicomAet": aet,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "StorageCompression": False,
            "HttpCompressionEnabled": False,
            "SaveJobs": False,
            # Close outgoing associations at once: tests then see a finished association.
            "DicomAssociationCloseDelay": 0,
            "DicomModalities": {name: list(m) for name, m in self.initial_modalities.items()},
            "Plugins": [str(DICOMWEB_PLUGIN)] if dicomweb else [],
            "DicomWeb": {"Enable": dicomweb, "Root": "/dicom-web/"},
        }
        settings.update(config or {})
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "orthanc.json"
        self.config_path.write_text(json.dumps(settings, indent=2))
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        self.dicomweb_url = f"{self.base_url}/dicom-web"
        self.client = httpx.Client(base_url=self.base_url, timeout=60.0)
        super().__init__([program, str(self.config_path)], self.workdir / "orthanc.log")

    def is_ready(self) -> bool:
        """Both the DICOM port and the REST API answer."""
        if not (is_listening(self.dicom_port, self.pid) and is_listening(self.http_port, self.pid)):
            return False
        try:
            return self.client.get("/system").status_code == 200
        except httpx.TransportError:
            return False

    def close(self) -> None:
        """Stop Orthanc and close the HTTP client: the instance cannot be started again."""
        self.stop()
        self.client.close()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One REST call; a status >= 400 raises PeerError with Orthanc's answer."""
        response = self.client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise PeerError(
                f"Orthanc {method} {path} answered {response.status_code}: {response.text[:2000]}"
            )
        return response

    def instances(self) -> list[str]:
        """The Orthanc ids of all stored instances."""
        ids: list[str] = self.request("GET", "/instances").json()
        return ids

    def instance_file(self, instance_id: str) -> bytes:
        """The stored DICOM file of one instance, as received."""
        return self.request("GET", f"/instances/{instance_id}/file").content

    def instance_tags(self, instance_id: str) -> dict[str, Any]:
        """The tags of one instance, keyed by DICOM keyword (Orthanc's simplified form)."""
        tags: dict[str, Any] = self.request(
            "GET", f"/instances/{instance_id}/simplified-tags"
        ).json()
        return tags

    def sop_instance_uids(self) -> set[str]:
        """The SOP Instance UIDs of all stored instances."""
        expanded = self.request("GET", "/instances", params={"expand": ""}).json()
        return {item["MainDicomTags"]["SOPInstanceUID"] for item in expanded}

    def statistics(self) -> dict[str, Any]:
        """Orthanc's ``/statistics`` (CountInstances, CountSeries, TotalDiskSize, ...)."""
        stats: dict[str, Any] = self.request("GET", "/statistics").json()
        return stats

    def upload(self, paths: Iterable[Path | str]) -> list[str]:
        """Store files over REST (not DICOM) and return their Orthanc instance ids."""
        ids = []
        for path in paths:
            answer = self.request("POST", "/instances", content=Path(path).read_bytes()).json()
            ids.append(answer["ID"])
        return ids

    def store_to_modality(self, modality: str, ids: Iterable[str]) -> dict[str, Any]:
        """Send resources (instance/series/study ids) to a configured modality by C-STORE.

        Synchronous: returns once Orthanc's job finished; its answer lists what was sent.
        """
        body = {"Resources": list(ids), "Synchronous": True}
        answer: dict[str, Any] = self.request(
            "POST", f"/modalities/{modality}/store", json=body
        ).json()
        return answer

    def echo_modality(self, modality: str) -> bool:
        """Whether a C-ECHO from Orthanc to the modality succeeds."""
        response = self.client.post(f"/modalities/{modality}/echo", json={})
        return response.status_code == 200

    def modalities(self) -> list[str]:
        """The names of the modalities Orthanc knows now."""
        names: list[str] = self.request("GET", "/modalities").json()
        return names

    def set_modality(self, name: str, modality: Modality) -> None:
        """Add or change a modality while Orthanc runs (e.g. a receiver started by the test)."""
        aet, host, port = modality
        self.request("PUT", f"/modalities/{name}", json={"AET": aet, "Host": host, "Port": port})

    def clear(self) -> None:
        """Delete every stored patient (and so every study, series and instance)."""
        for patient in self.request("GET", "/patients").json():
            self.request("DELETE", f"/patients/{patient}")

    def reset(self) -> None:
        """Back to the state after start: no data, only the modalities given at start."""
        self.clear()
        for name in self.modalities():
            if name not in self.initial_modalities:
                self.request("DELETE", f"/modalities/{name}")
        for name, modality in self.initial_modalities.items():
            self.set_modality(name, modality)
