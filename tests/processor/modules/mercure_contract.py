"""A module written to mercure's documented module contract (our own code, standard library only).

It makes the checks mercure's template module (mercure-testmodule) relies on, and fails with
exit code 1 and the reason when one does not hold:
- its folders come from MERCURE_IN_DIR / MERCURE_OUT_DIR (MONAI_INPUTPATH / MONAI_OUTPUTPATH
  name the same);
- every input instance is ``<SeriesInstanceUID>#<SOPInstanceUID>.dcm`` with a ``.tags`` JSON
  beside it whose UIDs match the name;
- task.json is read the way modules read it: ``task.get("process", {}).get("settings")``,
  ``task["info"]``, and ``task.get("study", {})`` / ``task.get("dispatch", {})`` are objects.
It writes what mercure modules write: its instances under a new series name
``<new series>#<SOPInstanceUID>.dcm`` (content unchanged: no DICOM library needed here),
their ``.tags``, the task.json it was given, and result.json. With ``append_to_input`` in its
settings it also appends to every input file, as a careless module might. With
``persistence`` it counts its runs in MODULE_PERSISTENCE_DIR; with ``keep_task`` it keeps the
task.json it was given as ``seen-task.json``; ``routing`` becomes its ``__mercure_routing``.
"""

import json
import os
import shutil
import sys
from pathlib import Path


def fail(reason: str) -> None:
    print(f"contract module: {reason}", flush=True)
    sys.exit(1)


in_dir = Path(os.environ["MERCURE_IN_DIR"])
out_dir = Path(os.environ["MERCURE_OUT_DIR"])
if os.environ.get("MONAI_INPUTPATH") != str(in_dir):
    fail("MONAI_INPUTPATH does not name the input folder")
if os.environ.get("MONAI_OUTPUTPATH") != str(out_dir):
    fail("MONAI_OUTPUTPATH does not name the output folder")

task = json.loads((in_dir / "task.json").read_text())
settings = {"series_suffix": ".1", **task.get("process", {}).get("settings", {})}
study_uid = task.get("study", {}).get("study_uid", "")
targets = task.get("dispatch", {}).get("target_name", "")
info = task["info"]
for key in ("uid", "uid_type", "mrn", "acc", "mercure_version", "mercure_server"):
    if not isinstance(info.get(key), str):
        fail(f"task.json info.{key} is not text: {info.get(key)!r}")

series: dict[str, list[str]] = {}
for entry in sorted(os.scandir(in_dir), key=lambda e: e.name):
    if not entry.name.endswith(".dcm") or entry.is_dir():
        continue
    series_uid = entry.name.split("#", 1)[0]
    sop_uid = entry.name.split("#", 1)[1][: -len(".dcm")]  # IndexError without '#', as mercure's
    tags_path = in_dir / (entry.name[: -len(".dcm")] + ".tags")
    if not tags_path.exists():
        fail(f"no .tags beside {entry.name}")
    tags = json.loads(tags_path.read_text())
    if tags.get("SeriesInstanceUID") != series_uid or tags.get("SOPInstanceUID") != sop_uid:
        fail(f"{tags_path.name} does not describe {entry.name}")
    if tags.get("BodyPartExamined") is None:
        fail(f"{tags_path.name} lacks the standard tag BodyPartExamined")
    series.setdefault(series_uid, []).append(entry.name)
    tag_keys = sorted(tags)

if not series:
    fail("no input instances")

written = 0
for series_uid, names in series.items():
    new_series = series_uid + settings["series_suffix"]
    for name in names:
        sop_uid = name.split("#", 1)[1]
        shutil.copyfile(in_dir / name, out_dir / f"{new_series}#{sop_uid}")
        tags = json.loads((in_dir / name.replace(".dcm", ".tags")).read_text())
        tags["SeriesInstanceUID"] = new_series
        (out_dir / f"{new_series}#{sop_uid}".replace(".dcm", ".tags")).write_text(json.dumps(tags))
        written += 1
        if settings.get("append_to_input"):
            with open(in_dir / name, "ab") as handle:
                handle.write(b"changed by the module")

runs = None
if settings.get("persistence"):
    counter = Path(os.environ["MODULE_PERSISTENCE_DIR"]) / "runs"
    runs = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(runs))

shutil.copyfile(in_dir / "task.json", out_dir / "task.json")  # mercure modules often do
if settings.get("keep_task"):
    shutil.copyfile(in_dir / "task.json", out_dir / "seen-task.json")
result = {
    "instances": written,
    "series": sorted(series),
    "study_uid": study_uid,
    "targets": targets,
    "settings": settings,
    "runs": runs,
    "tag_keys": tag_keys,
}
if "routing" in settings:
    result["__mercure_routing"] = settings["routing"]
(out_dir / "result.json").write_text(json.dumps(result))
print(f"contract module: {written} instances of {len(series)} series", flush=True)
