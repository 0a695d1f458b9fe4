"""``mercure user``: add, list and change the users of the web interface.

Works on the bookkeeper's database directly (migrated first, as the bookkeeper does at start),
so it works whether or not the bookkeeper runs. Passwords are asked twice on a terminal, or
read as one line from standard input with ``--password-stdin``; they are never arguments
(which other users of the machine could see) and never printed. Changes are audited with the
actor ``cli:<unix user>``.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import pwd
import sys
from collections.abc import Iterator

from sqlalchemy.engine import Engine

from mercure.bookkeeper.database import create_database_engine, database_url, migrate
from mercure.bookkeeper.users import ROLES, UserError, UserStore
from mercure.core.config import load_config

MUST_CHANGE_HELP = (
    "the password is a temporary one: the user must choose a new one at the next sign-in"
)


def register_user(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``mercure user add|list|passwd|role|disable|enable|remove``."""
    user = subparsers.add_parser(
        "user",
        parents=[common],
        help="manage the users of the web interface",
        description="Users of the web interface, kept in the bookkeeper's database. Roles: "
        "viewer "
        "(reads everything except secrets), operator (also requeue, discard, pause/resume, "
        "force study completion), admin (also users and configuration).",
    )
    verbs = user.add_subparsers(dest="verb", required=True, metavar="VERB")
    add = verbs.add_parser("add", parents=[common], help="add a user (asks for the password)")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    add.add_argument("--must-change-password", action="store_true", help=MUST_CHANGE_HELP)
    add.set_defaults(handler=cmd_user_add)
    listing = verbs.add_parser("list", parents=[common], help="list the users")
    listing.set_defaults(handler=cmd_user_list)
    passwd = verbs.add_parser("passwd", parents=[common], help="set a user's password")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    passwd.add_argument("--must-change-password", action="store_true", help=MUST_CHANGE_HELP)
    passwd.set_defaults(handler=cmd_user_passwd)
    role = verbs.add_parser("role", parents=[common], help="change a user's role")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    role.set_defaults(handler=cmd_user_role)
    for verb, helptext in (
        ("disable", "stop a user from signing in (their sessions end)"),
        ("enable", "let a disabled user sign in again"),
        ("remove", "delete a user"),
    ):
        sub = verbs.add_parser(verb, parents=[common], help=helptext)
        sub.add_argument("name")
        sub.set_defaults(handler=cmd_user_change, change=verb)


@contextlib.contextmanager
def _store(args: argparse.Namespace) -> Iterator[UserStore]:
    config = load_config(args.config).config
    engine: Engine = create_database_engine(
        database_url(config.bookkeeper.database_url, config.data_dir)
    )
    try:
        migrate(engine)
        yield UserStore(engine)
    except UserError as exc:
        raise SystemExit(f"error: {exc}") from None
    finally:
        engine.dispose()


def _actor() -> str:
    try:
        return "cli:" + pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"cli:uid{os.getuid()}"


def _password(args: argparse.Namespace, name: str) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise SystemExit("error: no terminal to ask for the password: use --password-stdin")
    first = getpass.getpass(f"password for {name}: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("error: the two passwords differ; nothing changed")
    return first


def cmd_user_add(args: argparse.Namespace) -> int:
    """Add a user with a role."""
    password = _password(args, args.name)
    with _store(args) as store:
        user = store.create(
            args.name,
            args.role,
            password,
            actor=_actor(),
            remote_address=None,
            must_change_password=args.must_change_password,
        )
    then = "; a new password is asked at the first sign-in" if user.must_change_password else ""
    print(f"user {user.name} added as {user.role}{then}")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    """Print the users: name, role, state, last sign-in."""
    with _store(args) as store:
        users = store.list()
    if not users:
        print("no users yet: mercure user add NAME --role admin")
        return 0
    print(f"{'NAME':<24} {'ROLE':<9} {'STATE':<9} LAST SIGN-IN (UTC)")
    for user in users:
        state = "disabled" if user.disabled else "enabled"
        last = user.last_login.strftime("%Y-%m-%d %H:%M") if user.last_login else "never"
        print(f"{user.name:<24} {user.role:<9} {state:<9} {last}")
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    """Set a user's password (their sessions end)."""
    password = _password(args, args.name)
    with _store(args) as store:
        store.set_password(
            args.name,
            password,
            actor=_actor(),
            remote_address=None,
            must_change_password=args.must_change_password,
        )
    then = "; a new one is asked at the next sign-in" if args.must_change_password else ""
    print(f"password of {args.name} set; their sessions end{then}")
    return 0


def cmd_user_role(args: argparse.Namespace) -> int:
    """Change a user's role (their sessions end)."""
    with _store(args) as store:
        user = store.set_role(args.name, args.role, actor=_actor(), remote_address=None)
    print(f"user {user.name} is now {user.role}; their sessions end")
    return 0


def cmd_user_change(args: argparse.Namespace) -> int:
    """Disable, enable or remove a user."""
    with _store(args) as store:
        if args.change == "remove":
            store.remove(args.name, actor=_actor(), remote_address=None)
        else:
            disabled = args.change == "disable"
            store.set_disabled(args.name, disabled, actor=_actor(), remote_address=None)
    print(f"user {args.name}: {args.change}d")
    return 0
