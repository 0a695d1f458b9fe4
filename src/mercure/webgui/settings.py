"""The values of ``webgui:`` the application follows while it runs (changed on reload)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from mercure.core.config.models import WebGuiConfig

Network = IPv4Network | IPv6Network


@dataclass
class WebSettings:
    """Settings of the running application; :meth:`apply` takes a reloaded configuration."""

    root_path: str = ""
    """URL prefix (``/mercure``) or empty; fixed for the life of the process."""
    https: bool = False
    """Served with TLS directly (then every request is HTTPS)."""
    trusted_proxies: tuple[Network, ...] = ()
    max_body: int = 1 << 20
    max_upload: int = 1 << 30
    """Largest body of the Upload page's POST (streamed, not held: see asgi.BodyLimit)."""
    idle_timeout: float = 1800.0
    max_age: float = 43200.0

    @classmethod
    def from_config(cls, config: WebGuiConfig) -> WebSettings:
        """The settings of a ``webgui:`` section."""
        settings = cls(root_path=config.root_path, https=config.tls_certificate is not None)
        settings.apply(config)
        return settings

    def apply(self, config: WebGuiConfig) -> None:
        """Follow a reloaded configuration (address, port, TLS and root_path need a restart)."""
        self.trusted_proxies = tuple(config.trusted_proxies)
        self.max_body = config.max_request_kb << 10
        self.max_upload = config.max_upload_mb << 20
        self.idle_timeout = config.session_idle_timeout
        self.max_age = config.session_max_age

    def is_trusted_proxy(self, host: str | None) -> bool:
        """Whether a peer address is one of the trusted reverse proxies."""
        if not host or not self.trusted_proxies:
            return False
        try:
            address: IPv4Address | IPv6Address = ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.trusted_proxies)
