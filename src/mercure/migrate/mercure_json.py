"""mercure 0.4.1's ``mercure.json`` as a ``mercure.yaml`` document.

Facts about mercure's keys come from its documentation and its configuration model
(``common/types.py`` ``Config``, ``Rule``, ``Module`` and the target classes, and
``configuration/default_mercure.json``). The converter walks every key of the input and
records each one in the :class:`~mercure.migrate.report.ImportReport`; a key it does not know is
reported as not carried, never skipped. Secrets (passwords, tokens, webhook addresses, API
keys) become ``${VARIABLE}`` references that the loader expands at start, and the report lists
the variables.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mercure.core.config.types import NAME_PATTERN
from mercure.migrate.modules import convert_module
from mercure.migrate.report import ImportReport
from mercure.migrate.rules import RuleContext, convert_rule
from mercure.migrate.targets import convert_target
from mercure.migrate.values import (
    MercureImportError,
    as_mercure_bool,
    as_port,
    named_entries,
)

UNCOMPRESSED_TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
]
"""What mercure's receiver accepts without ``accept_compressed_images``: the uncompressed ones."""

ERROR_RETENTION_FOREVER = "36500d"
"""mercure's cleaner never deletes error/; a retention of a century keeps that behaviour."""

MERCURE_STAGE_FOLDERS = (
    "incoming_folder",
    "studies_folder",
    "outgoing_folder",
    "success_folder",
    "error_folder",
    "discard_folder",
    "processing_folder",
)
_OTHER_FOLDERS = {
    "jobs_folder": "mercure's query/retrieve jobs; mercure-router has no query/retrieve",
    "persistence_folder": "module persistence lives in processing.persistence_dir "
    "(default <data_dir>/persistence); copy the module folders over (see the migration guide)",
    "patients_folder": "mercure's patient-level collection has no counterpart",
}
_NAME = re.compile(NAME_PATTERN)


@dataclass
class ImportResult:
    """The converted document (plain data, ready for YAML) and the report on every key."""

    document: dict[str, Any]
    report: ImportReport


def import_mercure_config(source: Mapping[str, Any]) -> ImportResult:
    """Convert a parsed ``mercure.json``; raise :class:`MercureImportError` if it is no mapping."""
    if not isinstance(source, Mapping):
        raise MercureImportError("mercure.json must hold a JSON object (mercure's configuration)")
    return _Converter(source).run()


