"""Checks of the retrieve sources against the rest of the configuration.

A C-MOVE makes the PACS open an association to us: the destination AE title must be one a
listener of ours answers to, or every retrieve would fail at the PACS with "move destination
unknown" or land nowhere. That is an error of the file, reported with the other reference
errors. What works but deserves a look is a warning of ``mercure check-config``.
"""

from __future__ import annotations

from mercure.core.config.models import DicomSource, MercureConfig
from mercure.core.errors import ConfigIssue


def source_issues(config: MercureConfig) -> list[ConfigIssue]:
    """Errors: a C-MOVE source whose destination is not one of our listeners' AE titles."""
    issues = []
    listener_aets = [listener.aet for listener in config.receiver.listeners]
    for name, source in config.sources.items():
        if not isinstance(source, DicomSource) or source.retrieve_method != "c-move":
            continue
        if not listener_aets:
            issues.append(
                ConfigIssue(
                    f"sources.{name}.retrieve_method",
                    "c-move needs a listener to receive the studies (receiver.listeners is "
                    "empty); add one or use c-get",
                )
            )
        elif source.move_destination and source.move_destination not in listener_aets:
            known = ", ".join(dict.fromkeys(listener_aets))
            issues.append(
                ConfigIssue(
                    f"sources.{name}.move_destination",
                    f"'{source.move_destination}' is not the AE title of a listener "
                    f"(receiver.listeners: {known})",
                )
            )
    return issues


def source_warnings(config: MercureConfig) -> list[ConfigIssue]:
    """What works but is likely a mistake (``mercure check-config`` prints these)."""
    warnings = []
    for name, source in config.sources.items():
        if not isinstance(source, DicomSource):
            continue
        if source.aet_source == source.aet_target:
            warnings.append(
                ConfigIssue(
                    f"sources.{name}.aet_source",
                    f"our AE title equals the PACS's ('{source.aet_target}'); many PACS refuse "
                    "an association from their own AE title",
                )
            )
        if source.retrieve_method == "c-get" and source.move_destination:
            warnings.append(
                ConfigIssue(
                    f"sources.{name}.move_destination",
                    "ignored: retrieve_method is c-get (the instances come back on our own "
                    "association)",
                )
            )
    return warnings
