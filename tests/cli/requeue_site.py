"""Helpers of the requeue and delete tests: an initialised installation with tasks in stages."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from mercure.cli import main
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.events import Event, read_segment
from mercure.core.task import (
    TargetStatus,
    Task,
    TaskDispatch,
    TaskInfo,
    TaskProcessing,
    write_task,
)
from mercure.testing.series import generate_series


class Installation:
    """``mercure init`` in a folder, with targets, and tasks placed directly in stages."""

    def __init__(self, root: Path, targets: dict[str, Any] | None = None) -> None:
        self.root = root
        main(["init", str(root)])
        self.config = root / "mercure.yaml"
        document = yaml.safe_load(self.config.read_text())
        document["targets"] = targets or {
            "pacs": {"type": "folder", "folder": str(root / "pacs")},
            "archive": {"type": "folder", "folder": str(root / "archive")},
        }
        self.config.write_text(yaml.safe_dump(document))
        self.data = DataFolder(root / "data")
        self.series = generate_series(root / "series", "tiny", 3, patient_name="Doe^Jane")

    def cli(self, *argv: str) -> int:
        """Run ``mercure ARGV --config <this installation>``."""
        return main([*argv, "--config", str(self.config)])

    def add(
        self,
        stage: Stage,
        task_id: str,
        *,
        action: str = "route",
        targets: list[str] | None = None,
        linked_from: Path | None = None,
    ) -> Path:
        """A task in ``stage`` with the series' files (hard links of ``linked_from``'s if given)."""
        folder = self.data.stage(stage) / task_id
        folder.mkdir()
        source = linked_from or self.series.paths[0].parent
        for path in sorted(source.glob("*.dcm")):
            if linked_from is None:
                folder.joinpath(path.name).write_bytes(path.read_bytes())
            else:
                os.link(path, folder / path.name)
        names = targets if targets is not None else ["pacs"]
        state = "complete" if stage is Stage.SUCCESS else "waiting"
        task = Task(
            id=task_id,
            info=TaskInfo(
                action=action,  # type: ignore[arg-type]
                uid=self.series.series_uid,
                applied_rule="ct",
                patient_name="Doe^Jane",
            ),
            dispatch=TaskDispatch(
                target_name=names,
                status={n: TargetStatus(state=state, instances_sent=3) for n in names},
            )
            if names
            else None,
            process=[TaskProcessing(module_name="anon")] if action == "both" else [],
        )
        write_task(folder, task)
        if stage is Stage.SUCCESS and names:
            # What the dispatcher leaves: every instance confirmed by every target.
            lines = [
                f'{{"target": "{n}", "file": "{p.name}", "size": {p.stat().st_size}}}\n'
                for n in names
                for p in sorted(folder.glob("*.dcm"))
            ]
            (folder / "dispatch-progress.jsonl").write_text("".join(lines))
        return folder

    def events(self, kind: str | None = None) -> list[Event]:
        """Every event in the outboxes (delivered or not), oldest first."""
        found = [
            event
            for segment in sorted(self.data.outbox_dir.rglob("*"))
            if segment.suffix in (".jsonl", ".open")
            for event in read_segment(segment)
        ]
        return [e for e in found if kind is None or e.kind == kind]

    def tasks_in(self, stage: Stage) -> list[str]:
        """Task ids (visible folder names) in a stage."""
        return [p.name for p in self.data.entries(stage)]
