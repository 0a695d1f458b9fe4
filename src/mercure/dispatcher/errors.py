"""Errors of the dispatcher, placed in the project's exception tree.

::

    MercureError
    ├── TransientError
    │   └── DeliveryError          a target could not be reached or failed mid-send (retried)
    └── PermanentError
        └── TargetConfigError      the target cannot be used as configured (not retried)
"""

from __future__ import annotations

from mercure.core.errors import PermanentError, TransientError


class DeliveryError(TransientError):
    """Sending to a target failed in a way a later attempt may not repeat."""


class TargetConfigError(PermanentError):
    """A target is unusable as configured (unknown name, missing setting)."""
