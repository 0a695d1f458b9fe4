"""Registers the test-frame plugin for the frame's own tests (until tests/conftest.py does)."""

pytest_plugins = ["mercure.testing.fixtures"]
