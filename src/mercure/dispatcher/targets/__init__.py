"""Target plug-ins, one module per target type, all behind :class:`TargetPlugin`."""

from __future__ import annotations

from mercure.core.config.models import (
    DicomTarget,
    DicomWebTarget,
    FolderTarget,
    S3Target,
    SftpTarget,
)
from mercure.dispatcher.targets.base import Confirm, SendJob, SendResult, TargetPlugin

TargetConfig = DicomTarget | DicomWebTarget | SftpTarget | S3Target | FolderTarget

__all__ = ["Confirm", "SendJob", "SendResult", "TargetPlugin", "build_target", "test_target"]


def build_target(name: str, config: TargetConfig) -> TargetPlugin:
    """The plug-in for a configured target (imports only the library its type needs)."""
    if isinstance(config, DicomTarget):
        from mercure.dispatcher.targets.dicom import DicomPlugin

        return DicomPlugin(name, config)
    if isinstance(config, DicomWebTarget):
        from mercure.dispatcher.targets.dicomweb import DicomWebPlugin

        return DicomWebPlugin(name, config)
    if isinstance(config, SftpTarget):
        from mercure.dispatcher.targets.sftp import SftpPlugin

        return SftpPlugin(name, config)
    if isinstance(config, S3Target):
        from mercure.dispatcher.targets.s3 import S3Plugin

        return S3Plugin(name, config)
    from mercure.dispatcher.targets.folder import FolderPlugin

    return FolderPlugin(name, config)


async def test_target(targets: dict[str, TargetConfig], name: str) -> str:
    """Run the connection test of the configured target ``name``; its success message.

    Raises :class:`~mercure.core.errors.MercureError` saying what failed (an unknown name too).
    """
    from mercure.dispatcher.errors import TargetConfigError

    if name not in targets:
        known = ", ".join(sorted(targets)) or "none"
        raise TargetConfigError(f"no target named {name!r} in the configuration (known: {known})")
    return await build_target(name, targets[name]).test()
