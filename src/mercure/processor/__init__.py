"""The processor: runs processing modules on tasks in ``processing/`` (issue 6)."""
