"""The one typed settings object.

Settings are built and validated once at start-up and passed down; nothing else reads ``os.environ``.
Sources, from strongest to weakest:

1. command-line flags (passed in as keyword overrides),
2. ``GATEWAY_*`` environment variables (``GATEWAY_DICOM__MAX_ASSOCIATIONS`` reaches a nested field),
3. the TOML file given with ``--config``,
4. the defaults below.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gateway.auth.settings import AuthSettings
from gateway.delivery.settings import DeliverySettings
from gateway.dicomweb.settings import DicomwebSettings
from gateway.fhir.settings import FhirSettings
from gateway.findings.settings import FindingsSettings
from gateway.reading.settings import ReadingSettings
from gateway.ui.settings import UiSettings

_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 6.2: AE, 16 chars, no backslash


def _check_ae_title(value: str) -> str:
    if not _AE_TITLE.match(value) or not value.strip():
        raise ValueError(f"invalid AE title {value!r}: 1-16 printable characters, no backslash")
    return value.strip()


class Section(BaseModel):
    """A settings section: an unknown key is an error, not a silently ignored typo."""

    model_config = ConfigDict(extra="forbid")


class Peer(Section):
    """A calling AE title allowed to associate, optionally only from given hosts."""

    ae_title: str
    hosts: list[str] = Field(default_factory=list, description="IP addresses or networks; empty = any host")
    port: int | None = Field(default=None, description="its SCP port, for Storage Commitment replies")
    waits_for_commitment: bool = Field(
        default=False,
        description=(
            "it keeps its association open after a Storage Commitment N-ACTION until the N-EVENT-REPORT "
            "arrives (pynetdicom SCUs, dcm4che stgcmtscu); Orthanc does not, it needs `port`"
        ),
    )

    @field_validator("ae_title")
    @classmethod
    def _ae(cls, value: str) -> str:
        return _check_ae_title(value)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for host in value:
            ipaddress.ip_network(host, strict=False)
        return value

    def allows_host(self, address: str) -> bool:
        if not self.hosts:
            return True
        ip = ipaddress.ip_address(address)
        return any(ip in ipaddress.ip_network(h, strict=False) for h in self.hosts)


class TlsSettings(Section):
    """DICOM TLS (PS3.15 B.1). With ``require_client_cert`` the peer must present a cert signed by ``ca``."""

    enabled: bool = False
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    require_client_cert: bool = False

    @model_validator(mode="after")
    def _complete(self) -> TlsSettings:
        if self.enabled and (self.cert is None or self.key is None):
            raise ValueError("dicom.tls.enabled needs dicom.tls.cert and dicom.tls.key")
        if self.require_client_cert and self.ca is None:
            raise ValueError("dicom.tls.require_client_cert needs dicom.tls.ca")
        return self


DuplicatePolicy = Literal["keep-first", "overwrite", "reject-different"]


class DicomSettings(Section):
    bind: str = "0.0.0.0"  # noqa: S104 - a DICOM SCP serves the hospital network
    peers: list[Peer] = Field(default_factory=list)
    max_associations: int = Field(default=16, ge=1)
    max_instance_bytes: int = Field(default=2 * 1024**3, ge=1024)
    min_free_bytes: int = Field(default=256 * 1024**2, ge=0, description="refuse with 0xA700 below this")
    duplicate_policy: DuplicatePolicy = "reject-different"
    fsync: bool = True
    processes: int = Field(
        default=1, ge=1, le=64, description="SCP processes sharing the port (SO_REUSEPORT)"
    )
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0
    artim_timeout: float = Field(
        default=10.0, gt=0, description="seconds a connection may stay unassociated (PS3.8 9.1.5 ARTIM)"
    )
    max_pending: int = Field(default=64, ge=1, description="connections that have not yet associated")
    max_pending_per_address: int = Field(default=4, ge=1, description="the same, from one source address")
    max_pdu_bytes: int = Field(
        default=4 * 1024**2, ge=4096, description="maximum PDU length we announce and accept"
    )
    index_busy_timeout: float = Field(
        default=10.0, gt=0, description="seconds a C-STORE waits for a busy index before 0xA700"
    )
    dul_idle_sleep: float = Field(
        default=0.001,
        gt=0,
        le=0.1,
        description="with dul_wakeup = poll: seconds pynetdicom's DUL thread sleeps on an idle socket",
    )
    dul_wakeup: Literal["event", "poll"] = Field(
        default="event",
        description="event: the DUL thread waits in select() for the socket or a response to send; "
        "poll: pynetdicom's own loop, sleeping dul_idle_sleep when idle",
    )
    group_commit_window: float = Field(
        default=0.0,
        ge=0,
        le=0.05,
        description="seconds a group commit waits for more C-STOREs to join it (0: groups form on their own)",
    )
    context_mismatch: Literal["refuse", "accept"] = Field(
        default="refuse", description="a data set whose SOP class is not its presentation context's"
    )
    max_associate_rq_bytes: int = Field(default=256 * 1024, ge=4096, description="largest A-ASSOCIATE-RQ")
    tls: TlsSettings = Field(default_factory=TlsSettings)


class ImagingSettings(Section):
    max_pixels: int = Field(
        default=64_000_000,
        ge=10_000,
        description="largest frame (rows x columns) decoded at full size, checked before decoding: by "
        "/images and DICOMweb rendering, the extract and align stages, and (unless reading.max_image_pixels "
        "is set) the report reader; a larger baseline JPEG is decoded reduced, anything else refused",
    )


class PipelineSettings(Section):
    lease_seconds: float = Field(default=120.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    backoff_base: float = Field(default=2.0, gt=0, description="seconds before the first retry")
    backoff_max: float = Field(default=600.0, gt=0)
    poll_interval: float = Field(default=0.5, gt=0)
    worker_threads: int = Field(default=1, ge=1)
    inference_url: str | None = Field(default=None, description="remote inference service; None = in-process")


class HttpSettings(Section):
    host: str = "127.0.0.1"
    public_base_url: str | None = Field(default=None, description="base URL that links in FHIR resources use")
    cors_origins: list[str] = Field(
        default_factory=list, description="browser origins allowed to call /fhir (CORS); none by default"
    )


class LogSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = False


class Settings(BaseSettings):
    """Everything the gateway can be told, validated once at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Path("data")
    dicom_port: int = Field(default=11112, ge=0, le=65535)
    http_port: int = Field(default=8080, ge=0, le=65535)
    ae_title: str = "GATEWAY"
    stable_age: float = Field(default=60.0, gt=0)
    api_token: SecretStr | None = None
    database_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL; None = SQLite (WAL) in the data directory"
    )

    dicom: DicomSettings = Field(default_factory=DicomSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    reading: ReadingSettings = Field(default_factory=ReadingSettings)
    imaging: ImagingSettings = Field(default_factory=ImagingSettings)
    findings: FindingsSettings = Field(default_factory=FindingsSettings)
    fhir: FhirSettings = Field(default_factory=FhirSettings)
    dicomweb: DicomwebSettings = Field(default_factory=DicomwebSettings)
    ui: UiSettings = Field(default_factory=UiSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)

    @field_validator("ae_title")
    @classmethod
    def _ae(cls, value: str) -> str:
        return _check_ae_title(value)

    @model_validator(mode="after")
    def _one_pixel_limit(self) -> Settings:
        # One pixel limit for the whole gateway: the reader follows imaging.max_pixels unless told otherwise.
        if "max_image_pixels" not in self.reading.model_fields_set:
            self.reading.max_image_pixels = self.imaging.max_pixels
        return self

    @property
    def index_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'index.sqlite3').resolve()}"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "instances"

    @property
    def artifact_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @classmethod
    def load(cls, config: Path | None = None, **overrides: Any) -> Settings:
        """Build settings from flags (``overrides``), environment, and the TOML file ``config``."""
        if config is not None and not config.is_file():
            raise FileNotFoundError(f"config file not found: {config}")

        class _FromFile(cls):  # type: ignore[valid-type,misc]
            @classmethod
            def settings_customise_sources(
                cls,
                settings_cls: type[BaseSettings],
                init_settings: PydanticBaseSettingsSource,
                env_settings: PydanticBaseSettingsSource,
                dotenv_settings: PydanticBaseSettingsSource,
                file_secret_settings: PydanticBaseSettingsSource,
            ) -> tuple[PydanticBaseSettingsSource, ...]:
                sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
                if config is not None:
                    sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config))
                return tuple(sources)

        flags = {k: v for k, v in overrides.items() if v is not None}
        built = _FromFile(**flags)
        return cls.model_validate(built.model_dump())

    def effective(self) -> dict[str, Any]:
        """The settings as plain data with secrets masked, for ``gateway config check``."""
        data: dict[str, Any] = json.loads(self.model_dump_json())
        if self.database_url is not None:
            data["database_url"] = _mask_url(self.database_url.get_secret_value())
        data["index_url"] = _mask_url(self.index_url)
        return data


def _mask_url(url: str) -> str:
    masked = re.sub(r"(://[^:/@]+:)[^@]*@", r"\1**********@", url)
    return re.sub(r"([?&](?:password|passwd|pwd)=)[^&]*", r"\1**********", masked, flags=re.IGNORECASE)
