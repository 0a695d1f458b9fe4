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

import json
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mercure.core.config.types import NAME_PATTERN
from mercure.core.errors import PermanentError
from mercure.migrate.report import ImportReport

UNCOMPRESSED_TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
]
"""What mercure's receiver accepts without ``accept_compressed_images``: the uncompressed ones."""

MERCURE_FORCE_ACTION = "discard"
"""mercure's default ``study_force_completion_action`` (its Rule model); ours is ``proceed``."""

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
_SECRET_ENV_KEY = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|AUTH", re.IGNORECASE)
_NAME = re.compile(NAME_PATTERN)
_LEGACY_PLACEHOLDER = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)@")
_MERCURE_ONLY_TEMPLATE_NAMES = {"mrn": "patient_id", "acc": "accession"}


class MercureImportError(PermanentError):
    """The input is not a mercure configuration the importer can read."""


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


def _env_name(*parts: str) -> str:
    words = "_".join(re.sub(r"[^A-Za-z0-9]+", "_", part).strip("_") for part in parts if part)
    return "MERCURE_" + words.upper()


def as_mercure_bool(value: Any) -> bool:
    """mercure writes some flags as strings ("True"/"False")."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def _json_object(value: Any, key: str) -> dict[str, Any]:
    """mercure keeps a module's volumes, environment and docker arguments as JSON text."""
    if isinstance(value, dict):
        return value
    if value in (None, ""):
        return {}
    try:
        parsed = json.loads(value)
    except (TypeError, json.JSONDecodeError) as exc:
        raise MercureImportError(f"{key}: not a JSON object ({exc})") from None
    if not isinstance(parsed, dict):
        raise MercureImportError(f"{key}: not a JSON object")
    return parsed


