"""The notifier's command: ``mercure notify-test CHANNEL [--json] [--definition -]``.

Sends the test notification (trigger ``test``, fields from the template sample) through one
channel once, directly (not through the queue), and prints the peer's answer or what failed;
exit code 0 when it was delivered.

``--definition -`` tests a channel that is not saved: its definition as a JSON object on
standard input (``${ENV}`` references already expanded), never an argument or a file, since it
holds secrets. A secret given as the literal ``<secret>`` means the one stored in the
configuration for this channel (the web interface never sees stored secrets, so it sends the
placeholder for a secret field the user left alone). The definition's secrets are masked in
everything the command prints.

``--json`` prints ``{"channel", "type", "ok", "answer", "error", "seconds"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from pydantic import BaseModel, SecretStr

from mercure.core.config import load_config
from mercure.core.config.definition import read_definition, validate_definition
from mercure.core.config.models import Channel
from mercure.core.errors import MercureError
from mercure.core.masking import (
    STORED_SECRET,
    register_channel_secrets,
    register_model_secrets,
    scrub,
)
from mercure.core.notifications.queue import new_notification_id
from mercure.core.notifications.templates import SAMPLE, template_fields
from mercure.core.notifications.triggers import TEXTS
from mercure.notifier.senders import ChannelConfig, Message, SendFailed, send


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``mercure notify-test`` to the command line."""
    parser = commands.add_parser(
        "notify-test",
        parents=[common],
        help="send a test notification through a channel and print the answer",
        description="Render the test notification (trigger 'test', sample fields) for the "
        "channel and send it once, directly; prints the server's answer or the error.",
    )
    parser.add_argument("channel", help="channel name under `notifications:`")
    parser.add_argument("--json", action="store_true", help="print the outcome as one JSON object")
    parser.add_argument(
        "--definition",
        metavar="-",
        choices=["-"],
        help="test this definition instead of the configured one: one channel as a JSON "
        "object on standard input; '<secret>' keeps a stored secret",
    )
    parser.set_defaults(handler=cmd_notify_test)


def test_message(channel: ChannelConfig, appliance: str, web_url: str | None) -> Message:
    """The test notification: the template sample, trigger ``test``."""
    facts = {**SAMPLE, "event": "test", "appliance": appliance}
    facts["text"] = TEXTS["test"].format(appliance=appliance)
    fields = template_fields(facts, include_phi=channel.include_phi, web_url=web_url)
    return Message(id=f"test-{new_notification_id()}", trigger="test", fields=fields)


def restore_secrets(given: Any, stored: Any) -> Any:
    """``given`` with every ``"<secret>"`` replaced by the stored secret at the same place."""
    if isinstance(given, str):
        if given == STORED_SECRET and isinstance(stored, SecretStr):
            return stored.get_secret_value()
        return given
    if isinstance(given, dict):
        return {key: restore_secrets(value, _child(stored, key)) for key, value in given.items()}
    if isinstance(given, list):
        items = stored if isinstance(stored, list) else []
        return [
            restore_secrets(value, items[index] if index < len(items) else None)
            for index, value in enumerate(given)
        ]
    return given


def _child(stored: Any, key: str) -> Any:
    if isinstance(stored, dict):
        return stored.get(key)
    if isinstance(stored, BaseModel) and key in type(stored).model_fields:
        return getattr(stored, key)
    return None


def read_channel_definition(name: str, stored: ChannelConfig | None) -> ChannelConfig:
    """The channel definition on standard input; MercureError naming what is wrong."""
    document = read_definition()
    if isinstance(document, dict):
        # Masked before anything is validated: an error message may quote a value.
        register_channel_secrets(document)
    document = restore_secrets(document, stored)
    channel: ChannelConfig = validate_definition(document, Channel, f"channel {name!r}")
    register_model_secrets(channel)
    return channel


def cmd_notify_test(args: argparse.Namespace) -> int:
    """Send the test notification; exit code 0 when delivered, 1 with the reason when not."""
    started = time.monotonic()
    kind = ""
    answer = error = ""
    try:
        config = load_config(args.config).config
        stored = config.notifications.get(args.channel)
        if args.definition:
            channel = read_channel_definition(args.channel, stored)
        elif stored is None:
            raise MercureError(f"no channel {args.channel!r} under notifications:")
        else:
            channel = stored
        kind = channel.type
        web_url = str(config.notifier.web_url) if config.notifier.web_url else None
        message = test_message(channel, config.appliance_name, web_url)
        answer = asyncio.run(send(channel, message))
    except (MercureError, SendFailed) as exc:
        error = scrub(str(exc))
    ok = not error
    if args.json:
        print(
            json.dumps(
                {
                    "channel": args.channel,
                    "type": kind,
                    "ok": ok,
                    "answer": scrub(answer),
                    "error": error,
                    "seconds": round(time.monotonic() - started, 3),
                }
            )
        )
    elif ok:
        print(f"{args.channel}: OK: {scrub(answer)}")
    else:
        print(f"{args.channel}: FAILED: {error}", file=sys.stderr)
    return 0 if ok else 1
