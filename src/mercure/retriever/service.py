"""The ``retriever`` service: runs the retrieve jobs in ``data_dir/retrieve/jobs``.

Why a service rather than the ``mercure retrieve`` command itself: a job of a thousand studies
runs for hours or days (off-peak only, perhaps), must survive a reboot and a crash, and must
share each source's limits with every other job. The command only writes the job folder
(:mod:`.jobs`); this process runs every job that is not finished.

Each job is run by one process only: the service holds an ``flock`` on the job folder
(:class:`~mercure.core.claims.Claim`) while it runs it; the kernel drops it when the process
ends, however it ends, and a restarted service (or another one on the same data folder) takes
the job up where its ``state.json`` says. New jobs wake the loop at once (inotify), with a
periodic rescan as the safety net.

C-GET and WADO-RS instances are placed through the receiver's own write path
(:class:`~mercure.core.ingest.placement.Placer`, with this process's staging folder), so they
land in ``incoming/<series>/`` exactly as C-STORE'd ones do; C-MOVE'd ones come in through the
receiver.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from mercure.core.claims import Claim
from mercure.core.config import ConfigSource, LoadedConfig
from mercure.core.config.models import DicomSource
from mercure.core.datafolder import Stage
from mercure.core.errors import MercureError
from mercure.core.ingest.diskguard import DiskGuard
from mercure.core.ingest.placement import Placer
from mercure.core.ingest.staging import Staging
from mercure.core.service import Service
from mercure.retriever.dimseretrieve import CGetFetcher, CMoveFetcher
from mercure.retriever.engine import Environment, JobRunner, SourceConfig
from mercure.retriever.fetching import Fetcher
from mercure.retriever.jobs import FINISHED, job_folders, jobs_root, read_progress, read_request
from mercure.retriever.landing import Landing
from mercure.retriever.limits import SourceLimits
from mercure.retriever.wado import WadoFetcher

log = logging.getLogger(__name__)

STAGING_INSTANCE = "retriever"
CRASH_PAUSE = 60.0
"""Seconds before a job whose runner crashed is taken up again (no tight crash loop)."""


class RetrieverService(Service):
    """Runs every unfinished retrieve job of the data folder."""

    name = "retriever"
    idle_wait = 10.0
    """Safety-net rescan; new job folders wake the loop at once."""
    fast_event_loop = True
    """C-GET and WADO-RS land instances on this loop as the receiver does on its own: on
    uvloop a C-GET costs the CPU per instance of DCMTK's getscu (docs/performance.md)."""

    def __init__(self, source: ConfigSource, *, instance: str | None = None) -> None:
        super().__init__(source, instance=instance)
        self.staging = Staging(self.data.stage(Stage.INCOMING), STAGING_INSTANCE)
        placer = Placer(self.data, self.staging, self.events, fsync=self.config.receiver.fsync)
        incoming = str(self.data.stage(Stage.INCOMING))
        self.landing = Landing(
            placer, DiskGuard(incoming, self.config.receiver.min_free_disk_mb << 20)
        )
        self.env = Environment(
            data=self.data,
            events=self.events,
            limits=SourceLimits(),
            fetcher_for=self.fetcher_for,
            config=lambda: self.config,
        )
        self._jobs: dict[str, tuple[Claim, asyncio.Task[None]]] = {}
        self._resting: dict[str, float] = {}
        """Jobs whose runner crashed, with the loop time they may be taken up again."""
        self._broken: set[str] = set()
        """Job folders that could not be read (logged once; looked at again after a change)."""

    def fetcher_for(self, name: str, source: SourceConfig) -> Fetcher:
        """The retrieve method of a source."""
        if isinstance(source, DicomSource):
            if source.retrieve_method == "c-move":
                return CMoveFetcher(name, source, self.config)
            return CGetFetcher(name, source, self.landing)
        return WadoFetcher(name, source, self.landing)

    def on_config(self, loaded: LoadedConfig) -> None:
        """Apply the receiver's fsync and disk floor to what the retriever places."""
        receiver = loaded.config.receiver
        self.landing.placer.fsync = receiver.fsync
        self.landing.disk.floor_bytes = receiver.min_free_disk_mb << 20

    async def setup(self) -> None:
        """Watch the jobs folder."""
        self.wake_on_arrivals(jobs_root(self.data))

    async def step(self) -> bool:
        """Start a runner for every unfinished job no process runs yet; never reports more
        work (a new job folder or a runner's end wakes the loop)."""
        now = asyncio.get_running_loop().time()
        for folder in job_folders(self.data):
            if folder.name in self._jobs or self._resting.get(folder.name, now) > now:
                continue
            self._take(folder)
        return False

    def _take(self, folder: Path) -> None:
        try:
            progress = read_progress(folder)
            if progress.state in FINISHED:
                return
            request = read_request(folder)
        except (OSError, MercureError, ValueError) as exc:
            if folder.name not in self._broken:
                self._broken.add(folder.name)
                log.error("retrieve job %s cannot be read: %s", folder.name, exc)
            return
        claim = Claim.try_take(folder)
        if claim is None:
            return  # another process runs it
        try:
            # Read again under the claim: the previous holder may have moved it on.
            progress = read_progress(folder)
            if progress.state in FINISHED:
                claim.release()
                return
            runner = JobRunner(folder, request, progress, self.env)
        except Exception as exc:
            claim.release()
            log.error("retrieve job %s cannot be run: %s", folder.name, exc)
            return
        self._broken.discard(folder.name)
        task = asyncio.create_task(self._run_job(folder.name, runner))
        self._jobs[folder.name] = (claim, task)

    async def _run_job(self, job_id: str, runner: JobRunner) -> None:
        try:
            await runner.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "retrieve job %s: runner crashed; taken up again in %g s", job_id, CRASH_PAUSE
            )
            loop = asyncio.get_running_loop()
            self._resting[job_id] = loop.time() + CRASH_PAUSE
            loop.call_later(CRASH_PAUSE, self.wake)
        finally:
            claim, _ = self._jobs.pop(job_id)
            claim.release()
            self.wake()

    async def teardown(self) -> None:
        """Stop the runners (their tries are taken up again by the next start), let go."""
        tasks = [task for _, task in self._jobs.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.staging.close()


SERVICE = RetrieverService
