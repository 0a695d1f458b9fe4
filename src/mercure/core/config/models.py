"""The configuration models: the only place that holds a default.

Key names follow mercure's where the meaning is the same (``series_complete_trigger``,
``rules.<name>.rule``, ``action``, ``targets``, ``action_trigger``, ``priority`` ...).
"""

from __future__ import annotations

import os
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    AfterValidator,
    AliasChoices,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_core import CoreSchema

from mercure.core.config.types import (
    AETitle,
    DicomUID,
    Name,
    PositiveSeconds,
    Seconds,
    StrictModel,
    TimeWindow,
)
from mercure.core.config.urls import (
    BookkeeperURL,
    DicomWebURL,
    DockerURL,
    S3EndpointURL,
    WebURL,
    XnatURL,
    secret_http_url,
)
from mercure.core.installed import SERVICE_NAMES, installed_services
from mercure.core.mercuretags import parse_additional_tag
from mercure.core.uids import known_transfer_syntaxes, non_storage_uids, uid_name


def _one_or_many(value: object) -> object:
    """mercure allows a single name where a list is meant; accept both."""
    if isinstance(value, str):
        return [value] if value else []
    return value


NameList = Annotated[list[Name], BeforeValidator(_one_or_many)]


def _not_another_service(uid: str) -> str:
    """Refuse a UID the standard defines for a service other than storage (C-FIND models ...)."""
    if uid in non_storage_uids():
        raise ValueError(f"not a storage SOP class: the standard defines it as {uid_name(uid)!r}")
    return uid


StorageSopClassUID = Annotated[DicomUID, AfterValidator(_not_another_service)]


def _known_transfer_syntax(uid: str) -> str:
    """Refuse a UID that is no transfer syntax the receiver can take (a typo, a SOP class)."""
    if uid not in known_transfer_syntaxes():
        what = f" (the standard defines it as {uid_name(uid)!r})" if uid_name(uid) else ""
        raise ValueError(
            f"not a transfer syntax the receiver knows{what}; see docs/receiver.md for the list"
        )
    return uid


TransferSyntaxUID = Annotated[DicomUID, AfterValidator(_known_transfer_syntax)]
"""A SOP class UID a listener may accept for storage (a private or newer one, usually)."""


