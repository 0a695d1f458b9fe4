"""mercure's targets as mercure-router targets (one function per entry of ``targets``).

``dicomtls`` becomes ``dicom`` with ``tls``; DICOMweb credentials become ``auth: bearer`` or
``basic``; every password, token and S3 key becomes a ``${VARIABLE}`` reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from mercure.migrate.report import ImportReport
from mercure.migrate.values import as_mercure_bool, as_port, comment_of, env_name


def convert_target(
    report: ImportReport, prefix: str, name: str, source: dict[str, Any]
) -> dict[str, Any] | None:
    """The target ``source`` (at ``prefix`` in the input) as target ``name``; None if its type
    is unknown (reported)."""
    kind = source.get("target_type", "dicom")
    to = f"targets.{name}"
    out: dict[str, Any] = {}
    handled = {"target_type", "comment", "contact"}
    report.mapped(f"{prefix}.target_type", f"{to}.type")

    def take(field: str, new: str | None = None, convert: Callable[[Any], Any] = str) -> None:
        handled.add(field)
        if field in source and source[field] not in (None, ""):
            out[new or field] = convert(source[field])
            report.mapped(f"{prefix}.{field}", f"{to}.{new or field}")
        elif field in source:
            report.mapped(f"{prefix}.{field}", f"{to}.{new or field}", "empty: default")

    def secret(field: str, new: str, label: str) -> None:
        handled.add(field)
        if field not in source:
            return
        if source[field]:
            variable = env_name("TARGET", name, label)
            out[new] = report.secret(variable, f"{prefix}.{field}", f"{to}.{new}")
            report.mapped(f"{prefix}.{field}", f"{to}.{new}", f"as ${{{variable}}}")
        else:
            report.mapped(f"{prefix}.{field}", f"{to}.{new}", "empty: none")

    if kind in ("dicom", "dicomtls"):
        out["type"] = "dicom"
        take("ip", "host")
        take("port", convert=lambda value: as_port(value, f"{prefix}.port"))
        take("aet_target")
        handled.add("aet_source")
        if source.get("aet_source"):
            take("aet_source")
        elif "aet_source" in source:
            out["aet_source"] = "MERCURE"
            report.changed(
                f"{prefix}.aet_source",
                f"{to}.aet_source",
                "empty in mercure (dcmsend's own default); written as MERCURE",
            )
        take("pass_sender_aet", convert=as_mercure_bool)
        take("pass_receiver_aet", convert=as_mercure_bool)
        if kind == "dicomtls":
            tls: dict[str, Any] = {}
            for field, new in (
                ("tls_cert", "certificate"),
                ("tls_key", "key"),
                ("ca_cert", "ca_certificate"),
            ):
                handled.add(field)
                if source.get(field):
                    tls[new] = source[field]
                if field in source:
                    report.mapped(f"{prefix}.{field}", f"{to}.tls.{new}")
            out["tls"] = tls
            report.mapped(f"{prefix}.target_type", f"{to}.tls", "dicomtls: dicom with tls")
    elif kind in ("sftp", "rsync"):
        out["type"] = kind
        take("host")
        take("port", convert=lambda value: as_port(value, f"{prefix}.port"))
        take("user")
        take("folder")
        secret("password", "password", "password")
        if kind == "rsync":
            take("run_on_complete", convert=as_mercure_bool)
        take("file_filter")
    elif kind == "xnat":
        out["type"] = "xnat"
        take("host")
        take("project_id")
        take("user")
        secret("password", "password", "password")
        _credentials_out_of_url(report, prefix, name, out, url_key="host", user_key="user")
    elif kind == "dicomweb":
        out["type"] = "dicomweb"
        take("url")
        for field in ("qido_url_prefix", "wado_url_prefix", "stow_url_prefix"):
            take(field)
        secret("access_token", "token", "token")
        take("http_user", "username")
        secret("http_password", "password", "password")
        _credentials_out_of_url(report, prefix, name, out)
        out["auth"] = "bearer" if "token" in out else "basic" if "password" in out else "none"
    elif kind == "s3":
        out["type"] = "s3"
        take("region")
        take("bucket")
        take("prefix")
        secret("access_key_id", "access_key_id", "access_key_id")
        secret("secret_access_key", "secret_access_key", "secret_access_key")
    elif kind == "folder":
        out["type"] = "folder"
        take("folder")
        take("file_filter")
    elif kind == "dummy":
        out["type"] = "dummy"
    else:
        report.dropped(prefix, f"unknown target type {kind!r}; rules naming it lose it")
        for field in source:
            if field != "target_type":
                report.dropped(f"{prefix}.{field}", f"part of unknown target {kind!r}")
        return None
    comment = comment_of(report, prefix, source, to)
    if comment:
        out["comment"] = comment
    for field in source:
        if field == "direction":
            report.dropped(
                f"{prefix}.{field}",
                "targets are for sending only (mercure-router has no query/retrieve)",
            )
        elif field not in handled:
            report.dropped(f"{prefix}.{field}", f"not a field of a {kind} target")
    return out


def _credentials_out_of_url(
    report: ImportReport,
    prefix: str,
    name: str,
    out: dict[str, Any],
    *,
    url_key: str = "url",
    user_key: str = "username",
) -> None:
    """Move a login written into the URL (``https://user:secret@host/``) to the login fields:
    the password as a ``${VARIABLE}``, so that it is not written into the file."""
    url = out.get(url_key)
    if not isinstance(url, str):
        return
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    out[url_key] = urlunsplit(parts._replace(netloc=netloc))
    to = f"targets.{name}"
    if parts.username and not out.get(user_key):
        out[user_key] = unquote(parts.username)
    if parts.password and "password" not in out and "token" not in out:
        variable = env_name("TARGET", name, "password")
        out["password"] = report.secret(variable, f"{prefix}.{url_key}", f"{to}.password")
    report.changed(
        f"{prefix}.{url_key if url_key == 'host' else 'url'}",
        f"{to}.{url_key}",
        "the login written in the URL moved to the login fields (the password as an "
        "environment variable): credentials are refused in URLs here",
    )
