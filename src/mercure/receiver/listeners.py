"""From listener configuration to the DICOM upper layer's listener settings (TLS included)."""

from __future__ import annotations

import logging
import socket
import ssl

from mercure.core.config.models import ListenerConfig, ReceiverConfig, TLSServerConfig
from mercure.core.errors import PermanentError
from mercure.core.events import EventClient
from mercure.dicomnet.server import ListenerSettings
from mercure.dicomnet.uids import ALL_TRANSFER_SYNTAXES, default_sop_classes

LISTEN_RETRY_SECONDS = 5.0
"""How often a listener that could not be opened after a configuration change (its port in
use, its certificate unreadable) is tried again, until it opens or the configuration changes."""


log = logging.getLogger(__name__)


class ListenerError(PermanentError):
    """A listener cannot be started as configured (bad certificate, port in use ...)."""


def report_cannot_open(exc: ListenerError, previous: str | None, events: EventClient) -> str:
    """Log and report a listener that cannot be opened after a change, unless ``previous`` is
    this same error (a retry): once per distinct error, not at every try. Returns the error's
    text, to pass as ``previous`` next time."""
    message = str(exc)
    if message == previous:
        log.debug("%s (still)", message)
    else:
        log.error("%s; trying again every %.0f s", message, LISTEN_RETRY_SECONDS)
        events.emit("listener.failed", severity="error", message=message)
    return message


def server_ssl_context(listener: ListenerConfig, tls: TLSServerConfig) -> ssl.SSLContext:
    """A TLS server context; a client certificate is required when configured so."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.certificate, tls.key)
        if tls.ca_certificate is not None:
            context.load_verify_locations(tls.ca_certificate)
    except (OSError, ssl.SSLError) as exc:
        raise ListenerError(
            f"listener {listener.name!r}: cannot load its TLS certificate or key: {exc}"
        ) from exc
    if tls.ca_certificate is not None:
        context.verify_mode = (
            ssl.CERT_REQUIRED if tls.require_client_certificate else ssl.CERT_OPTIONAL
        )
    return context


def bind_host(listener: ListenerConfig) -> str | None:
    """The address to bind for ``listener``: None (every interface, both families) for the
    wildcard addresses."""
    return None if listener.host in ("", "0.0.0.0", "::") else listener.host


def cannot_listen(listener: ListenerConfig, exc: OSError) -> ListenerError:
    """The error for a listener whose address cannot be bound."""
    return ListenerError(
        f"listener {listener.name!r} cannot listen on {listener.host}:{listener.port}: "
        f"{exc.strerror or exc}"
    )


def listener_settings(
    listener: ListenerConfig,
    receiver: ReceiverConfig,
    *,
    shared_sockets: tuple[socket.socket, ...] = (),
) -> ListenerSettings:
    """Settings for one listener of the receiver (``shared_sockets``: the listening sockets it
    shares with the other receiver processes)."""
    return ListenerSettings(
        ae_title=listener.aet,
        host=bind_host(listener),
        port=listener.port,
        transfer_syntaxes=tuple(listener.transfer_syntaxes) or ALL_TRANSFER_SYNTAXES,
        sop_classes=default_sop_classes().union(listener.extra_sop_classes),
        accept_unknown_sop_classes=listener.accept_unknown_sop_classes,
        max_associations=listener.max_associations,
        max_pdu=receiver.max_pdu,
        ssl_context=server_ssl_context(listener, listener.tls) if listener.tls else None,
        acse_timeout=receiver.acse_timeout,
        idle_timeout=receiver.idle_timeout,
        pdu_timeout=listener.pdu_timeout,
        max_association_duration=listener.max_association_duration,
        shared_sockets=shared_sockets,
    )
