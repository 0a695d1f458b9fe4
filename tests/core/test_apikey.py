"""The bookkeeper API key: made once by whoever needs it first, private, followed when replaced."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from mercure.core.apikey import (
    ApiKeyError,
    ApiKeys,
    key_path,
    previous_keys_path,
    write_key_file,
    write_previous_keys,
)
from mercure.core.config.models import BookkeeperConfig
from mercure.core.masking import scrub

RACERS = 8
RACER = """
import sys
from pathlib import Path
from mercure.core.apikey import ApiKeys
from mercure.core.config.models import BookkeeperConfig
sys.stdin.read()  # start together: the test closes every stdin at once
print(ApiKeys(BookkeeperConfig(), Path(sys.argv[1])).current())
"""


def test_first_use_makes_a_private_key_file(tmp_path: Path) -> None:
    """Without a configured key, the first use writes a random key to a 0600 file in a 0700
    folder, and later uses read the same key."""
    keys = ApiKeys(BookkeeperConfig(), tmp_path)
    key = keys.current()
    path = key_path(tmp_path)
    assert path.read_text() == key + "\n"
    assert len(key) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert ApiKeys(BookkeeperConfig(), tmp_path).current() == key
    assert keys.source == str(path)


def test_many_processes_at_once_make_exactly_one_key(tmp_path: Path) -> None:
    """Eight processes that find no key file at the same moment all end with one same key,
    and no temporary file is left behind."""
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(RACERS)
    ]
    for racer in racers:
        assert racer.stdin is not None
        racer.stdin.close()
    keys = set()
    for racer in racers:
        assert racer.stdout is not None
        keys.add(racer.stdout.read().strip())
        racer.stdout.close()
        assert racer.wait(timeout=60) == 0
    assert keys == {key_path(tmp_path).read_text().strip()}
    assert os.listdir(key_path(tmp_path).parent) == [key_path(tmp_path).name]


def test_a_configured_key_wins_and_no_file_is_made(tmp_path: Path) -> None:
    """bookkeeper.api_key is used as it is; the data folder gets no key file."""
    keys = ApiKeys(BookkeeperConfig(api_key=SecretStr("configured-key-123456")), tmp_path)
    assert keys.current() == "configured-key-123456"
    assert keys.source == "bookkeeper.api_key"
    assert not key_path(tmp_path).exists()


def test_a_replaced_key_file_is_followed(tmp_path: Path) -> None:
    """Writing a new key file (a rotation) changes the key in force without a new object."""
    keys = ApiKeys(BookkeeperConfig(), tmp_path)
    old = keys.current()
    write_key_file(tmp_path, "a-new-key-of-enough-length")
    assert keys.current() == "a-new-key-of-enough-length" != old
    assert stat.S_IMODE(key_path(tmp_path).stat().st_mode) == 0o600


def test_previous_keys_are_accepted_but_not_sent(tmp_path: Path) -> None:
    """Previous keys from the configuration and from the data folder are accepted by the
    bookkeeper; services send only the current key."""
    config = BookkeeperConfig(previous_api_keys=[SecretStr("from-config-key-0001")])
    keys = ApiKeys(config, tmp_path)
    current = keys.current()
    write_previous_keys(tmp_path, ["from-file-key-00000001"])
    assert keys.accepted() == (current, "from-config-key-0001", "from-file-key-00000001")
    assert keys.current() == current
    assert stat.S_IMODE(previous_keys_path(tmp_path).stat().st_mode) == 0o600


@pytest.mark.parametrize("content", ["", "short\n", "has a space in it somewhere\n"])
def test_an_unusable_key_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    """An empty, short or spaced key file is refused with its path, never used."""
    path = key_path(tmp_path)
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(ApiKeyError, match=str(path)):
        ApiKeys(BookkeeperConfig(), tmp_path).current()


def test_a_bad_new_key_is_refused(tmp_path: Path) -> None:
    """A rotation to a short key is refused before anything is written."""
    with pytest.raises(ApiKeyError, match="at least 16"):
        write_key_file(tmp_path, "short")
    assert not key_path(tmp_path).exists()


def test_keys_from_the_data_folder_are_masked(tmp_path: Path) -> None:
    """The key file's key and the previous keys are registered secrets: scrubbed from every
    log line, event and answer of the process that read them."""
    keys = ApiKeys(BookkeeperConfig(), tmp_path)
    write_previous_keys(tmp_path, ["previous-key-to-mask-0001"])
    current = keys.current()
    keys.accepted()
    assert scrub(f"sent {current} and previous-key-to-mask-0001") == "sent *** and ***"
