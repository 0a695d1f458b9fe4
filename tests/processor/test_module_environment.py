"""What a command module sees of the processor's environment: a minimal base, the module
contract's variables and its configured ``environment``; never the processor's secrets."""

from __future__ import annotations

import json

from processor_harness import Processor, command_module

from mercure.core.datafolder import Stage
from mercure.testing.series import GeneratedSeries

SECRET = "s3cr3t-pacs-password-0042"
API_KEY = "bookkeeper-key-do-not-leak-77"


def test_command_module_gets_only_base_contract_and_configured_variables(
    processor: Processor, tiny_series: GeneratedSeries
) -> None:
    """Secrets in the processor's environment (a `${VAR}` target password, the bookkeeper key)
    do not reach the module; PATH, LANG, HOME, TMPDIR, MERCURE_* and `environment:` do."""
    processor.env = {
        "PACS_PASSWORD": SECRET,
        "MERCURE_API_KEY": API_KEY,
        "UNRELATED_SETTING": "of the processor only",
        "LANG": "C.UTF-8",
        "HOME": "/home/mercure-test",
        "TMPDIR": "/tmp",
    }
    processor.config["targets"] = {
        "pacs": {
            "type": "sftp",
            "host": "127.0.0.1",
            "user": "mercure",
            "password": "${PACS_PASSWORD}",
        }
    }
    processor.config["bookkeeper"] = {"api_key": "${MERCURE_API_KEY}"}
    processor.config["modules"]["dump"] = command_module(
        "dump_environment.py", environment={"MODEL_DIR": "/srv/models"}
    )
    processor.start()
    task_id = processor.add_task(tiny_series, ["dump"])
    folder = processor.wait_for(task_id, Stage.SUCCESS)
    environment = json.loads((folder / "result.json").read_text())["environment"]
    assert set(environment) <= {
        "PATH",
        "LANG",
        "HOME",
        "TMPDIR",
        "MERCURE_IN_DIR",
        "MERCURE_OUT_DIR",
        "MONAI_INPUTPATH",
        "MONAI_OUTPUTPATH",
        "HOLOSCAN_INPUT_PATH",
        "HOLOSCAN_OUTPUT_PATH",
        "MODEL_DIR",
    }, sorted(environment)
    assert environment["MONAI_INPUTPATH"] == environment["MERCURE_IN_DIR"]
    assert environment["MONAI_OUTPUTPATH"] == environment["MERCURE_OUT_DIR"]
    assert environment["MODEL_DIR"] == "/srv/models"
    assert (environment["LANG"], environment["HOME"]) == ("C.UTF-8", "/home/mercure-test")
    assert environment["MERCURE_OUT_DIR"].endswith("-out")
    assert environment["PATH"]
    dumped = json.dumps(environment)
    assert SECRET not in dumped and API_KEY not in dumped
