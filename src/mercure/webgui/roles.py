"""The roles of the web interface, from least to most allowed."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    """What a user may do. Each role may do everything the roles before it may.

    - ``viewer``: read everything except secrets;
    - ``operator``: also act on work (requeue, discard, pause and resume, force completion);
    - ``admin``: also manage users and the configuration.
    """

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Position in the order viewer < operator < admin."""
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        """Whether a user with this role may do what ``needed`` may."""
        return self.rank >= needed.rank
