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

from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

from mercure.core.config import load_config
from mercure.core.config.loader import format_path
from mercure.core.config.models import Channel
from mercure.core.errors import MercureError
from mercure.core.masking import register_secret, scrub
from mercure.core.notifications.queue import new_notification_id
from mercure.core.notifications.templates import SAMPLE, template_fields
from mercure.core.notifications.triggers import TEXTS
from mercure.notifier.senders import ChannelConfig, Message, SendFailed, send

MAX_DEFINITION = 1 << 20
"""Bytes of a definition read from standard input, at most."""

STORED = "<secret>"
"""A secret given as this means: the one the configuration stores for the channel."""


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
        if given == STORED and isinstance(stored, SecretStr):
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


def register_channel_secrets(node: Any) -> None:
    """Mask every secret of a channel (validated) in what is printed."""
    if isinstance(node, SecretStr):
        value = node.get_secret_value()
        if value:
            register_secret(value)
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            register_channel_secrets(getattr(node, name))
    elif isinstance(node, dict):
        for item in node.values():
            register_channel_secrets(item)
    elif isinstance(node, list):
        for item in node:
            register_channel_secrets(item)


def _register_raw(node: Any) -> None:
    # Before validation (an error may quote a value): every string of a secret-holding key.
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("url", "urls", "password", "hmac_secret", "headers"):
                _register_strings(value)
            else:
                _register_raw(value)


def _register_strings(node: Any) -> None:
    if isinstance(node, str) and node and node != STORED:
        register_secret(node)
    elif isinstance(node, dict):
        for value in node.values():
            _register_strings(value)
    elif isinstance(node, list):
        for value in node:
            _register_strings(value)


def read_definition(name: str, stored: ChannelConfig | None) -> ChannelConfig:
    """The channel definition on standard input; MercureError naming what is wrong."""
    text = sys.stdin.read(MAX_DEFINITION + 1)
    if len(text) > MAX_DEFINITION:
        raise MercureError(f"the definition on standard input is over {MAX_DEFINITION} bytes")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MercureError(
            f"the definition on standard input is not JSON: {exc.msg} at line {exc.lineno}"
        ) from None
    _register_raw(document)
    document = restore_secrets(document, stored)
    try:
        channel: ChannelConfig = TypeAdapter(Channel).validate_python(document)
    except ValidationError as exc:
        tag = document.get("type") if isinstance(document, dict) else None
        issues = "; ".join(
            f"{format_path(_without_tag(error['loc'], tag)) or 'definition'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise MercureError(f"invalid definition of channel {name!r}: {issues}") from None
    register_channel_secrets(channel)
    return channel


def _without_tag(loc: tuple[str | int, ...], tag: object) -> tuple[str | int, ...]:
    return loc[1:] if loc and loc[0] == tag else loc


def cmd_notify_test(args: argparse.Namespace) -> int:
    """Send the test notification; exit code 0 when delivered, 1 with the reason when not."""
    started = time.monotonic()
    kind = ""
    answer = error = ""
    try:
        config = load_config(args.config).config
        stored = config.notifications.get(args.channel)
        if args.definition:
            channel = read_definition(args.channel, stored)
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