def _names(value: Any) -> list[str]:
    """mercure allows a name, a comma-separated string or a list where a list is meant."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [str(part) for part in value if str(part).strip()]
    return []


def _template(text: str) -> str:
    """A mercure notification template in our Jinja2 dialect.

    mercure's older ``@rule@`` placeholders become ``{{ rule }}``; its ``mrn`` and ``acc`` are
    our ``patient_id`` and ``accession`` (set at the top so the text stays as written).
    """
    text = _LEGACY_PLACEHOLDER.sub(lambda m: "{{ " + m.group(1) + " }}", text)
    prefix = "".join(
        f"{{% set {old} = {new} %}}"
        for old, new in _MERCURE_ONLY_TEMPLATE_NAMES.items()
        if re.search(rf"\b{old}\b", text)
    )
    return prefix + text


class _Converter:
    def __init__(self, source: Mapping[str, Any]) -> None:
        self.source = source
        self.report = ImportReport()
        self.out: dict[str, Any] = {}
        self.target_names: dict[str, str] = {}
        self.module_names: dict[str, str] = {}

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
        listener["port"] = int(value)
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
            "keep error/ as mercure does (lower it once you clean error/ yourself no more)",
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
        self.report.mapped(key, "bookkeeper.host, bookkeeper.port")

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
        self.report.mapped(key, "targets", f"{len(value or {})} targets, each below")
        for name, target in (value or {}).items():
            if not isinstance(target, dict):
                self.report.dropped(f"{key}.{name}", "not an object")
                continue
            new_name = self._name("target", name)
            converted = self._target(f"{key}.{name}", new_name, target)
            if converted is not None:
                targets[new_name] = converted
                self.target_names[name] = new_name

    def _comment(self, prefix: str, source: Mapping[str, Any], to: str) -> str:
        parts = []
        for field in ("comment", "contact"):
            if field in source:
                if source[field]:
                    parts.append(
                        str(source[field]) if field == "comment" else f"contact: {source[field]}"
                    )
                self.report.mapped(f"{prefix}.{field}", f"{to}.comment")
        return "; ".join(parts)

    def _target(self, prefix: str, name: str, source: dict[str, Any]) -> dict[str, Any] | None:
        kind = source.get("target_type", "dicom")
        to = f"targets.{name}"
        out: dict[str, Any] = {}
        handled = {"target_type", "comment", "contact"}
        self.report.mapped(f"{prefix}.target_type", f"{to}.type")

        def take(field: str, new: str | None = None, convert: Callable[[Any], Any] = str) -> None:
            handled.add(field)
            if field in source and source[field] not in (None, ""):
                out[new or field] = convert(source[field])
                self.report.mapped(f"{prefix}.{field}", f"{to}.{new or field}")
            elif field in source:
                self.report.mapped(f"{prefix}.{field}", f"{to}.{new or field}", "empty: default")

        def secret(field: str, new: str, label: str) -> None:
            handled.add(field)
            if field not in source:
                return
            if source[field]:
                variable = _env_name("TARGET", name, label)
                out[new] = self.report.secret(variable, f"{prefix}.{field}", f"{to}.{new}")
                self.report.mapped(f"{prefix}.{field}", f"{to}.{new}", f"as ${{{variable}}}")
            else:
                self.report.mapped(f"{prefix}.{field}", f"{to}.{new}", "empty: none")

        if kind in ("dicom", "dicomtls"):
            out["type"] = "dicom"
            take("ip", "host")
            take("port", convert=int)
            take("aet_target")
            handled.add("aet_source")
            if source.get("aet_source"):
                take("aet_source")
            elif "aet_source" in source:
                out["aet_source"] = "MERCURE"
                self.report.changed(
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
                        self.report.mapped(f"{prefix}.{field}", f"{to}.tls.{new}")
                out["tls"] = tls
                self.report.mapped(f"{prefix}.target_type", f"{to}.tls", "dicomtls: dicom with tls")
        elif kind in ("sftp", "rsync"):
            out["type"] = kind
            take("host")
            take("port", convert=int)
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
        elif kind == "dicomweb":
            out["type"] = "dicomweb"
            take("url")
            for field in ("qido_url_prefix", "wado_url_prefix", "stow_url_prefix"):
                take(field)
            secret("access_token", "token", "token")
            take("http_user", "username")
            secret("http_password", "password", "password")
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
            self.report.dropped(prefix, f"unknown target type {kind!r}; rules naming it lose it")
            for field in source:
                if field != "target_type":
                    self.report.dropped(f"{prefix}.{field}", f"part of unknown target {kind!r}")
            return None
        comment = self._comment(prefix, source, to)
        if comment:
            out["comment"] = comment
        for field in source:
            if field == "direction":
                self.report.dropped(
                    f"{prefix}.{field}",
                    "targets are for sending only (mercure-router has no query/retrieve)",
                )
            elif field not in handled:
                self.report.dropped(f"{prefix}.{field}", f"not a field of a {kind} target")
        return out

    # -- modules --------------------------------------------------------------------------

    def _modules(self, key: str, value: Any) -> None:
        modules = self._section("modules")
        self.report.mapped(key, "modules", f"{len(value or {})} modules, each below")
        for name, module in (value or {}).items():
            prefix = f"{key}.{name}"
            if not isinstance(module, dict):
                self.report.dropped(prefix, "not an object")
                continue
            new_name = self._name("module", name)
            modules[new_name] = self._module(prefix, new_name, module)
            self.module_names[name] = new_name

    def _module(self, prefix: str, name: str, source: dict[str, Any]) -> dict[str, Any]:
        to = f"modules.{name}"
        out: dict[str, Any] = {"runner": "docker", "image": str(source.get("docker_tag") or "")}
        for field, value in source.items():
            where = f"{prefix}.{field}"
            if field == "docker_tag":
                self.report.mapped(where, f"{to}.image")
            elif field == "additional_volumes":
                volumes = []
                for host_path, spec in _json_object(value, where).items():
                    bind = spec.get("bind", host_path) if isinstance(spec, dict) else str(spec)
                    volumes.append({"source": host_path, "target": bind})
                    if isinstance(spec, dict) and spec.get("mode", "rw") != "ro":
                        self.report.changed(
                            where,
                            f"{to}.volumes",
                            f"{host_path} is mounted read-only here "
                            f"(mercure: {spec.get('mode', 'rw')})",
                        )
                if volumes:
                    out["volumes"] = volumes
                self.report.mapped(where, f"{to}.volumes")
            elif field == "environment":
                environment = {}
                for variable, env_value in _json_object(value, where).items():
                    if _SECRET_ENV_KEY.search(variable) and env_value:
                        reference = _env_name("MODULE", name, variable)
                        environment[variable] = self.report.secret(
                            reference, f"{where}.{variable}", f"{to}.environment.{variable}"
                        )
                    else:
                        environment[variable] = str(env_value)
                if environment:
                    out["environment"] = environment
                self.report.mapped(where, f"{to}.environment", "secret-looking values as ${ENV}")
            elif field == "docker_arguments":
                arguments = _json_object(value, where)
                if arguments:
                    out["docker_arguments"] = arguments
                self.report.mapped(where, f"{to}.docker_arguments")
            elif field in ("constraints", "resources"):
                if value:
                    out[field] = str(value)
                self.report.mapped(where, f"{to}.{field}")
            elif field in ("requires_root", "requires_persistence"):
                out[field] = as_mercure_bool(value)
                self.report.mapped(where, f"{to}.{field}")
            elif field == "network_enabled":
                out["network"] = as_mercure_bool(value)
                self.report.mapped(where, f"{to}.network")
            elif field == "settings":
                if value:
                    out["settings"] = value
                self.report.mapped(where, f"{to}.settings")
            elif field in ("comment", "contact"):
                continue
            else:
                self.report.dropped(where, "not a field of a mercure module")
        comment = self._comment(prefix, source, to)
        if comment:
            out["comment"] = comment
        if "network_enabled" not in source:
            out["network"] = True
            self.report.changed(
                f"{prefix}.network_enabled",
                f"{to}.network",
                "absent: mercure's containers have network access; mercure-router's have "
                "none unless `network: true`, written so the module keeps working",
            )
        if not out["image"]:
            self.report.changed(f"{prefix}.docker_tag", f"{to}.image", "empty: set the image")
        return out

    # -- rules and their notifications ------------------------------------------------------

    def _rules(self, key: str, value: Any) -> None:
        rules = self._section("rules")
        self.report.mapped(key, "rules", f"{len(value or {})} rules, each below")
        for name, rule in (value or {}).items():
            prefix = f"{key}.{name}"
            if not isinstance(rule, dict):
                self.report.dropped(prefix, "not an object")
                continue
            new_name = self._name("rule", name)
            rules[new_name] = self._rule(prefix, new_name, rule)

    def _rule(self, prefix: str, name: str, source: dict[str, Any]) -> dict[str, Any]:
        to = f"rules.{name}"
        out: dict[str, Any] = {"rule": str(source.get("rule", "False"))}
        same = (
            "disabled",
            "fallback",
            "action",
            "action_trigger",
            "study_trigger_condition",
            "study_trigger_series",
            "priority",
            "processing_retain_images",
            "notification_trigger_reception",
            "notification_trigger_completion",
            "notification_trigger_completion_on_request",
            "notification_trigger_error",
        )
        notification_fields = (
            "notification_email",
            "notification_webhook",
            "notification_payload",
            "notification_payload_body",
            "notification_email_body",
            "notification_email_type",
        )
        for field, value in source.items():
            where = f"{prefix}.{field}"
            if field == "rule":
                self.report.mapped(where, f"{to}.rule")
            elif field in same:
                out[field] = value
                self.report.mapped(where, f"{to}.{field}")
            elif field == "target":
                targets = []
                for target in _names(value):
                    if target in self.target_names:
                        targets.append(self.target_names[target])
                    else:
                        self.report.dropped(
                            f"{where}.{target}", "no such target in the converted targets"
                        )
                if targets:
                    out["targets"] = targets
                self.report.mapped(where, f"{to}.targets")
            elif field == "processing_module":
                modules = [self.module_names.get(m, m) for m in _names(value)]
                if modules:
                    out["processing_module"] = modules
                self.report.mapped(where, f"{to}.processing_module")
            elif field == "processing_settings":
                if value:
                    out["processing_settings"] = value
                self.report.mapped(where, f"{to}.processing_settings")
            elif field == "study_force_completion_action":
                out["study_force_action"] = value or MERCURE_FORCE_ACTION
                self.report.mapped(where, f"{to}.study_force_action")
            elif field == "tags":
                self.report.mapped(where, f"{to}.comment", "kept in the comment")
            elif field in notification_fields or field in ("comment", "contact"):
                continue
            else:
                self.report.dropped(where, "not a field of a mercure rule")
        if "study_force_completion_action" not in source:
            out["study_force_action"] = MERCURE_FORCE_ACTION
            self.report.changed(
                f"{prefix}.study_force_completion_action",
                f"{to}.study_force_action",
                f"absent: mercure's default on forced study completion is {MERCURE_FORCE_ACTION}, "
                "mercure-router's is proceed: written explicitly",
            )
        comment = self._comment(prefix, source, to)
        if source.get("tags"):
            comment = "; ".join(filter(None, [comment, f"tags: {source['tags']}"]))
        if comment:
            out["comment"] = comment
        channels = self._rule_channels(prefix, name, source)
        if channels:
            out["notification_channels"] = channels
        return out

    def _rule_channels(self, prefix: str, name: str, source: dict[str, Any]) -> list[str]:
        """Channels under ``notifications:`` for the rule's webhook and e-mail settings."""
        channels = self._section("notifications")
        include_phi = as_mercure_bool(self.source.get("phi_notifications", False))
        made: list[str] = []
        webhook = source.get("notification_webhook")
        payload_body = source.get("notification_payload_body") or ""
        payload = source.get("notification_payload") or ""
        if webhook:
            channel = f"{name}-webhook"[:64]
            to = f"notifications.{channel}"
            variable = _env_name("NOTIFY", name, "webhook_url")
            entry: dict[str, Any] = {
                "type": "webhook",
                "url": self.report.secret(variable, f"{prefix}.notification_webhook", f"{to}.url"),
                "include_phi": include_phi,
            }
            if payload_body:
                entry["body"] = _template(payload_body)
            elif payload:
                entry["body"] = "{" + _template(payload) + "}"
            certificate = self.source.get("webhook_certificate_location")
            if certificate:
                entry["ca_certificate"] = certificate
            channels[channel] = entry
            made.append(channel)
            self.report.mapped(f"{prefix}.notification_webhook", to, f"url as ${{{variable}}}")
            for field, note in (
                ("notification_payload_body", "the body template"),
                ("notification_payload", "mercure's older payload, wrapped in braces"),
            ):
                if field in source:
                    self.report.mapped(f"{prefix}.{field}", f"{to}.body", note)
        else:
            for field in (
                "notification_webhook",
                "notification_payload_body",
                "notification_payload",
            ):
                if field in source:
                    self.report.mapped(f"{prefix}.{field}", "", "empty: no webhook channel")
        email = source.get("notification_email")
        if email:
            channel = f"{name}-email"[:64]
            to = f"notifications.{channel}"
            entry = {
                "type": "email",
                "host": "localhost",
                "port": 25,
                "security": "none",
                "sender": str(
                    self.source.get("email_notification_from") or "mercure@mercure.mercure"
                ),
                "to": _names(email),
                "include_phi": include_phi,
                "html": source.get("notification_email_type", "plain") == "html",
            }
            if source.get("notification_email_body"):
                entry["body"] = _template(source["notification_email_body"])
            channels[channel] = entry
            made.append(channel)
            self.report.changed(
                f"{prefix}.notification_email",
                to,
                "mercure hands mail to the local mail server: host localhost, port 25, no TLS "
                "written; point it at your SMTP server",
            )
            for field in ("notification_email_body", "notification_email_type"):
                if field in source:
                    self.report.mapped(
                        f"{prefix}.{field}", f"{to}.body" if "body" in field else f"{to}.html"
                    )
        else:
            for field in (
                "notification_email",
                "notification_email_body",
                "notification_email_type",
            ):
                if field in source:
                    self.report.mapped(f"{prefix}.{field}", "", "empty: no e-mail channel")
        if not channels:
            self.out.pop("notifications")
        return made
