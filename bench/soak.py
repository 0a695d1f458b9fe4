"""The chaos soak: a steady DICOM stream while services die; any lost or stuck instance fails.

    .venv/bin/python bench/soak.py [--minutes 10] [--senders 3] [--keep DIR]

Several storescu senders send series that rules route to Orthanc, process with a command module
into a folder target, collect into studies, or discard. Every few seconds a random service (the
supervisor included) is killed with SIGKILL; Orthanc and the bookkeeper are each stopped twice
for a while. Then everything restarts cleanly, the queues drain, and the report says how many
instances were acknowledged, delivered, discarded, in error/ (with reasons), stuck, lost and
duplicated, and what the bookkeeper counted. Exit code 1 when the soak failed.
docs/testing.md explains the report; tests/integration/test_soak.py runs 90 seconds in CI.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from mercure.testing.soak import SoakSettings, run_soak


def main() -> int:
    """Run the soak and print its report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="chaos time (default 10)")
    parser.add_argument("--senders", type=int, default=3, help="storescu senders (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill schedule")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="mercure-soak-"))
    settings = SoakSettings(seconds=args.minutes * 60, senders=args.senders, seed=args.seed)
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:7.1f} s] {text}", flush=True)

    try:
        report = run_soak(root, settings, say)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(report.render())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
