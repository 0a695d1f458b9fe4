"""A test module that writes the environment it was given into result.json, and copies its input."""

import json
import os
import shutil
from pathlib import Path

in_dir = Path(os.environ["MERCURE_IN_DIR"])
out_dir = Path(os.environ["MERCURE_OUT_DIR"])
for path in in_dir.glob("*.dcm"):
    shutil.copyfile(path, out_dir / path.name)
(out_dir / "result.json").write_text(json.dumps({"environment": dict(os.environ)}))