class LoggingConfig(StrictModel):
    """How services log."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Least severe level written. Patient data appears only at DEBUG."
    )
    format: Literal["text", "json"] = Field(
        "text", description="`text` for people, `json` (one object a line) for log collectors."
    )
    files: bool = Field(
        True,
        description="Each service also writes its log to `data_dir/logs/<service>.log` "
        "(rotated; read by `mercure logs`); off leaves standard error (the journal) only.",
    )
    max_file_mb: int = Field(10, ge=1, le=1024, description="Size at which a log file rotates.")
    keep_files: int = Field(5, ge=1, le=100, description="Rotated files kept per service.")


class TLSServerConfig(StrictModel):
    """TLS for a DICOM listener."""

    certificate: Path = Field(description="PEM certificate (chain) the listener presents.")
    key: Path = Field(description="PEM private key of the certificate.")
    ca_certificate: Path | None = Field(
        None, description="PEM bundle of CAs that client certificates must chain to."
    )
    require_client_certificate: bool = Field(
        False, description="Reject senders that do not present a certificate signed by the CA."
    )

    @model_validator(mode="after")
    def _client_auth_needs_ca(self) -> TLSServerConfig:
        if self.require_client_certificate and self.ca_certificate is None:
            raise ValueError("require_client_certificate needs ca_certificate")
        return self


class TLSClientConfig(StrictModel):
    """TLS for an outgoing DICOM association."""

    ca_certificate: Path | None = Field(
        None, description="PEM bundle to verify the target with; the system store when empty."
    )
    certificate: Path | None = Field(None, description="Client certificate, if the target asks.")
    key: Path | None = Field(None, description="Key of the client certificate.")
    verify: bool = Field(True, description="Verify the target's certificate and host name.")


class ListenerConfig(StrictModel):
    """One DICOM listener: a port and the AE title it answers to."""

    name: Name = Field("default", description="Name in logs and events.")
    host: str = Field("0.0.0.0", description="Address to listen on.")
    port: int = Field(11112, ge=1, le=65535, description="TCP port.")
    aet: AETitle = Field("MERCURE", description="Called AE title this listener accepts.")
    transfer_syntaxes: list[TransferSyntaxUID] = Field(
        default_factory=list,
        description="Accepted transfer syntax UIDs; empty accepts every known one, compressed too.",
    )
    extra_sop_classes: list[StorageSopClassUID] = Field(
        default_factory=list,
        description="SOP class UIDs accepted for storage besides the standard storage classes, "
        "e.g. private ones such as Siemens CSA Non-Image `1.3.12.2.1107.5.9.1`.",
    )
    accept_unknown_sop_classes: bool = Field(
        False,
        description="Also accept, as storage, every SOP class UID the DICOM standard does not "
        "define (promiscuous, like storescp `--promiscuous`); the standard's other services "
        "(query/retrieve, worklist, storage commitment, MPPS, print ...) stay refused.",
    )
    allowed_calling_aets: list[AETitle] = Field(
        default_factory=list, description="If not empty, only these calling AE titles may connect."
    )
    allowed_networks: list[IPv4Network | IPv6Network] = Field(
        default_factory=list,
        description="If not empty, only senders from these networks (CIDR) may connect.",
    )
    tls: TLSServerConfig | None = Field(None, description="Serve DICOM over TLS.")
    max_associations: int = Field(32, ge=1, description="Concurrent associations accepted.")
    pdu_timeout: PositiveSeconds | None = Field(
        60.0,
        description="A PDU must arrive whole within this many seconds of its first byte, else "
        "the association is aborted: a sender trickling bytes cannot hold an association "
        "(idle_timeout alone is reset by every byte). Null: no limit.",
    )
    max_association_duration: PositiveSeconds | None = Field(
        None,
        description="An association open longer than this is aborted, whatever it sends "
        "(a sender keeping associations busy cannot hold them forever). Null (the default): "
        "no limit; set it above the longest transfer a sender makes on one association.",
    )
    series_complete_trigger: Seconds | None = Field(
        None, description="Overrides router.series_complete_trigger for series from here."
    )
    complete_on_release: bool = Field(
        False,
        description="Treat the release of the association that delivered a series as its "
        "completion (after release_grace): for senders that send whole series at once.",
    )
    release_grace: Seconds = Field(5.0, description="Quiet time after a release before routing.")


STOW_TOKEN_MIN_LENGTH = 16


class StowSender(StrictModel):
    """A sender allowed to store over STOW-RS, known by its bearer token."""

    token: SecretStr = Field(
        description="Its bearer token (`Authorization: Bearer <token>`): at least 16 "
        "characters, unique among the senders; use ${ENV} rather than plain text."
    )
    comment: str = Field("", description="Who or what this sender is, for people.")

    @field_validator("token")
    @classmethod
    def _long_enough(cls, token: SecretStr) -> SecretStr:
        if len(token.get_secret_value()) < STOW_TOKEN_MIN_LENGTH:
            raise ValueError(
                f"too short: a token needs at least {STOW_TOKEN_MIN_LENGTH} characters"
            )
        return token


class StowConfig(StrictModel):
    """The STOW-RS endpoint (DICOMweb store) of the receiver: `POST /studies` over HTTP(S),
    placing instances exactly as C-STORE does (docs/receiver.md, "STOW-RS ingress")."""

    host: str = Field(
        "127.0.0.1",
        description="Address it listens on; the default serves this host only (a reverse "
        "proxy, or `0.0.0.0` with tls, opens it to the network).",
    )
    port: int = Field(8104, ge=1, le=65535, description="Its TCP port.")
    tls: TLSServerConfig | None = Field(None, description="Serve HTTPS (optionally mutual TLS).")
    senders: dict[Name, StowSender] = Field(
        default_factory=dict,
        description="Who may store, by name (the name appears in logs, events and as "
        "`SenderAET` `STOW:<name>` in the series' tags; the token never does).",
    )
    max_request_mb: int = Field(
        4096, ge=1, description="Largest request body (MiB); past it the answer is 413."
    )
    max_instance_mb: int = Field(
        2048, ge=1, description="Largest single instance (MiB); past it the answer is 413."
    )
    read_timeout: PositiveSeconds = Field(
        60.0,
        description="A request whose body stops arriving for this long is answered 408.",
    )
    max_connections: int = Field(
        64, ge=1, description="Concurrent connections; more are answered 503."
    )

    @model_validator(mode="after")
    def _unique_tokens(self) -> StowConfig:
        seen: dict[str, str] = {}
        for name, sender in self.senders.items():
            token = sender.token.get_secret_value()
            if token in seen:
                raise ValueError(
                    f"senders {seen[token]!r} and {name!r} have the same token: "
                    "each sender needs its own"
                )
            seen[token] = name
        return self


AUTO_RECEIVER_PROCESSES = 8
"""The most receiver processes ``auto`` starts: as many associations at once, each in its own
process, which is what `storescp --fork` gives its senders."""


class ReceiverConfig(StrictModel):
    """The DICOM receiver (Storage SCP)."""

    listeners: list[ListenerConfig] = Field(
        default_factory=lambda: [ListenerConfig()], description="DICOM listeners."
    )
    fsync: bool = Field(
        True, description="Make every instance durable before acknowledging it (recommended)."
    )
    min_free_disk_mb: int = Field(
        1024, ge=0, description="Below this free space, C-STORE answers Out of Resources."
    )
    max_pdu: int = Field(
        262144, ge=4096, description="Maximum PDU length the receiver advertises (bytes)."
    )
    acse_timeout: Seconds = Field(30.0, description="Time allowed for association set-up.")
    idle_timeout: Seconds = Field(
        600.0, description="An association silent for this long is aborted."
    )
    stow: StowConfig | None = Field(
        None, description="The STOW-RS endpoint (DICOMweb store); off when absent."
    )
    processes: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = Field(
        "auto",
        description="Receiver processes sharing each listener's port, each with its own event "
        "loop; an idle process takes the next association, so up to this many associations "
        "each have a process of their own. `auto`: four per CPU core, at most 8 (about 70 MB "
        "of memory each). 1 keeps one process. `max_associations` applies per process.",
    )

    def process_count(self) -> int:
        """How many receiver processes to run: ``processes``, with ``auto`` resolved."""
        if self.processes == "auto":
            return min(4 * (os.cpu_count() or 1), AUTO_RECEIVER_PROCESSES)
        return self.processes

    @model_validator(mode="after")
    def _unique_listeners(self) -> ReceiverConfig:
        ports = [(listener.host, listener.port) for listener in self.listeners]
        duplicates = {port for port in ports if ports.count(port) > 1}
        if duplicates:
            raise ValueError(f"several listeners on the same port: {sorted(duplicates)}")
        names = [listener.name for listener in self.listeners]
        if len(set(names)) != len(names):
            raise ValueError("listener names must be unique")
        return self


class RouterConfig(StrictModel):
    """Series and study completion."""

    series_complete_trigger: Seconds = Field(
        60.0, description="A series is complete when no instance arrived for this long."
    )
    series_complete_trigger_by_calling_aet: dict[AETitle, Seconds] = Field(
        default_factory=dict,
        description="Per calling AE title overrides (slow modalities need longer).",
    )
    study_complete_trigger: Seconds = Field(
        900.0, description="A collected study is complete this long after its last series."
    )
    study_forcecomplete_trigger: Seconds = Field(
        5400.0, description="A study still waiting for required series is forced after this."
    )
    rescan_interval: Seconds = Field(
        60.0, description="Safety-net rescan of incoming/ besides the file system notifications."
    )
    additional_tags: dict[str, str] = Field(
        default_factory=dict,
        description="Tags to read from each series besides the standard ones, for rules and "
        "modules' `.tags` files (mercure's `dicom_receiver.additional_tags`): key a DICOM "
        "keyword or a tag number `gggg,eeee` (private tags), value a note (mercure shows it as "
        "an example value). A private tag is then `tags['(gggg,eeee)']` in rules.",
    )

    @field_validator("additional_tags")
    @classmethod
    def _known_additional_tags(cls, value: dict[str, str]) -> dict[str, str]:
        problems = []
        for name in value:
            try:
                parse_additional_tag(name)
            except ValueError as error:
                problems.append(str(error))
        if problems:
            raise ValueError("; ".join(problems))
        return value


NotificationTrigger = Literal["reception", "completion", "error"]
"""When a rule's channels are told: a series selected, a task complete, a task failed."""


