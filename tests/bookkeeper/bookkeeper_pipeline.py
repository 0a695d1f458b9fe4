"""A stand-in for the pipeline services, which do not exist yet: real outboxes, event clients
and deliverers, emitting what receiver, router, processor, dispatcher and cleaner will emit
for a series, by the event contract of docs/bookkeeper.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from mercure.core.delivery import OutboxDeliverer, RetryPolicy
from mercure.core.events import Event, EventClient, Outbox
from mercure.core.task import TargetStatus, Task, TaskDispatch, TaskInfo, TaskProcessing

SERVICES = ("receiver", "router", "processor", "dispatcher", "cleaner")
RULES = ("ct_rule", "mr_rule")
TARGETS = ("pacs", "archive")
PATIENT_NAMES = ("Doe^John", "DOE^Jane", "Müller^Jürgen", "Roe^Richard")


@dataclass
class SeriesRun:
    """What one series went through, for the assertions."""

    index: int
    series_uid: str
    study_uid: str
    patient_id: str
    accession: str
    modality: str
    rule: str
    target: str
    task_id: str
    processed: bool
    failed: bool
    events: list[Event] = field(default_factory=list)


def series_identity(index: int) -> dict[str, str]:
    """Deterministic identifiers of series ``index``."""
    return {
        "series_uid": f"1.2.826.0.1.3680043.10.543.1.{index}",
        "study_uid": f"1.2.826.0.1.3680043.10.543.2.{index // 2}",
        "patient_id": f"PAT{index % 5}",
        "accession": f"ACC{index:04d}",
        "modality": "CT" if index % 2 == 0 else "MR",
        "rule": RULES[index % 2],
        "target": TARGETS[index % 3 % 2],
    }


class Pipeline:
    """Five producers, each with its own outbox; delivered to ``url`` when given."""

    def __init__(self, outbox_root: Path, url: str | None = None, token: str | None = None):
        self.clients = {
            name: EventClient(Outbox(outbox_root, f"{name}@test"), name, "test")
            for name in SERVICES
        }
        self.deliverers = (
            [
                OutboxDeliverer(
                    client,
                    url,
                    token,
                    seal_interval=0.05,
                    retry=RetryPolicy(initial=0.05, maximum=0.5),
                )
                for client in self.clients.values()
            ]
            if url
            else []
        )
        self.emitted: list[Event] = []

    def start(self) -> None:
        """Start delivering."""
        for deliverer in self.deliverers:
            deliverer.start()

    def stop(self) -> None:
        """Stop delivering and close the outboxes."""
        for deliverer in self.deliverers:
            deliverer.stop()
        for client in self.clients.values():
            client.outbox.close()

    def pending_segments(self) -> int:
        """Segments not yet delivered, over all outboxes."""
        return sum(len(c.outbox.sealed_segments()) for c in self.clients.values())

    def _emit(self, run: SeriesRun, service: str, kind: str, **kwargs: Any) -> None:
        event = self.clients[service].emit(kind, **kwargs)
        run.events.append(event)
        self.emitted.append(event)

    def run_series(
        self, index: int, *, process: bool = False, fail: bool = False, task_id: str | None = None
    ) -> SeriesRun:
        """Emit the events of one series from reception to dispatch and cleaning."""
        ident = series_identity(index)
        run = SeriesRun(
            index=index,
            task_id=task_id or f"task-{index:04d}",
            processed=process,
            failed=fail,
            **ident,
        )
        series = {"series_uid": run.series_uid, "study_uid": run.study_uid}
        tags = {
            "PatientID": run.patient_id,
            "PatientName": PATIENT_NAMES[index % len(PATIENT_NAMES)],
            "StudyDate": f"202501{index + 1:02d}",
            "AccessionNumber": run.accession,
            "Modality": run.modality,
            "SeriesDescription": f"series {index}",
            "StudyDescription": "test study",
            "SenderAET": "MODALITY",
            "ReceiverAET": "MERCURE",
            "SenderAddress": "127.0.0.1",
        }
        self._emit(run, "receiver", "series.received", instances=3, tags=tags, **series)
        self._emit(
            run,
            "receiver",
            "association.closed",
            calling_aet="MODALITY",
            called_aet="MERCURE",
            address="127.0.0.1",
            instances=3,
            series=[run.series_uid],
        )
        task = Task(
            id=run.task_id,
            info=TaskInfo(
                action="both" if process else "route",
                uid=run.series_uid,
                triggered_rules={run.rule: True},
                applied_rule=run.rule,
                mrn=run.patient_id,
                acc=run.accession,
            ),
            dispatch=TaskDispatch(target_name=[run.target]),
            process=[TaskProcessing(module_name="anonymizer")] if process else [],
        )
        on_task = {"task_id": run.task_id, **series}
        self._emit(
            run,
            "router",
            "task.created",
            stage="processing" if process else "outgoing",
            task=task.model_dump(mode="json"),
            **on_task,
        )
        if process:
            self._emit(run, "processor", "process.begin", module="anonymizer", **on_task)
            self._emit(
                run,
                "processor",
                "process.end",
                module="anonymizer",
                exit_code=0,
                log="anonymized 3 instances\n",
                result={"findings": index},
                stage="outgoing",
                **on_task,
            )
        self._emit(run, "dispatcher", "dispatch.begin", target=run.target, **on_task)
        assert task.dispatch is not None
        if fail:
            self._emit(
                run,
                "dispatcher",
                "dispatch.failed",
                severity="error",
                message="association rejected",
                target=run.target,
                will_retry=False,
                **on_task,
            )
            task.info.fail_stage, task.info.reason = "dispatch", "association rejected"
            task.dispatch.status[run.target] = TargetStatus(state="error")
            self._emit(
                run,
                "dispatcher",
                "task.failed",
                severity="error",
                message="association rejected",
                fail_stage="dispatch",
                task=task.model_dump(mode="json"),
                **on_task,
            )
            return run
        self._emit(
            run, "dispatcher", "dispatch.complete", target=run.target, instances=3, **on_task
        )
        task.dispatch.status[run.target] = TargetStatus(state="complete", instances_sent=3)
        self._emit(
            run, "dispatcher", "task.completed", task=task.model_dump(mode="json"), **on_task
        )
        self._emit(run, "cleaner", "task.cleaned", reason="retention", **on_task)
        return run


def event_at(time: datetime, kind: str, **kwargs: Any) -> Event:
    """An event with a given time (for statistics and retention)."""
    return Event(time=time, service=kwargs.pop("service", "test"), kind=kind, **kwargs)


def hours(n: float) -> timedelta:
    """``n`` hours."""
    return timedelta(hours=n)
