"""``python -m mercure`` is the ``mercure`` command."""

from mercure.cli import console_main

console_main()