class Rule(StrictModel):
    """A routing rule: when ``rule`` is true for a complete series, ``action`` happens."""

    rule: str = Field(description="Selection expression, e.g. `tags.Modality == 'CT'`.")
    action: Literal["route", "process", "both", "notification", "discard"] = Field(
        "route", description="What to do with a series the rule selects."
    )
    targets: NameList = Field(
        default_factory=list,
        validation_alias=AliasChoices("targets", "target"),
        description="Targets to send to (route, both; process optionally after processing).",
    )
    processing_module: NameList = Field(
        default_factory=list,
        description="Module, or list of modules run as a chain (process, both).",
    )
    processing_settings: dict[str, Any] | list[dict[str, Any]] = Field(
        default_factory=dict,
        description="Settings for the module; they win over its defaults. For a chain, one "
        "object for all modules, or a list with one object per module (mercure's form).",
    )
    processing_retain_images: bool = Field(
        False, description="Keep the input images beside the module's output."
    )
    dynamic_routing: bool = Field(
        False,
        description="Let the last module choose where the task goes: `__mercure_routing` in its "
        "result.json (new targets, or discard), as in mercure; off, that key is ignored (logged).",
    )
    dynamic_routing_allowed_targets: NameList = Field(
        default_factory=list,
        description="With dynamic_routing: the targets a module may choose; empty allows every "
        "configured target. Anything else fails the task, saying so.",
    )
    action_trigger: Literal["series", "study"] = Field(
        "series", description="Act per series, or collect the study first."
    )
    study_trigger_condition: Literal["timeout", "received_series"] = Field(
        "timeout", description="A study completes by timeout, or when required series arrived."
    )
    study_trigger_series: str = Field(
        "",
        description="Required series for `received_series`: an expression over series "
        "descriptions, e.g. `'T1' and ('T2' or 'FLAIR')`.",
    )
    study_force_action: Literal["discard", "proceed", "ignore"] = Field(
        "proceed",
        description="What happens to a study forced complete (study_forcecomplete_trigger).",
    )
    priority: Literal["urgent", "normal", "offpeak"] = Field(
        "normal", description="Processing and dispatch order; offpeak waits for the window."
    )
    fallback: bool = Field(False, description="Fires only when no other rule fired.")
    disabled: bool = Field(False, description="Keep the rule but never evaluate it.")
    series_complete_trigger: Seconds | None = Field(
        None, description="Overrides the completion time for series this rule may select."
    )
    comment: str = Field("", description="Free text for the administrators.")
    notification_channels: NameList = Field(
        default_factory=list,
        description="Channels (names under `notifications:`) told about this rule's tasks.",
    )
    notification_trigger_reception: bool = Field(
        True, description="Notify when the rule selects a series (its task is created)."
    )
    notification_trigger_completion: bool = Field(
        True, description="Notify when the task is complete: processed and delivered everywhere."
    )
    notification_trigger_completion_on_request: bool = Field(
        False,
        description="Notify on completion also when the completion trigger is off, if a module's "
        "result.json requests it (`__mercure_notification: {requested: true}`), as in mercure.",
    )
    notification_trigger_error: bool = Field(
        True, description="Notify when the task fails in any stage."
    )
    notification_urgent_only: list[NotificationTrigger] = Field(
        default_factory=list,
        description="Triggers (reception, completion, error) that notify only for urgent tasks.",
    )

    @model_validator(mode="after")
    def _action_needs(self) -> Rule:
        if self.action in ("route", "both") and not self.targets:
            raise ValueError(f"action '{self.action}' needs at least one target")
        if self.action in ("process", "both") and not self.processing_module:
            raise ValueError(f"action '{self.action}' needs processing_module")
        return self


class TargetBase(StrictModel):
    """What every target type's configuration has; a plug-in's model derives from it.

    A subclass sets ``type: Literal["<its type>"]`` and ``plugin``, the ``"module:Class"`` of
    its :class:`~mercure.dispatcher.targets.base.TargetPlugin` (imported only when a task is
    sent or tested, so a type's library is loaded only where it is used). See docs/targets.md.
    """

    if TYPE_CHECKING:  # each type declares its own Literal; not a field of the base
        type: str
    plugin: ClassVar[str] = ""
    """``"package.module:Class"`` of the plug-in class that sends and tests."""
    comment: str = Field("", description="Free text for the administrators.")
    max_parallel_tasks: int = Field(2, ge=1, description="Tasks sent to this target at once.")


_TargetBase = TargetBase  # the name before target types became plug-ins

FILE_FILTER_DESCRIPTION = (
    "Files of the task not sent: comma-separated glob patterns matched against file names "
    "(mercure's meaning), e.g. `*.json,*.txt`; empty sends every file."
)


def _file_filter(value: str) -> str:
    """Comma-separated glob patterns, none empty."""
    patterns = [part.strip() for part in value.split(",")]
    if value.strip() and not all(patterns):
        raise ValueError("an empty pattern between commas: write e.g. `*.json,*.txt`")
    if any("/" in part for part in patterns):
        raise ValueError("patterns match file names, not paths: no '/' in them")
    return value.strip()


FileFilter = Annotated[str, AfterValidator(_file_filter)]


