"""Test-suite wide set-up: the shared fixtures of the test frame."""

pytest_plugins = ["mercure.testing.fixtures"]
