"""``mercure rotate-api-key``: a new bookkeeper key in the data folder, the old one still accepted.

The services re-read the key file before each delivery, so they switch on their own; events
refused meanwhile wait in their outboxes. The old key moves to the previous-keys file, which the
bookkeeper keeps accepting until ``--forget-previous``, so that clients outside the data folder
(Prometheus, scripts) can be given the new key one by one.
"""

from __future__ import annotations

import argparse

from mercure.bookkeeper.user_cli import register_user
from mercure.core.apikey import (
    ApiKeyError,
    ApiKeys,
    key_path,
    new_key,
    previous_keys_path,
    read_previous_keys,
    write_key_file,
    write_previous_keys,
)
from mercure.core.config import load_config


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``mercure rotate-api-key`` and ``mercure user`` to the command line."""
    register_user(subparsers, common)
    rotate = subparsers.add_parser(
        "rotate-api-key",
        parents=[common],
        help="replace the bookkeeper API key in the data folder (the old one stays accepted)",
        description="Write a new random key to data_dir/.secrets/bookkeeper.key and keep the "
        "old key in bookkeeper.previous-keys, still accepted by the bookkeeper. Once every "
        "client outside the data folder has the new key, run again with --forget-previous.",
    )
    rotate.add_argument(
        "--forget-previous",
        action="store_true",
        help="stop accepting previous keys; the current key stays",
    )
    rotate.set_defaults(handler=cmd_rotate_api_key)


def cmd_rotate_api_key(args: argparse.Namespace) -> int:
    """Rotate the key file, or forget the previous keys; never prints a key."""
    config = load_config(args.config).config
    keys = ApiKeys.from_config(config)
    if keys.configured:
        raise ApiKeyError(
            "bookkeeper.api_key is set in the configuration, so the key file is not used: "
            "rotate it there (list the old key under bookkeeper.previous_api_keys meanwhile)"
        )
    data_dir = config.data_dir
    if args.forget_previous:
        write_previous_keys(data_dir, [])
        print(f"previous keys forgotten ({previous_keys_path(data_dir)} emptied)")
        return 0
    old = keys.current()
    kept = [key for key in read_previous_keys(data_dir) if key != old]
    write_previous_keys(data_dir, [old, *kept])
    write_key_file(data_dir, new_key())
    print(f"new key written to {key_path(data_dir)}; the old key stays accepted")
    print("give the new key to clients outside the data folder, then run with --forget-previous")
    return 0