class DicomTarget(TargetBase):
    """A DICOM node reached by C-STORE."""

    plugin: ClassVar[str] = "mercure.dispatcher.targets.dicom:DicomPlugin"
    type: Literal["dicom"]
    host: str = Field(description="Host name or address; ignored with use_sender_address.")
    port: int = Field(104, ge=1, le=65535)
    aet_target: AETitle = Field("ANY-SCP", description="Called AE title.")
    aet_source: AETitle = Field("MERCURE", description="Calling AE title we present.")
    pass_sender_aet: bool = Field(
        False, description="Present the original sender's AE title as calling AE title."
    )
    pass_receiver_aet: bool = Field(
        False,
        description="Address the target with the AE title the series was sent to here "
        "(the receiver's called AE title) instead of aet_target, as mercure does.",
    )
    use_sender_address: bool = Field(False, description="Send back to the sender's address.")
    parallel_associations: int = Field(1, ge=1, le=16, description="Associations per task.")
    tls: TLSClientConfig | None = Field(None, description="Send over TLS.")


def _url_part(value: str | None) -> str | None:
    """A path part appended to the DICOMweb URL: no scheme, host, query or credentials."""
    if value is None or value.strip() == "":
        return None
    value = value.strip()
    if "://" in value or any(c in value for c in "?#@ ") or "\\" in value:
        raise ValueError("must be a plain URL path such as `rs` or `/dicom-web`")
    if any(part == ".." for part in value.split("/")):
        raise ValueError("must not climb out of the URL with '..'")
    return value


UrlPrefix = Annotated[str | None, AfterValidator(_url_part)]


class DicomWebTarget(TargetBase):
    """A DICOMweb server reached by STOW-RS."""

    plugin: ClassVar[str] = "mercure.dispatcher.targets.dicomweb:DicomWebPlugin"
    type: Literal["dicomweb"]
    url: DicomWebURL = Field(
        description="Base URL of the DICOMweb service (…/dicom-web); no credentials in it."
    )
    qido_url_prefix: UrlPrefix = Field(
        None,
        description="Path appended to url for QIDO-RS (the Test's query), as in mercure: "
        "`rs` makes `<url>/rs/studies`; empty uses url itself.",
    )
    wado_url_prefix: UrlPrefix = Field(
        None,
        description="Path appended to url for WADO-RS, as in mercure (kept for imported "
        "configurations: this target only stores, it never retrieves).",
    )
    stow_url_prefix: UrlPrefix = Field(
        None,
        description="Path appended to url for STOW-RS, as in mercure: `rs` stores to "
        "`<url>/rs/studies`; empty uses url itself.",
    )
    auth: Literal["none", "basic", "bearer"] = "none"
    username: str = ""
    password: SecretStr | None = None
    token: SecretStr | None = None
    batch_instances: int = Field(50, ge=1, description="Instances per STOW-RS request at most.")
    batch_megabytes: int = Field(64, ge=1, description="Megabytes per STOW-RS request at most.")
    verify_tls: bool = True
    ca_certificate: Path | None = None


class SftpTarget(TargetBase):
    """An SFTP server; each task goes into ``<folder>/<task_id>/`` with a `.complete` marker."""

    plugin: ClassVar[str] = "mercure.dispatcher.targets.sftp:SftpPlugin"
    type: Literal["sftp"]
    host: str
    port: int = Field(22, ge=1, le=65535)
    user: str
    password: SecretStr | None = None
    key_file: Path | None = None
    known_hosts: Path | None = Field(None, description="known_hosts file to verify the server.")
    folder: str = "."
    file_filter: FileFilter = Field("", description=FILE_FILTER_DESCRIPTION)


class S3Target(TargetBase):
    """An S3 bucket (or an S3-compatible store)."""

    plugin: ClassVar[str] = "mercure.dispatcher.targets.s3:S3Plugin"
    type: Literal["s3"]
    bucket: str
    prefix: str = ""
    region: str = "us-east-1"
    endpoint_url: S3EndpointURL | None = Field(
        None, description="For S3-compatible stores; no credentials in it."
    )
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None


class FolderTarget(TargetBase):
    """A folder; each task is copied (or hard-linked) into ``<folder>/<task_id>/``."""

    plugin: ClassVar[str] = "mercure.dispatcher.targets.folder:FolderPlugin"
    type: Literal["folder"]
    folder: Path = Field(
        description="Destination folder; a relative path is relative to the configuration file."
    )
    file_filter: FileFilter = Field("", description=FILE_FILTER_DESCRIPTION)


class RsyncTarget(TargetBase):
    """A folder on an SSH server, written with the rsync program; a folder per task."""

    plugin: ClassVar[str] = "mercure.dispatcher.targets.rsync:RsyncPlugin"
    type: Literal["rsync"]
    host: str = Field(description="SSH server.")
    port: int = Field(22, ge=1, le=65535, description="SSH port.")
    user: str = Field(description="Login on the server.")
    folder: str = Field(
        description="Folder on the server; each task goes into `<folder>/<task_id>/`."
    )
    password: SecretStr | None = Field(
        None,
        description="Password login (given to ssh through a private askpass file, never on a "
        "command line or in the environment); key_file is preferred.",
    )
    key_file: Path | None = Field(None, description="Private key for the login.")
    known_hosts: Path | None = Field(
        None,
        description="known_hosts file to verify the server; without it any key is accepted "
        "(a warning is logged), as the sftp target does.",
    )
    run_on_complete: bool = Field(
        False,
        description="After each task, run `<folder>/mercure_complete.sh <task folder> rsync` on "
        "the server (it must exist and be executable), as mercure does.",
    )
    file_filter: FileFilter = Field("", description=FILE_FILTER_DESCRIPTION)

    @model_validator(mode="after")
    def _one_login(self) -> RsyncTarget:
        if self.password is not None and self.key_file is not None:
            raise ValueError("give password or key_file, not both")
        return self


