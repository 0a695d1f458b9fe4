"""The users API: what the web interface asks when someone signs in or an admin changes users.

Behind the same key check as the rest of the API (the key holder is a service, not a person):
changes name the person who made them (``actor``) and from where, for the audit log. No answer
ever holds a password or a hash; a wrong name, a wrong password and a disabled user get the same
401.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Response
from fastapi.params import Depends
from pydantic import BaseModel, Field

from mercure.bookkeeper.users import ROLES, UserError, UserRecord, UserStore

API = "/api/v1/users"


class UserOut(BaseModel):
    """A user, without the hash."""

    name: str
    role: str
    disabled: bool
    session_epoch: int = Field(description="Grows when the user's sessions must end.")
    created: Any
    updated: Any
    last_login: Any
    password_changed: Any
    must_change_password: bool = Field(
        False, description="The user must choose a new password before anything else."
    )


class UserList(BaseModel):
    """Every user, by name."""

    users: list[UserOut]


class Change(BaseModel):
    """Who changes something, and from where (for the audit log)."""

    actor: str = Field(min_length=1, max_length=128)
    remote_address: str | None = Field(None, max_length=64)


class NewUser(Change):
    """A user to add."""

    name: str = Field(max_length=64)
    role: str = Field(description=", ".join(ROLES))
    password: str = Field(max_length=1024)
    must_change_password: bool = Field(False, description="The password is a temporary one.")


class UserPatch(Change):
    """A new role, or disabling/enabling."""

    role: str | None = None
    disabled: bool | None = None


class NewPassword(Change):
    """A password to set."""

    password: str = Field(max_length=1024)
    must_change_password: bool = Field(
        False, description="A temporary password (a reset); false: the user's own."
    )


class SignIn(BaseModel):
    """A sign-in attempt."""

    name: str = Field(max_length=256)
    password: str = Field(max_length=4096)
    remote_address: str | None = Field(None, max_length=64)


def _out(user: UserRecord) -> dict[str, Any]:
    return user.as_dict()


def _refused(exc: UserError) -> HTTPException:
    return HTTPException(exc.status, str(exc))


def add_user_routes(app: FastAPI, store: UserStore, authorized: Depends) -> None:
    """Mount the users API on the bookkeeper application (``authorized``: its key check)."""
    Authorized = authorized

    @app.get(API, response_model=UserList, tags=["users"], dependencies=[Authorized])
    def list_users() -> Any:
        """Every user (an empty list: nobody can sign in yet)."""
        return {"users": [_out(u) for u in store.list()]}

    @app.get(f"{API}/{{name}}", response_model=UserOut, tags=["users"], dependencies=[Authorized])
    def get_user(name: str) -> Any:
        """One user, by name in any case."""
        try:
            return _out(store.get(name))
        except UserError as exc:
            raise _refused(exc) from None

    @app.post(f"{API}/verify", response_model=UserOut, tags=["users"], dependencies=[Authorized])
    def verify(attempt: SignIn) -> Any:
        """The user when the password is theirs and they are enabled; 401 otherwise."""
        user = store.verify(attempt.name, attempt.password, attempt.remote_address)
        if user is None:
            raise HTTPException(401, "wrong user name or password")
        return _out(user)

    @app.post(
        API, response_model=UserOut, status_code=201, tags=["users"], dependencies=[Authorized]
    )
    def add_user(new: NewUser) -> Any:
        """Add a user: 409 if the name is taken, 422 for a bad name, role or password."""
        try:
            return _out(
                store.create(
                    new.name,
                    new.role,
                    new.password,
                    actor=new.actor,
                    remote_address=new.remote_address,
                    must_change_password=new.must_change_password,
                )
            )
        except UserError as exc:
            raise _refused(exc) from None

    @app.patch(f"{API}/{{name}}", response_model=UserOut, tags=["users"], dependencies=[Authorized])
    def change_user(name: str, patch: UserPatch) -> Any:
        """Change the role and/or disable or enable; the user's sessions end."""
        try:
            user = store.get(name)
            if patch.role is not None:
                user = store.set_role(
                    name, patch.role, actor=patch.actor, remote_address=patch.remote_address
                )
            if patch.disabled is not None:
                user = store.set_disabled(
                    name, patch.disabled, actor=patch.actor, remote_address=patch.remote_address
                )
            return _out(user)
        except UserError as exc:
            raise _refused(exc) from None

    @app.put(f"{API}/{{name}}/password", status_code=204, tags=["users"], dependencies=[Authorized])
    def set_password(name: str, new: NewPassword) -> Response:
        """Set a password; the user's sessions end."""
        try:
            store.set_password(
                name,
                new.password,
                actor=new.actor,
                remote_address=new.remote_address,
                must_change_password=new.must_change_password,
            )
        except UserError as exc:
            raise _refused(exc) from None
        return Response(status_code=204)

    @app.delete(f"{API}/{{name}}", status_code=204, tags=["users"], dependencies=[Authorized])
    def remove_user(name: str, actor: str, remote_address: str | None = None) -> Response:
        """Remove a user (not the last enabled admin: 409)."""
        try:
            store.remove(name, actor=actor[:128], remote_address=remote_address)
        except UserError as exc:
            raise _refused(exc) from None
        return Response(status_code=204)
