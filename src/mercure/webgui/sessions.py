"""Server-side sessions: the cookie holds only a random id, signed; the rest stays here.

A session remembers who signed in (user, role, the user's ``session_epoch`` at the
bookkeeper), its CSRF token, and when it was made and last used. It ends

- after ``idle_timeout`` without use (requests marked as automatic refreshes do not count);
- ``max_age`` after sign-in, however much it is used;
- at sign-out (deleted here, so the old cookie is worth nothing);
- when the bookkeeper says the user was removed or disabled, or its ``session_epoch`` moved
  (a new password, another role): the user is re-checked at most every ``recheck_interval``.

Sessions live in the memory of the webgui process: a restart of the webgui signs everyone
out. Times are read from an injectable monotonic clock, so tests move time instead of waiting.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mercure.webgui.roles import Role

COOKIE_NAME = "mercure_session"
LOGIN_COOKIE_NAME = "mercure_login"
"""Holds the sign-in form's CSRF token before there is a session."""
RECHECK_INTERVAL = 10.0
MAX_SESSIONS = 10000


class CookieSigner:
    """HMAC-SHA256 signatures of cookie values, so that a forged or altered cookie is refused."""

    def __init__(self, key: str) -> None:
        self._key = key.encode("utf-8")

    def _mac(self, value: str) -> str:
        digest = hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def sign(self, value: str) -> str:
        """``value.signature``; ``value`` must not contain a dot."""
        return f"{value}.{self._mac(value)}"

    def unsign(self, token: str | None) -> str | None:
        """The value of a token signed with this key, or None (compared in constant time)."""
        if not token or token.count(".") != 1:
            return None
        value, mac = token.split(".")
        if not value or not hmac.compare_digest(mac.encode(), self._mac(value).encode()):
            return None
        return value


def new_token() -> str:
    """A random token for a session id or a CSRF token: 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def tokens_match(supplied: str | None, expected: str) -> bool:
    """Whether a supplied token equals the expected one (constant time; empty never matches)."""
    if not supplied or not expected:
        return False
    return hmac.compare_digest(supplied.encode("utf-8"), expected.encode("utf-8"))


@dataclass
class Session:
    """One signed-in browser."""

    id: str
    user: str
    role: Role
    epoch: int
    created: float
    last_seen: float
    checked: float
    """When the bookkeeper last confirmed the user (clock time)."""
    remote_address: str
    csrf_token: str = field(default_factory=new_token)
    must_change_password: bool = False
    """The user signed in with a temporary password: only choosing a new one is allowed."""


class SessionStore:
    """The sessions of this process, with their timeouts."""

    def __init__(
        self,
        *,
        idle_timeout: float,
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
        recheck_interval: float = RECHECK_INTERVAL,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self.idle_timeout = idle_timeout
        self.max_age = max_age
        self.clock = clock
        self.recheck_interval = recheck_interval
        self.max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.last_seen >= self.idle_timeout or now - session.created >= self.max_age

    def create(
        self,
        user: str,
        role: Role,
        epoch: int,
        remote_address: str,
        *,
        must_change_password: bool = False,
    ) -> Session:
        """A new session for a user who just signed in."""
        now = self.clock()
        session = Session(
            id=new_token(),
            user=user,
            role=role,
            epoch=epoch,
            created=now,
            last_seen=now,
            checked=now,
            remote_address=remote_address,
            must_change_password=must_change_password,
        )
        with self._lock:
            self._purge(now)
            if len(self._sessions) >= self.max_sessions:
                # Bounded memory: the least recently used session makes room.
                oldest = min(self._sessions.values(), key=lambda s: s.last_seen)
                del self._sessions[oldest.id]
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None, *, touch: bool = True) -> Session | None:
        """The live session with this id (None if unknown or expired; expired ones end).

        ``touch`` counts the request as use (resets the idle time).
        """
        if not session_id:
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if self._expired(session, now):
                del self._sessions[session_id]
                return None
            if touch:
                session.last_seen = now
            return session

    def needs_recheck(self, session: Session) -> bool:
        """Whether the user should be confirmed at the bookkeeper again."""
        return self.clock() - session.checked >= self.recheck_interval

    def confirmed(self, session: Session) -> None:
        """The bookkeeper confirmed the user just now."""
        session.checked = self.clock()

    def delete(self, session_id: str) -> None:
        """End a session (sign-out)."""
        with self._lock:
            self._sessions.pop(session_id, None)

    def end_user(self, user: str) -> int:
        """End every session of ``user``; how many there were."""
        with self._lock:
            ids = [s.id for s in self._sessions.values() if s.user == user]
            for session_id in ids:
                del self._sessions[session_id]
        return len(ids)

    def _purge(self, now: float) -> None:
        for session_id in [s.id for s in self._sessions.values() if self._expired(s, now)]:
            del self._sessions[session_id]