class XnatTarget(TargetBase):
    """An XNAT server: each task is uploaded as a zip through XNAT's image session import."""

    plugin: ClassVar[str] = "mercure.dispatcher.targets.xnat:XnatPlugin"
    type: Literal["xnat"]
    host: XnatURL = Field(description="Base URL of the XNAT server, e.g. https://xnat.example.org.")
    project_id: str = Field(min_length=1, description="XNAT project the sessions go into.")
    user: str = Field(description="XNAT login.")
    password: SecretStr | None = Field(None, description="Its password (use ${ENV}).")
    verify_tls: bool = Field(True, description="Verify the server's certificate.")
    ca_certificate: Path | None = Field(None, description="CA bundle for a private server.")


class DummyTarget(TargetBase):
    """Accepts every task and discards it (for trying rules without sending anything)."""

    plugin: ClassVar[str] = "mercure.dispatcher.targets.dummy:DummyPlugin"
    type: Literal["dummy"]


class _InstalledTargetTypes:
    """Validates a target as the installed type its ``type`` names (entry point group
    ``mercure.targets``, :mod:`mercure.core.config.targettypes`), read when first validated."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        from mercure.core.config.targettypes import installed_types

        models = tuple(kind.model for kind in installed_types().values())
        union: Any = models[0] if len(models) == 1 else Union[models]  # noqa: UP007
        return handler.generate_schema(Annotated[union, Field(discriminator="type")])


INSTALLED_TARGET_TYPES = _InstalledTargetTypes()
Target = Annotated[TargetBase, INSTALLED_TARGET_TYPES]
"""A target of any installed type, told apart by its ``type``."""


class DicomSource(StrictModel):
    """A DICOM node we query (C-FIND) and retrieve from (C-GET or C-MOVE), docs/retrieve.md."""

    type: Literal["dicom"]
    comment: str = Field("", description="Free text for the administrators.")
    host: str = Field(description="Host name or address of the PACS.")
    port: int = Field(104, ge=1, le=65535)
    aet_target: AETitle = Field(description="Called AE title (the PACS).")
    aet_source: AETitle = Field("MERCURE", description="Calling AE title we present.")
    tls: TLSClientConfig | None = Field(None, description="Query and retrieve over TLS.")
    retrieve_method: Literal["c-get", "c-move"] = Field(
        "c-get",
        description="C-GET: the instances come back on our own association. C-MOVE: the PACS "
        "sends them to move_destination, one of our listeners, which it must know by that AE "
        "title.",
    )
    move_destination: AETitle | None = Field(
        None,
        description="AE title the PACS sends to for C-MOVE; must be a listener's ae_title. "
        "Empty: the first listener's.",
    )
    max_associations: int = Field(
        2, ge=1, le=32, description="Associations to this source at once, over every job."
    )
    timeout: PositiveSeconds = Field(
        60.0,
        description="How long to wait for any answer of the PACS (connect, C-FIND, each "
        "C-GET/C-MOVE progress response) before the study counts as failed and is retried.",
    )


class DicomWebSource(StrictModel):
    """A DICOMweb server we query (QIDO-RS) and retrieve from (WADO-RS), docs/retrieve.md."""

    type: Literal["dicomweb"]
    comment: str = Field("", description="Free text for the administrators.")
    url: DicomWebURL = Field(
        description="Base URL of the DICOMweb service (…/dicom-web); no credentials in it."
    )
    qido_url_prefix: UrlPrefix = Field(
        None, description="Path appended to url for QIDO-RS: `rs` queries `<url>/rs/studies`."
    )
    wado_url_prefix: UrlPrefix = Field(
        None, description="Path appended to url for WADO-RS: `rs` retrieves `<url>/rs/studies`."
    )
    auth: Literal["none", "basic", "bearer"] = "none"
    username: str = ""
    password: SecretStr | None = None
    token: SecretStr | None = None
    verify_tls: bool = True
    ca_certificate: Path | None = None
    max_requests: int = Field(
        2, ge=1, le=32, description="Requests to this source at once, over every job."
    )
    timeout: PositiveSeconds = Field(
        60.0, description="How long to wait for any answer (or the next bytes of one)."
    )


Source = Annotated[DicomSource | DicomWebSource, Field(discriminator="type")]
"""A source to query and retrieve from, told apart by its ``type``."""


class RetrieveConfig(StrictModel):
    """How retrieve jobs behave (``mercure retrieve``, docs/retrieve.md)."""

    max_attempts: int = Field(
        5,
        ge=1,
        le=100,
        description="Tries per study (a failed or short retrieve counts as one) before the "
        "study is marked failed.",
    )
    retry_delay: PositiveSeconds = Field(
        60.0, description="Wait before a study's second try; doubled per try, at most an hour."
    )
    studies_in_parallel: int = Field(
        1,
        ge=1,
        le=32,
        description="Studies one job retrieves at once (the source's limit holds as well).",
    )


DEFAULT_WEBHOOK_BODY = """{
  "event": {{ event | tojson }},
  "rule": {{ rule | tojson }},
  "task_id": {{ task_id | tojson }},
  "text": {{ text | tojson }},
  "link": {{ link | tojson }}
}"""
DEFAULT_SUBJECT = "[mercure] {{ event }}: rule {{ rule }}"
DEFAULT_TEXT_BODY = """{{ text }}

Rule: {{ rule }}
Task: {{ task_id }}
{% if reason %}Reason: {{ reason }}
{% endif %}{% if details %}Details: {{ details }}
{% endif %}{% if link %}{{ link }}
{% endif %}"""


class _ChannelBase(StrictModel):
    include_phi: bool = Field(
        False,
        description="Give the templates the patient's name, ID and birth date, the accession "
        "number and the study and series UIDs; off, those fields are empty (notifications.md).",
    )
    timeout: PositiveSeconds = Field(30.0, description="Time allowed for one attempt.")
    comment: str = Field("", description="Free text for the administrators.")


WebhookURL = Annotated[SecretStr, AfterValidator(secret_http_url)]
"""A webhook address: chat services put their credential in the path, so it is a secret."""


class WebhookChannel(_ChannelBase):
    """An HTTP request per notification (Teams, Slack, Mattermost, a lab's own service)."""

    type: Literal["webhook"]
    url: WebhookURL = Field(description="http:// or https:// address (kept secret: use ${ENV}).")
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Extra request headers, e.g. Authorization (values kept secret; ${ENV}).",
    )
    content_type: str = Field("application/json", description="Content-Type of the body.")
    body: str = Field(DEFAULT_WEBHOOK_BODY, description="Jinja2 template of the request body.")
    hmac_secret: SecretStr | None = Field(
        None,
        description="Sign each request: HMAC-SHA256 of timestamp and body, sent in hmac_header.",
    )
    hmac_header: str = Field(
        "X-Mercure-Signature", description="Header carrying the signature (with hmac_secret)."
    )
    verify_tls: bool = Field(True, description="Verify the server's certificate.")
    ca_certificate: Path | None = Field(None, description="CA bundle for a private server.")


