"""The ``mercure`` command line: one entry point, a subcommand per task and per service."""

from mercure.cli.main import console_main, main

__all__ = ["console_main", "main"]
