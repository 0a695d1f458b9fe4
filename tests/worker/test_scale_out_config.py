"""The ``scale_out`` settings: off by default without Celery, the broker's password masked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mercure.core import masking
from mercure.core.config import load_config
from mercure.core.errors import ConfigError
from mercure.core.workqueue import broker_priority, queue_name
from mercure.worker.runtime import valid_task_id

SECRET = "br0ker-Pass-42"


def _write(tmp_path: Path, scale_out: str) -> Path:
    path = tmp_path / "mercure.yaml"
    path.write_text(f"data_dir: {tmp_path / 'data'}\n{scale_out}")
    return path


def test_default_path_never_imports_celery(tmp_path: Path) -> None:
    """Off by default: loading the configuration and the services' modules loads no Celery."""
    path = _write(tmp_path, "")
    code = (
        "import sys\n"
        "from mercure.core.config import load_config\n"
        "import mercure.processor.service, mercure.dispatcher.service, mercure.cli.main\n"
        f"assert load_config({str(path)!r}).config.scale_out.engine == 'none'\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('celery', 'kombu')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_celery_engine_needs_a_broker(tmp_path: Path) -> None:
    """engine: celery without broker is refused, naming the key."""
    with pytest.raises(ConfigError, match="scale_out"):
        load_config(_write(tmp_path, "scale_out: {engine: celery}\n"))


def test_broker_must_be_redis_or_amqp(tmp_path: Path) -> None:
    """A broker URL of another scheme is refused."""
    with pytest.raises(ConfigError, match="redis://"):
        load_config(_write(tmp_path, "scale_out: {engine: celery, broker: 'http://x'}\n"))


def test_broker_password_from_environment_is_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """${ENV} in the broker URL; its password never appears in scrubbed text."""
    masking.registry().clear()
    monkeypatch.setenv("BROKER_PASSWORD", SECRET)
    path = _write(
        tmp_path,
        "scale_out: {engine: celery, broker: 'amqp://mercure:${BROKER_PASSWORD}@mq:5672/prod'}\n",
    )
    config = load_config(path).config
    assert config.scale_out.broker == f"amqp://mercure:{SECRET}@mq:5672/prod"
    assert SECRET not in masking.scrub(f"cannot connect to {config.scale_out.broker}")
    masking.registry().clear()


def test_module_queue_and_priorities_map_to_the_broker(tmp_path: Path) -> None:
    """A module's queue names the broker queue; urgent is the highest priority on each broker."""
    path = _write(
        tmp_path,
        "modules: {ai: {runner: command, command: [x], queue: gpu}}\n"
        "scale_out: {engine: celery, broker: 'redis://127.0.0.1:6379/0', queue_prefix: site}\n",
    )
    config = load_config(path).config
    assert queue_name(config.scale_out, "processing", config.modules["ai"].queue) == (
        "site.processing.gpu"
    )
    redis = config.scale_out
    amqp = redis.model_copy(update={"broker": "amqp://127.0.0.1//"})
    assert broker_priority(redis, "urgent") < broker_priority(redis, "offpeak")  # 0 first
    assert broker_priority(amqp, "urgent") > broker_priority(amqp, "offpeak")


def test_bad_queue_name_of_a_module_is_refused(tmp_path: Path) -> None:
    """Queue names are lower-case words: a typo is an error with its key path."""
    with pytest.raises(ConfigError, match="queue"):
        load_config(
            _write(tmp_path, "modules: {ai: {runner: command, command: [x], queue: 'GPU!'}}\n")
        )


@pytest.mark.parametrize("task_id", ["", "../x", "a/b", ".hidden", None, 42, "x" * 300])
def test_message_with_a_bad_task_id_is_refused(task_id: object) -> None:
    """A message comes from the network: only a plain folder name is taken as a task id."""
    assert not valid_task_id(task_id)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ([], "scale_out.engine is 'none'"),
        (["--stages", "routing"], "--stages: unknown routing"),
        (["--queues", "GPU"], "--queues: 'GPU' is not a queue name"),
    ],
)
def test_worker_refuses_to_start_with_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], expected: str
) -> None:
    """`mercure worker` without scale-out, or with a bad stage or queue, names the problem."""
    from mercure.cli.main import main

    path = _write(tmp_path, "")
    assert main(["worker", "--config", str(path), *arguments]) == 1
    assert expected in capsys.readouterr().err
