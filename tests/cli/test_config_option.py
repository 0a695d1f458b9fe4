"""`--config PATH` is accepted before and after every subcommand, and on command groups."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from mercure.cli import main
from mercure.cli.main import build_parser


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def command_paths(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], list[argparse.ArgumentParser]]]:
    """Every runnable command as its words, with the parsers from the top down to it."""
    subparsers = _subparsers(parser)
    if subparsers is None:
        yield prefix, [parser]
        return
    seen: set[int] = set()
    for name, child in subparsers.choices.items():
        if id(child) in seen:  # an alias
            continue
        seen.add(id(child))
        for path, chain in command_paths(child, (*prefix, name)):
            yield path, [parser, *chain]


def required_arguments(parser: argparse.ArgumentParser) -> list[str]:
    """Plausible values for the positional arguments and required options a command needs."""
    values = []
    for action in parser._actions:
        if action.option_strings and action.required:
            choice = next(iter(action.choices)) if action.choices else "x"
            values += [action.option_strings[-1], str(choice)]
            continue
        if action.option_strings or isinstance(action, argparse._SubParsersAction):
            continue
        if action.nargs in ("?", "*"):
            continue
        if action.choices:
            values.append(str(next(iter(action.choices))))
        elif action.type is int:
            values.append("104")
        else:
            values.append("x")
    return values


ALL_COMMANDS = list(command_paths(build_parser()))


def test_the_walk_finds_the_commands() -> None:
    """The enumeration sees nested groups (study list) and plain commands (status)."""
    paths = {path for path, _ in ALL_COMMANDS}
    assert {("status",), ("study", "list"), ("study", "complete"), ("requeue",)} <= paths
    assert len(paths) >= 15


@pytest.mark.parametrize(
    ("path", "chain"), ALL_COMMANDS, ids=[" ".join(p) for p, _ in ALL_COMMANDS]
)
def test_config_is_taken_at_every_level_of_every_command(
    path: tuple[str, ...], chain: list[argparse.ArgumentParser]
) -> None:
    """`mercure [--config X] word [--config X] word ... [--config X]` all name the file X."""
    parser = build_parser()
    tail = required_arguments(chain[-1])
    for level in range(len(path) + 1):
        words = list(path)
        argv = [*words[:level], "--config", "/etc/x.yaml", *words[level:], *tail]
        args = parser.parse_args(argv)
        assert args.config == "/etc/x.yaml", argv
        assert callable(args.handler), argv


@pytest.mark.parametrize(
    ("path", "chain"), ALL_COMMANDS, ids=[" ".join(p) for p, _ in ALL_COMMANDS]
)
def test_without_config_the_default_applies(
    path: tuple[str, ...], chain: list[argparse.ArgumentParser]
) -> None:
    """No --config anywhere: None (the loader then uses $MERCURE_CONFIG or ./mercure.yaml)."""
    args = build_parser().parse_args([*path, *required_arguments(chain[-1])])
    assert args.config is None


def test_the_innermost_config_wins() -> None:
    """Given twice, the one nearest to the command counts (as with most command lines)."""
    args = build_parser().parse_args(["--config", "a.yaml", "study", "--config", "b.yaml", "list"])
    assert args.config == "b.yaml"


def test_status_with_config_before_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mercure --config X status` (the README's promise) reads X."""
    main(["init", str(tmp_path)])
    capsys.readouterr()
    assert main(["--config", str(tmp_path / "mercure.yaml"), "status"]) == 0
    assert f"data folder: {tmp_path / 'data'}" in capsys.readouterr().out


def test_study_list_with_config_on_the_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mercure study --config X list` and `mercure --config X study list` read X."""
    main(["init", str(tmp_path)])
    config = str(tmp_path / "mercure.yaml")
    capsys.readouterr()
    assert main(["study", "--config", config, "list"]) == 0
    assert main(["--config", config, "study", "list"]) == 0
    assert capsys.readouterr().out.count("no studies are being collected") == 2