class EmailChannel(_ChannelBase):
    """An e-mail per notification, sent through an SMTP server."""

    type: Literal["email"]
    host: str = Field(description="SMTP server.")
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="STARTTLS on a plain port, TLS from the start (465), or none."
    )
    username: str = Field("", description="Login; empty for none.")
    password: SecretStr | None = None
    sender: str = Field(description="From address.")
    to: list[str] = Field(min_length=1, description="Recipients.")
    subject: str = Field(DEFAULT_SUBJECT, description="Jinja2 template of the subject line.")
    body: str = Field(DEFAULT_TEXT_BODY, description="Jinja2 template of the message.")
    html: bool = Field(False, description="The body is HTML (values are escaped).")
    verify_tls: bool = Field(True, description="Verify the server's certificate.")
    ca_certificate: Path | None = Field(None, description="CA bundle for a private server.")


class AppriseChannel(_ChannelBase):
    """Chat and push services through apprise URLs (slack://, msteams://, ntfy://, ...)."""

    type: Literal["apprise"]
    urls: list[SecretStr] = Field(
        min_length=1, description="apprise URLs (they hold credentials: use ${ENV})."
    )
    title: str = Field(DEFAULT_SUBJECT, description="Jinja2 template of the title.")
    body: str = Field(DEFAULT_TEXT_BODY, description="Jinja2 template of the message.")


Channel = Annotated[
    WebhookChannel | EmailChannel | AppriseChannel,
    Field(discriminator="type"),
]


class NotifierConfig(StrictModel):
    """`mercure notifier`: delivery of the notifications queued by the other services."""

    retry_period: Seconds = Field(
        86400.0,
        description="A notification is retried this long after it was queued, then recorded "
        "as failed.",
    )
    retry_base_delay: Seconds = Field(10.0, description="Delay before the first retry.")
    retry_max_delay: Seconds = Field(600.0, description="Cap of the doubling retry delay.")
    max_parallel: int = Field(4, ge=1, le=64, description="Notifications sent at once.")
    web_url: WebURL | None = Field(
        None,
        description="Address of the web interface as users reach it, for the links in "
        "notifications (e.g. https://mercure.example.org); no links when empty.",
    )


QueueName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
"""A work queue name (scale-out): lower case, digits, ``_`` and ``-``."""


class VolumeMount(StrictModel):
    """An extra read-only folder mounted into a module's container."""

    source: Path
    target: str


class _ModuleBase(StrictModel):
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Default settings; a rule's settings win."
    )
    settings_schema: dict[str, Any] | None = Field(
        None,
        description="A JSON Schema (draft 2020-12) the module's `settings` must satisfy; "
        "checked by check-config and on every save.",
    )
    environment: dict[str, str] = Field(default_factory=dict)
    timeout: Seconds = Field(3600.0, description="The module is stopped after this long.")
    comment: str = ""
    requires_persistence: bool = Field(
        False,
        description="Give the module a folder kept across tasks: "
        "`<processing.persistence_dir>/<module name>`, named by MODULE_PERSISTENCE_DIR.",
    )
    queue: QueueName = Field(
        "default",
        description="With scale_out on: the work queue its tasks go to, so that only workers "
        "started with `--queues` naming it (e.g. gpu, highmem) run it (docs/scale-out.md).",
    )


class DockerModule(_ModuleBase):
    """A processing module in a container, run through the Docker Engine API."""

    runner: Literal["docker"]
    image: str
    command: list[str] | None = Field(None, description="Overrides the image's command.")
    memory_limit_mb: int | None = Field(None, ge=16)
    cpu_limit: float | None = Field(None, gt=0)
    network: bool = Field(False, description="Give the container network access.")
    requires_root: bool = Field(False, description="Run as root (needs processing.allow_root).")
    gpu: bool = False
    volumes: list[VolumeMount] = Field(default_factory=list)
    docker_arguments: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra options of the container (mercure's `docker_arguments`): only "
        "`shm_size`, `ipc_mode` (none, private, shareable), `ulimits`, `pids_limit`, "
        "`mem_limit`, `memswap_limit`, `nano_cpus`, `cpu_shares`, `cpuset_cpus`, "
        "`working_dir`, `entrypoint`, `hostname`, `labels`, `init`, `stop_signal`, "
        "`runtime` and `device_requests`; anything that weakens confinement is refused.",
    )
    constraints: str = Field(
        "",
        description="mercure's Nomad placement constraints: not honoured here (one host); "
        "check-config warns when set.",
    )
    resources: str = Field(
        "",
        description="mercure's Nomad resources, e.g. `memory = 4096` and `cpu = 2000` (MHz; "
        "1000 = one core): honoured as memory and CPU limits when memory_limit_mb and "
        "cpu_limit are empty; other entries are reported by check-config as ignored.",
    )


class CommandModule(_ModuleBase):
    """A processing module that is a local executable."""

    runner: Literal["command"]
    command: list[str] = Field(min_length=1)


Module = Annotated[DockerModule | CommandModule, Field(discriminator="runner")]


