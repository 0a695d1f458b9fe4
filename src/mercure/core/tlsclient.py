"""The client side of TLS for outgoing DICOM associations (dispatcher targets, retrieve sources).

One function so that a target and a source with the same ``tls`` settings present the same
certificate and verify the peer the same way.
"""

from __future__ import annotations

import ssl

from mercure.core.config.models import TLSClientConfig


def client_tls_context(config: TLSClientConfig) -> ssl.SSLContext:
    """The client TLS context of a ``tls`` section: CA bundle (else the system store), client
    certificate if given, and peer verification unless ``verify`` is off."""
    context = ssl.create_default_context(
        cafile=str(config.ca_certificate) if config.ca_certificate else None
    )
    if config.certificate:
        context.load_cert_chain(str(config.certificate), str(config.key) if config.key else None)
    if not config.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
