"""URL-valued settings: the scheme they need, and no credentials inside them.

A URL travels further than a password field: HTTP clients log it, errors quote it, failure
reasons and events carry it to ``task.json`` and the bookkeeper. So ``user:password@`` (or a
token as user name) is refused at load time with a pointer to the setting that holds the
credential instead, and the refusal never repeats the URL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, SecretStr
from pydantic_core import PydanticCustomError

CREDENTIALS_ERROR = "url_credentials"
"""The pydantic error type of a refused URL; the loader never echoes its input."""

SECRET_URL_ERROR = "secret_url"
"""The pydantic error type of a refused secret URL (a webhook's); never echoed either."""

HTTP_SCHEMES = frozenset({"http", "https"})


def url_check(
    advice: str, *, schemes: frozenset[str] | None = None, allow_user: bool = False
) -> Callable[[str], str]:
    """A validator refusing credentials in a URL (``advice`` says where they go instead).

    ``schemes`` restricts the scheme (and then a host is required); ``allow_user`` accepts a user
    name without password (``ssh://user@host``, where the user is no secret).
    """

    def check(value: str) -> str:
        try:
            parts = urlsplit(value)
        except ValueError:
            raise PydanticCustomError("url_syntax", "not a valid URL") from None
        if schemes is not None and (parts.scheme.lower() not in schemes or not parts.hostname):
            names = " or ".join(f"{scheme}://" for scheme in sorted(schemes))
            raise PydanticCustomError("url_scheme", f"not an {names} URL with a host")
        userinfo, at, _ = parts.netloc.rpartition("@")
        if at and not (allow_user and ":" not in userinfo):
            raise PydanticCustomError(
                CREDENTIALS_ERROR,
                "credentials in the URL are not allowed (URLs appear in logs and failure "
                f"reasons): {advice}",
            )
        return value

    return check


DicomWebURL = Annotated[
    str,
    AfterValidator(
        url_check(
            "set auth: basic with username and password, or auth: bearer with token "
            "(each may be ${ENV})",
            schemes=HTTP_SCHEMES,
        )
    ),
]
"""The base URL of a DICOMweb service."""

S3EndpointURL = Annotated[
    str,
    AfterValidator(
        url_check(
            "set access_key_id and secret_access_key (the secret may be ${ENV})",
            schemes=HTTP_SCHEMES,
        )
    ),
]
"""The endpoint of an S3-compatible store."""

BookkeeperURL = Annotated[
    str,
    AfterValidator(
        url_check("services authenticate with bookkeeper.api_key", schemes=HTTP_SCHEMES)
    ),
]
"""Where services reach the bookkeeper."""

DockerURL = Annotated[
    str,
    AfterValidator(
        url_check(
            "use TLS client certificates (DOCKER_CERT_PATH) or ssh:// with a key",
            allow_user=True,
        )
    ),
]
"""The Docker Engine API (``unix://``, ``tcp://``, ``ssh://user@host``)."""

WebURL = Annotated[
    str,
    AfterValidator(url_check("users sign in on the page", schemes=HTTP_SCHEMES)),
]
"""The address of the web interface as users reach it (links in notifications)."""

XnatURL = Annotated[
    str,
    AfterValidator(url_check("set user and password (which may be ${ENV})", schemes=HTTP_SCHEMES)),
]
"""The base URL of an XNAT server (the ``xnat`` target)."""


def secret_http_url(value: SecretStr) -> SecretStr:
    """An http(s) URL that is itself a secret (a webhook with its token in the path).

    Checked like the others, but no message quotes it, and credentials before the host are
    allowed: the whole value is masked wherever it could appear.
    """
    try:
        parts = urlsplit(value.get_secret_value())
    except ValueError:
        raise PydanticCustomError(SECRET_URL_ERROR, "not a valid URL") from None
    if parts.scheme.lower() not in HTTP_SCHEMES or not parts.hostname:
        raise PydanticCustomError(SECRET_URL_ERROR, "not an http:// or https:// URL with a host")
    return value