class ProcessingConfig(StrictModel):
    """The processor."""

    max_parallel: int = Field(1, ge=1, description="Modules run at once.")
    allow_root: bool = Field(False, description="Allow modules with requires_root.")
    volume_root: Path | None = Field(None, description="Extra module volumes must lie under it.")
    docker_url: DockerURL | None = Field(
        None, description="Docker API URL; DOCKER_HOST when empty."
    )
    persistence_dir: Path | None = Field(
        None,
        description="Where modules with requires_persistence keep their folders "
        "(`<data_dir>/persistence` when empty).",
    )
    empty_output: Literal["complete", "error"] = Field(
        "complete",
        description="A module that ends well but writes nothing: the task completes (as "
        "mercure does; with nothing to send it ends in success/), or fails.",
    )


class DispatchConfig(StrictModel):
    """The dispatcher's retry policy and limits."""

    retry_attempts: int = Field(5, ge=1, description="Attempts per target before error/.")
    retry_base_delay: Seconds = Field(60.0, description="Delay before the first retry.")
    retry_max_delay: Seconds = Field(3600.0, description="Cap of the doubling retry delay.")
    retry_jitter: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Random part of each retry delay: a delay is drawn evenly between "
        "(1 - retry_jitter) and 1 times the doubled, capped delay, so that tasks that failed "
        "together do not retry together. 0: exact delays; 1: anywhere from 0.",
    )
    max_parallel_tasks: int = Field(4, ge=1, description="Tasks sent at once in total.")


BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps")


def _broker_url(value: str | None) -> str | None:
    """A Redis or RabbitMQ URL; its password is allowed (masked everywhere, like a database's)."""
    if value is None:
        return None
    scheme = value.partition("://")[0].lower()
    if "://" not in value or scheme not in BROKER_SCHEMES:
        raise ValueError("not a redis://, rediss://, amqp:// or amqps:// URL")
    return value


class ScaleOutConfig(StrictModel):
    """Scale-out: processing and dispatch through a broker to `mercure worker`s (scale-out.md).

    The workers run on any host that mounts the data folder. Off: one host, no broker."""

    engine: Literal["none", "celery"] = Field(
        "none",
        description="`celery`: the processor and dispatcher publish their tasks to the broker "
        "instead of running them; `mercure worker` runs them.",
    )
    broker: Annotated[str | None, AfterValidator(_broker_url)] = Field(
        None,
        description="Broker URL: `redis://host:6379/0` or `amqp://user:${BROKER_PASSWORD}@host:"
        "5672/vhost`; its password is masked in every log, event and answer.",
    )
    result_backend: Annotated[str | None, AfterValidator(_broker_url)] = Field(
        None,
        description="Celery result backend URL; not needed (the data folder holds every "
        "result), only for Celery's own tools.",
    )
    queue_prefix: QueueName = Field(
        "mercure", description="Prefix of the queue names: `<prefix>.<stage>.<queue>`."
    )
    visibility_timeout: PositiveSeconds = Field(
        3600.0,
        description="Redis only: a message taken by a worker that vanished is handed out again "
        "after this long. Longer than most jobs; a redelivery of a job still running is "
        "skipped (its claim is held).",
    )
    reconcile_interval: PositiveSeconds = Field(
        30.0,
        description="How often the publishing host compares the stage folders with the broker "
        "and republishes tasks whose message was lost.",
    )

    @model_validator(mode="after")
    def _broker_needed(self) -> ScaleOutConfig:
        if self.engine == "celery" and not self.broker:
            raise ValueError("engine 'celery' needs broker (a redis:// or amqp:// URL)")
        return self


class CleanerConfig(StrictModel):
    """Retention of finished tasks."""

    success_retention: Seconds = Field(3 * 86400.0, description="Age at which success/ goes.")
    discard_retention: Seconds = Field(3 * 86400.0, description="Age at which discard/ goes.")
    error_retention: Seconds = Field(14 * 86400.0, description="Age at which error/ goes.")
    window: TimeWindow | None = Field(
        None, description="When age-based cleaning runs; the off-peak window when empty."
    )
    disk_threshold_percent: float = Field(
        90.0, gt=0, le=100, description="Disk usage that starts deleting oldest retained data."
    )
    disk_margin_percent: float = Field(
        5.0, ge=0, lt=100, description="Delete until usage is this far below the threshold."
    )
    disk_pressure_deletes_errors: bool = Field(
        False, description="Under disk pressure, error/ may go too (after success, discard)."
    )
    interval: Seconds = Field(60.0, description="How often the cleaner looks.")


