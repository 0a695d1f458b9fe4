"""``python -m mercure.modules.deidentify``: de-identify every DICOM file of the input folder.

Settings (``process.settings`` in task.json): ``keep_dates_shifted`` (bool),
``keep_series_descriptions`` (bool). The site secret comes from the environment variable
``MERCURE_DEID_SECRET`` (set it in the module's ``environment``, or better in the service's
environment), so it never travels in task.json. Output files are named by their new SOP Instance
UID; ``result.json`` counts what was done. Exit codes: 0 done, 2 misconfigured, 1 a file failed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from mercure.modules.deidentify.deidentifier import Deidentifier, Options

SECRET_VARIABLE = "MERCURE_DEID_SECRET"


def main() -> int:
    """Run the module over ``MERCURE_IN_DIR`` into ``MERCURE_OUT_DIR``; the exit code."""
    try:
        in_dir = Path(os.environ["MERCURE_IN_DIR"])
        out_dir = Path(os.environ["MERCURE_OUT_DIR"])
    except KeyError as exc:
        print(f"deidentify: {exc.args[0]} is not set (run by the mercure processor)")
        return 2
    secret = os.environ.get(SECRET_VARIABLE, "")
    if not secret:
        print(f"deidentify: no site secret: set {SECRET_VARIABLE} in the module's environment")
        return 2
    settings = json.loads((in_dir / "task.json").read_text())["process"].get("settings", {})
    options = Options(
        keep_dates_shifted=bool(settings.get("keep_dates_shifted", False)),
        keep_series_descriptions=bool(settings.get("keep_series_descriptions", False)),
    )
    deidentifier = Deidentifier(secret.encode(), options)
    done, skipped = 0, 0
    for path in sorted(in_dir.iterdir()):
        if path.name == "task.json" or path.suffix == ".tags" or not path.is_file():
            continue  # .tags: mercure's per-instance tags (JSON), not an instance
        try:
            dataset = pydicom.dcmread(path)
        except InvalidDicomError:
            skipped += 1  # not DICOM: nothing of it may leave un-de-identified
            continue
        deidentifier.deidentify(dataset)
        dataset.save_as(out_dir / f"{dataset.SOPInstanceUID}.dcm")
        done += 1
    result = {"deidentified": done, "skipped_not_dicom": skipped, "options": vars(options)}
    (out_dir / "result.json").write_text(json.dumps(result) + "\n")
    print(f"deidentify: {done} instances de-identified, {skipped} non-DICOM files left out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
