"""Configuration: pydantic models (the only place defaults live), loading with key-path errors,
environment-variable secrets, atomic saving with history, and reloading in running services."""

from mercure.core.config.history import list_changes, list_versions, restore_version, save_config
from mercure.core.config.loader import (
    LoadedConfig,
    default_config_path,
    load_config,
    parse_document,
    validate_document,
)
from mercure.core.config.models import (
    CommandModule,
    DicomTarget,
    DicomWebTarget,
    DockerModule,
    FolderTarget,
    ListenerConfig,
    MercureConfig,
    Rule,
    S3Target,
    SftpTarget,
)
from mercure.core.config.source import ConfigSource

__all__ = [
    "CommandModule",
    "ConfigSource",
    "DicomTarget",
    "DicomWebTarget",
    "DockerModule",
    "FolderTarget",
    "ListenerConfig",
    "LoadedConfig",
    "MercureConfig",
    "Rule",
    "S3Target",
    "SftpTarget",
    "default_config_path",
    "list_changes",
    "list_versions",
    "load_config",
    "parse_document",
    "restore_version",
    "save_config",
    "validate_document",
]