class BookkeeperConfig(StrictModel):
    """The monitoring database and its API."""

    host: str = Field("127.0.0.1", description="Address the bookkeeper listens on.")
    port: int = Field(8080, ge=1, le=65535)
    url: BookkeeperURL | None = Field(
        None, description="Where services reach it; http://host:port if empty."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL (postgresql+psycopg://…); SQLite in data_dir if empty."
    )
    api_key: SecretStr | None = Field(
        None,
        description="Key of the API (use ${ENV} rather than plain text); when empty, the key "
        "in data_dir/.secrets/bookkeeper.key, made by `mercure init` or the first service.",
    )
    previous_api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Keys the bookkeeper still accepts during a key rotation (see bookkeeper.md).",
    )
    max_request_mb: int = Field(
        4, ge=1, le=1024, description="Largest request body; senders split batches below it."
    )
    metrics_open: bool = Field(
        False, description="Serve /metrics without the key (only on a trusted network)."
    )
    retention: Seconds = Field(
        90 * 86400.0, description="Events and finished tasks kept this long."
    )

    def effective_url(self) -> str:
        """The base URL clients post to."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return self.url or f"http://{host}:{self.port}"


def _root_path(value: str) -> str:
    """``/mercure`` style: empty, or a leading slash and no trailing one."""
    if value in ("", "/"):
        return ""
    if not value.startswith("/") or value.endswith("/") or "//" in value:
        raise ValueError("must start with '/' and not end with '/', e.g. /mercure")
    if any(c.isspace() or c in "?#%\"'<>\\" for c in value):
        raise ValueError("may hold only a plain URL path, e.g. /mercure")
    return value


class WebGuiConfig(StrictModel):
    """The web interface (`mercure webgui`): overview, queues, search, logs, users."""

    host: str = Field(
        "127.0.0.1",
        description="Address the web interface listens on; the default serves this host only "
        "(use a reverse proxy or `0.0.0.0` with TLS to open it to the network).",
    )
    port: int = Field(8000, ge=1, le=65535, description="Its TCP port.")
    tls_certificate: Path | None = Field(
        None,
        description="PEM certificate (chain) for serving HTTPS directly; relative to the "
        "configuration file. Needs tls_key.",
    )
    tls_key: Path | None = Field(None, description="PEM private key of tls_certificate.")
    root_path: Annotated[str, AfterValidator(_root_path)] = Field(
        "",
        description="URL prefix when served behind a reverse proxy under a sub-path, e.g. "
        "`/mercure` (the proxy forwards `/mercure/...` unchanged); empty at the root.",
    )
    trusted_proxies: list[IPv4Network | IPv6Network] = Field(
        default_factory=list,
        description="Addresses (CIDR) of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto headers are believed (for the client address in the audit log and "
        "the sign-in throttle, and for HTTPS behind the proxy); empty trusts none.",
    )
    session_secret: SecretStr | None = Field(
        None,
        description="Key that signs the session cookies (use ${ENV}); when empty, the key in "
        "data_dir/.secrets/webgui.key, made at the first start.",
    )
    session_idle_timeout: PositiveSeconds = Field(
        1800.0,
        description="A session unused this long ends (the automatic refresh of an open page "
        "does not count as use).",
    )
    session_max_age: PositiveSeconds = Field(
        43200.0, description="A session ends this long after sign-in, however much it is used."
    )
    max_request_kb: int = Field(
        1024, ge=16, le=1 << 20, description="Largest request body accepted (KiB)."
    )
    upload_sender: Name | None = Field(
        None,
        description="The receiver.stow sender the Upload page stores as (its token is read "
        "from there); the page is off when empty.",
    )
    max_upload_mb: int = Field(
        1024, ge=1, description="Largest upload through the Upload page (MiB, all files)."
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> WebGuiConfig:
        if (self.tls_certificate is None) != (self.tls_key is None):
            raise ValueError("tls_certificate and tls_key go together: give both or neither")
        return self


class EventsConfig(StrictModel):
    """The durable outbox every service writes events to."""

    outbox_max_mb: int = Field(
        256, ge=1, description="Per service; past it the oldest events are dropped and counted."
    )
    fsync: bool = Field(False, description="fsync every event (survives power loss, slower).")


def _installed_service(name: str) -> str:
    """Refuse a name that is no service, or a service this version does not have."""
    installed = installed_services()
    if name not in SERVICE_NAMES:
        raise ValueError(f"unknown service {name!r}; the services are: {', '.join(installed)}")
    if name not in installed:
        raise ValueError(
            f"service {name!r} is not installed in this version; installed: {', '.join(installed)}"
        )
    return name


ServiceName = Annotated[str, AfterValidator(_installed_service)]


class SupervisorConfig(StrictModel):
    """`mercure run`: which services it starts, and how it watches them."""

    services: list[ServiceName] | None = Field(
        None,
        description="Services to start, of those installed in this version ("
        + ", ".join(installed_services())
        + "); every installed one when empty.",
    )
    heartbeat_interval: Seconds = Field(5.0, gt=0, description="How often services report.")
    restart_backoff_max: Seconds = Field(60.0, description="Longest wait before a restart.")
    stop_timeout: Seconds = Field(30.0, description="Time a service gets to stop cleanly.")


class MercureConfig(StrictModel):
    """The whole configuration of a mercure-router installation (`mercure.yaml`)."""

    # Built when first used, not on import: the target types are plug-ins whose models may
    # import this module (targettypes.reload() rebuilds it when the installed types change).
    model_config = ConfigDict(defer_build=True)

    data_dir: Path = Field(
        Path("data"), description="Root of the stage folders; relative to the config file."
    )
    appliance_name: str = Field("mercure", description="Name of this installation in events.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    receiver: ReceiverConfig = Field(default_factory=ReceiverConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    rules: dict[Name, Rule] = Field(default_factory=dict, description="Routing rules by name.")
    targets: dict[Name, Target] = Field(default_factory=dict, description="Targets by name.")
    modules: dict[Name, Module] = Field(default_factory=dict, description="Modules by name.")
    sources: dict[Name, Source] = Field(
        default_factory=dict, description="Query/retrieve sources by name (docs/retrieve.md)."
    )
    retrieve: RetrieveConfig = Field(default_factory=RetrieveConfig)
    notifications: dict[Name, Channel] = Field(
        default_factory=dict, description="Notification channels by name."
    )
    notifier: NotifierConfig = Field(default_factory=NotifierConfig)
    processing: ProcessingConfig = Field(default_factory=ProcessingConfig)
    dispatch: DispatchConfig = Field(default_factory=DispatchConfig)
    offpeak: TimeWindow = Field(
        default_factory=TimeWindow, description="Window for offpeak priority and cleaning."
    )
    cleaner: CleanerConfig = Field(default_factory=CleanerConfig)
    bookkeeper: BookkeeperConfig = Field(default_factory=BookkeeperConfig)
    webgui: WebGuiConfig = Field(default_factory=WebGuiConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    supervisor: SupervisorConfig = Field(default_factory=SupervisorConfig)
    scale_out: ScaleOutConfig = Field(default_factory=ScaleOutConfig)

    @model_validator(mode="after")
    def _upload_sender_known(self) -> MercureConfig:
        sender = self.webgui.upload_sender
        if sender is None:
            return self
        stow = self.receiver.stow
        if stow is None:
            raise ValueError(
                f"webgui.upload_sender {sender!r} needs receiver.stow (the STOW-RS endpoint)"
            )
        if sender not in stow.senders:
            raise ValueError(f"webgui.upload_sender {sender!r} is not one of receiver.stow.senders")
        return self