class _Converter:
    def __init__(self, source: Mapping[str, Any]) -> None:
        self.source = source
        self.report = ImportReport()
        self.out: dict[str, Any] = {}
        self.rules = RuleContext(self.report, source)

    # -- helpers ------------------------------------------------------------------------

    def _section(self, *path: str) -> dict[str, Any]:
        node = self.out
        for part in path:
            node = node.setdefault(part, {})
        return node

    def _name(self, kind: str, name: str) -> str:
        """A name valid here (they become folder names); renamed ones are reported."""
        if _NAME.match(name):
            return name
        fixed = re.sub(r"[^A-Za-z0-9 _.\-]", "_", name).lstrip(" _.-")[:64] or kind
        self.report.changed(
            f"{kind}s.{name}", f"{kind}s.{fixed}", f"renamed: {name!r} is not a valid name here"
        )
        return fixed

    def run(self) -> ImportResult:
        handlers: dict[str, Callable[[str, Any], None]] = {
            "appliance_name": self._appliance_name,
            "appliance_color": self._drop("the web interface has no colour setting"),
            "port": self._port,
            "accept_compressed_images": self._compressed,
            "router_scan_interval": self._drop(
                "services are woken by file-system notifications (router.rescan_interval is a "
                "safety net only, default 60 s)"
            ),
            "dispatcher_scan_interval": self._drop(
                "the dispatcher is woken by file-system notifications"
            ),
            "cleaner_scan_interval": self._simple("cleaner.interval"),
            "retention": self._retention,
            "emergency_clean_percentage": self._simple("cleaner.disk_threshold_percent"),
            "retry_delay": self._retry_delay,
            "retry_max": self._simple("dispatch.retry_attempts"),
            "series_complete_trigger": self._simple("router.series_complete_trigger"),
            "study_complete_trigger": self._simple("router.study_complete_trigger"),
            "study_forcecomplete_trigger": self._simple("router.study_forcecomplete_trigger"),
            "dicom_receiver": self._dicom_receiver,
            "graphite_ip": self._metrics,
            "graphite_port": self._metrics,
            "influxdb_host": self._metrics,
            "influxdb_token": self._metrics,
            "influxdb_org": self._metrics,
            "influxdb_bucket": self._metrics,
            "bookkeeper": self._bookkeeper,
            "bookkeeper_api_key": self._bookkeeper_key,
            "offpeak_start": self._simple("offpeak.start"),
            "offpeak_end": self._simple("offpeak.end"),
            "targets": self._targets,
            "modules": self._modules,
            "rules": self._rules,
            "process_runner": self._process_runner,
            "processing_runtime": self._processing_runtime,
            "features": self._features,
            "processing_logs": self._processing_logs,
            "email_notification_from": self._used_by_rules("notifications.<rule>-email.sender"),
            "support_root_modules": self._root_modules,
            "webhook_certificate_location": self._used_by_rules(
                "notifications.<rule>-webhook.ca_certificate"
            ),
            "phi_notifications": self._used_by_rules("notifications.<rule>-*.include_phi"),
            "server_time": self._time_zone,
            "local_time": self._time_zone,
            "dicom_retrieve": self._dicom_retrieve,
            "store_sample_dicom_tags": self._drop(
                "the bookkeeper always keeps each series' tags (series search)"
            ),
        }
        self._folders()
        # Modules and targets before rules: rules refer to their (possibly changed) names.
        order = ["targets", "modules"]
        keys = [k for k in order if k in self.source] + [
            k for k in self.source if k not in order and k not in MERCURE_STAGE_FOLDERS
        ]
        for key in keys:
            value = self.source[key]
            if key in _OTHER_FOLDERS:
                self.report.dropped(key, _OTHER_FOLDERS[key])
            elif key in handlers:
                handlers[key](key, value)
            else:
                self.report.dropped(key, "not a key of mercure 0.4.1's configuration; unknown")
        return ImportResult(self.out, self.report)

    def _simple(self, to: str) -> Callable[[str, Any], None]:
        def handle(key: str, value: Any) -> None:
            *parents, last = to.split(".")
            self._section(*parents)[last] = value
            self.report.mapped(key, to)

        return handle

    def _drop(self, why: str) -> Callable[[str, Any], None]:
        def handle(key: str, value: Any) -> None:
            self.report.dropped(key, why)

        return handle

    def _used_by_rules(self, to: str) -> Callable[[str, Any], None]:
        def handle(key: str, value: Any) -> None:
            self.report.mapped(key, to, "applied to each channel made from a rule's settings")

        return handle

    # -- installation-wide keys -----------------------------------------------------------

    def _appliance_name(self, key: str, value: Any) -> None:
        self.out["appliance_name"] = str(value)
        self.report.mapped(key, "appliance_name")

    def _folders(self) -> None:
        folders = {
            key: str(self.source[key]) for key in MERCURE_STAGE_FOLDERS if key in self.source
        }
        if not folders:
            return
        parents = {posixpath.dirname(path.rstrip("/")) for path in folders.values()}
        base = parents.pop() if len(parents) == 1 else "/opt/mercure/data"
        data_dir = base.rstrip("/") + "-router"
        self.out["data_dir"] = data_dir
        for key in folders:
            self.report.changed(
                key,
                "data_dir",
                f"stage folders are fixed sub-folders of data_dir; data_dir is {data_dir}, "
                "beside mercure's folders (same file system, so queued tasks can be moved over)",
            )

    def _listener(self) -> dict[str, Any]:
        receiver = self._section("receiver")
        listeners = receiver.setdefault("listeners", [{"name": "default"}])
        listener: dict[str, Any] = listeners[0]
        return listener

    def _port(self, key: str, value: Any) -> None:
        listener = self._listener()
        listener["port"] = as_port(value, key)
        listener.setdefault("aet", "MERCURE")
        self.report.changed(
            key,
            "receiver.listeners[0].port",
            "mercure answers to any called AE title; this listener answers to `MERCURE` only: "
            "set receiver.listeners[0].aet to the title your senders call",
        )

    def _compressed(self, key: str, value: Any) -> None:
        listener = self._listener()
        if as_mercure_bool(value):
            self.report.mapped(
                key, "receiver.listeners[0].transfer_syntaxes", "empty: every transfer syntax"
            )
            return
        listener["transfer_syntaxes"] = list(UNCOMPRESSED_TRANSFER_SYNTAXES)
        self.report.changed(
            key,
            "receiver.listeners[0].transfer_syntaxes",
            "mercure-router accepts compressed images by default; the uncompressed transfer "
            "syntaxes are listed so that compressed ones stay refused as in mercure",
        )

    def _retention(self, key: str, value: Any) -> None:
        cleaner = self._section("cleaner")
        cleaner["success_retention"] = value
        cleaner["discard_retention"] = value
        cleaner["error_retention"] = ERROR_RETENTION_FOREVER
        self.report.changed(
            key,
            "cleaner.error_retention",
            "success/ and discard/ keep mercure's retention; mercure never deletes error/, "
            f"mercure-router does after error_retention: set to {ERROR_RETENTION_FOREVER} to "
            "keep error/ as mercure does (lower it to let the cleaner remove old failed tasks)",
        )

    def _retry_delay(self, key: str, value: Any) -> None:
        dispatch = self._section("dispatch")
        dispatch["retry_base_delay"] = value
        dispatch["retry_max_delay"] = value
        dispatch["retry_jitter"] = 0.0
        self.report.changed(
            key,
            "dispatch.retry_base_delay",
            "mercure waits retry_delay before every retry; mercure-router doubles the delay up "
            "to retry_max_delay with jitter: base = max = retry_delay and jitter 0 keep "
            "mercure's fixed delay",
        )

    def _dicom_receiver(self, key: str, value: Any) -> None:
        value = value if isinstance(value, dict) else {}
        for sub, sub_value in value.items():
            if sub == "additional_tags":
                self._section("router")["additional_tags"] = dict(sub_value or {})
                self.report.mapped(f"{key}.{sub}", "router.additional_tags")
            else:
                self.report.dropped(f"{key}.{sub}", "unknown key of dicom_receiver")
        self.report.mapped(key, "router", "its additional_tags" if value else "empty")

    def _metrics(self, key: str, value: Any) -> None:
        why = (
            "mercure-router pushes no metrics to Graphite or InfluxDB; the bookkeeper serves "
            "Prometheus metrics at /metrics (scrape them, or bridge them to your store)"
        )
        if key == "influxdb_token" and value:
            why += "; the token is not written anywhere"
        self.report.dropped(key, why)

    def _bookkeeper(self, key: str, value: Any) -> None:
        host, _, port = str(value).rpartition(":")
        section = self._section("bookkeeper")
        if host:
            section["host"] = host
        if port.isdigit():
            section["port"] = int(port)
        note = (
            "the bookkeeper's API listens on every interface (it needs its key); 127.0.0.1 "
            "if every service runs on this host"
            if host in ("0.0.0.0", "::")
            else ""
        )
        self.report.mapped(key, "bookkeeper.host, bookkeeper.port", note)

    def _bookkeeper_key(self, key: str, value: Any) -> None:
        if not value or value == "BOOKKEEPER_TOKEN_PLACEHOLDER":
            self.report.dropped(
                key,
                "no key set; mercure-router makes its own in data_dir/.secrets/bookkeeper.key "
                "at the first start",
            )
            return
        reference = self.report.secret("MERCURE_BOOKKEEPER_API_KEY", key, "bookkeeper.api_key")
        self._section("bookkeeper")["api_key"] = reference
        self.report.mapped(key, "bookkeeper.api_key", "as ${MERCURE_BOOKKEEPER_API_KEY}")

    def _process_runner(self, key: str, value: Any) -> None:
        if value == "nomad":
            self.report.changed(
                key,
                "modules.*.runner",
                "Nomad is not supported: modules run through the Docker Engine API "
                "(constraints and resources are kept on each module and honoured where the "
                "docker runner can)",
            )
        else:
            self.report.mapped(key, "modules.*.runner", "docker")

    def _processing_runtime(self, key: str, value: Any) -> None:
        if value == "nvidia":
            for module in self.out.get("modules", {}).values():
                if module.get("runner") == "docker":
                    module["gpu"] = True
            self.report.changed(
                key, "modules.*.gpu", "the nvidia runtime becomes `gpu: true` on each module"
            )
        elif value:
            self.report.dropped(key, f"docker runtime {value!r} has no setting here")
        else:
            self.report.mapped(key, "modules", "the default runtime")

    def _features(self, key: str, value: Any) -> None:
        value = value if isinstance(value, dict) else {}
        for feature in value:
            why = (
                "the dummy target type is always available (type: dummy)"
                if feature == "dummy_target"
                else "mercure's feature switch has no counterpart"
            )
            self.report.dropped(f"{key}.{feature}", why)
        self.report.dropped(key, "mercure's feature switches (each below)" if value else "empty")

    def _processing_logs(self, key: str, value: Any) -> None:
        value = value if isinstance(value, dict) else {}
        for sub in value:
            self.report.dropped(
                f"{key}.{sub}",
                "module logs are kept with each task (logs/processing-*.log) and their last "
                "64 KiB sent to the bookkeeper; there is no separate log store",
            )
        self.report.dropped(key, "mercure's module log store (each below)" if value else "empty")

    def _root_modules(self, key: str, value: Any) -> None:
        self._section("processing")["allow_root"] = as_mercure_bool(value)
        self.report.mapped(key, "processing.allow_root")

    def _time_zone(self, key: str, value: Any) -> None:
        self.report.dropped(
            key,
            f"mercure-router uses the host's time zone for off-peak and cleaning windows and "
            f"UTC in events; run the services with TZ={value} if the host's zone differs",
        )

    def _dicom_retrieve(self, key: str, value: Any) -> None:
        value = value if isinstance(value, dict) else {}
        used = any(value.get(part) for part in value)
        self.report.dropped(
            key,
            "mercure-router has no query/retrieve"
            + ("; the configured DICOM nodes are not carried" if used else " (none configured)"),
        )

    # -- targets --------------------------------------------------------------------------

    def _targets(self, key: str, value: Any) -> None:
        targets = self._section("targets")
        self.report.mapped(key, "targets", f"{len(named_entries(value, key))} targets, each below")
        for name, target in named_entries(value, key).items():
            if not isinstance(target, dict):
                self.report.dropped(f"{key}.{name}", "not an object")
                continue
            new_name = self._name("target", name)
            converted = convert_target(self.report, f"{key}.{name}", new_name, target)
            if converted is not None:
                targets[new_name] = converted
                self.rules.target_names[name] = new_name

    # -- modules --------------------------------------------------------------------------

    def _modules(self, key: str, value: Any) -> None:
        modules = self._section("modules")
        self.report.mapped(key, "modules", f"{len(named_entries(value, key))} modules, each below")
        for name, module in named_entries(value, key).items():
            prefix = f"{key}.{name}"
            if not isinstance(module, dict):
                self.report.dropped(prefix, "not an object")
                continue
            new_name = self._name("module", name)
            modules[new_name] = convert_module(self.report, prefix, new_name, module)
            self.rules.module_names[name] = new_name
        sources = [
            str(volume["source"])
            for module in modules.values()
            for volume in module.get("volumes", [])
        ]
        if sources:
            root = posixpath.commonpath(sources)
            self._section("processing")["volume_root"] = root
            self.report.changed(
                f"{key}.*.additional_volumes",
                "processing.volume_root",
                "mercure mounts any host folder into a module; mercure-router only folders "
                f"under processing.volume_root, set to {root} (the common parent of the "
                "modules' volumes): narrow it if you can",
            )

    # -- rules and their notifications ------------------------------------------------------

    def _rules(self, key: str, value: Any) -> None:
        rules = self._section("rules")
        self.report.mapped(key, "rules", f"{len(named_entries(value, key))} rules, each below")
        for name, rule in named_entries(value, key).items():
            prefix = f"{key}.{name}"
            if not isinstance(rule, dict):
                self.report.dropped(prefix, "not an object")
                continue
            new_name = self._name("rule", name)
            rules[new_name] = convert_rule(self.rules, prefix, new_name, rule)
        if self.rules.channels:
            self.out["notifications"] = self.rules.channels
