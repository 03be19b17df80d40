"""Settings of outgoing delivery (the ``[delivery]`` section): the outbox and its destinations."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

Hl7Charset = Literal["UNICODE UTF-8", "8859/1", "ASCII"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MllpTls(_Section):
    """TLS for an outgoing connection (MLLP or DICOM).

    ``ca`` verifies the receiver; ``cert`` and ``key`` present our identity.
    """

    enabled: bool = False
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_hostname: str | None = Field(default=None, description="name checked in the receiver's cert")

    @model_validator(mode="after")
    def _pair(self) -> MllpTls:
        if (self.cert is None) != (self.key is None):
            raise ValueError("mllp tls: cert and key go together")
        return self


class Hl7Destination(_Section):
    """An HL7 v2 receiver (an EMR or RIS interface engine) that takes ORU^R01 over MLLP."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    host: str
    port: int = Field(ge=1, le=65535)
    tls: MllpTls = Field(default_factory=MllpTls)
    charset: Hl7Charset = Field(
        default="UNICODE UTF-8", description="MSH-18; the bytes on the wire follow it"
    )
    text_type: Literal["TX", "FT"] = "TX"
    include_pdf: bool = Field(default=False, description="an OBX of type ED with the report PDF in Base64")
    image_links: Literal["wado-rs", "uid", "none"] = Field(
        default="wado-rs",
        description="OBX RP per linked image: a rendered-image URL, or the SOP Instance UID",
    )
    wado_base_url: str | None = Field(
        default=None, description="DICOMweb base for wado-rs links; None = the gateway's own image URLs"
    )
    sending_application: str = "GATEWAY"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    processing_id: Literal["P", "D", "T"] = "P"
    connect_timeout: float = Field(default=10.0, gt=0)
    ack_timeout: float = Field(default=30.0, gt=0)


class FhirDestination(_Section):
    """A FHIR server that receives each published report as one transaction Bundle (IHE IMR RAD-141 style)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    base_url: str = Field(description="the server's base; the Bundle is POSTed to it")
    token: SecretStr | None = Field(default=None, description="bearer token sent as Authorization")
    ca: Path | None = Field(default=None, description="CA bundle for https; None = the system's")
    timeout: float = Field(default=30.0, gt=0)


class PacsDestination(_Section):
    """A PACS that receives the SR and the KOS of each published report with C-STORE."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    ae_title: str = Field(min_length=1, max_length=16)
    host: str
    port: int = Field(ge=1, le=65535)
    tls: MllpTls = Field(default_factory=MllpTls)
    timeout: float = Field(default=30.0, gt=0)
    rendition_pdf: bool = Field(
        default=False, description="also send the report's HTML rendition as an Encapsulated PDF"
    )


class ListenerTls(_Section):
    """TLS for the order listener: ``cert``/``key`` are ours; ``ca`` verifies senders' certificates."""

    enabled: bool = False
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    require_client_cert: bool = Field(default=False, description="refuse a sender without a certificate")

    @model_validator(mode="after")
    def _complete(self) -> ListenerTls:
        if self.enabled and (self.cert is None or self.key is None):
            raise ValueError("orders tls: cert and key are required when enabled")
        if self.require_client_cert and self.ca is None:
            raise ValueError("orders tls: require_client_cert needs ca to verify senders")
        return self


class OrdersListener(_Section):
    """The MLLP listener for orders (ORM^O01, OMI^O23) and patient updates (ADT^A08, ADT^A40)."""

    enabled: bool = False
    bind: str = "127.0.0.1"
    port: int = Field(default=2575, ge=0, le=65535)
    read_timeout: float = Field(default=300.0, gt=0, description="an idle connection is closed after this")
    tls: ListenerTls = Field(default_factory=ListenerTls)


class DeliverySettings(_Section):
    enabled: bool = Field(default=True, description="run the outbox worker in `serve` and `worker`")
    max_attempts: int = Field(default=10, ge=1)
    backoff_base: float = Field(default=5.0, gt=0, description="seconds before the first retry")
    backoff_max: float = Field(default=900.0, gt=0)
    lease_seconds: float = Field(default=60.0, gt=0, description="a claim older than this is taken over")
    poll_interval: float = Field(default=0.5, gt=0)
    hl7: list[Hl7Destination] = Field(default_factory=list)
    fhir: list[FhirDestination] = Field(default_factory=list)
    pacs: list[PacsDestination] = Field(default_factory=list)
    orders: OrdersListener = Field(default_factory=OrdersListener)

    @model_validator(mode="after")
    def _unique(self) -> DeliverySettings:
        names = [d.name for d in self.hl7] + [d.name for d in self.fhir] + [d.name for d in self.pacs]
        if len(names) != len(set(names)):
            raise ValueError("delivery destination names must be unique")
        return self
