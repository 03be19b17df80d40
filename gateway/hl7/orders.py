"""Reading orders and patient updates from HL7 v2 (pure, over hl7apy).

- ORM^O01 (HL7 2.3-2.5, IHE SWF RAD-2/RAD-4): ORC-1 order control, ORC-2/OBR-2 placer and ORC-3/OBR-3
  filler order numbers, OBR-4 requested procedure, OBR-18 accession number, OBR-19 requested procedure id,
  OBR-24 modality, ZDS-1 Study Instance UID.
- OMI^O23 (2.5+): the same ORC/OBR, and IPC-1 accession, IPC-2 requested procedure id, IPC-3 Study Instance
  UID, IPC-5 modality.
- ADT^A08 (update patient information) and ADT^A40 (merge patient: MRG-1 is the prior identifier).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message

from gateway.hl7.errors import Hl7Error
from gateway.hl7.escape import escape, unescape

SUPPORTED = {"ORM^O01", "OMI^O23", "ADT^A08", "ADT^A40", "ADT^A31"}


class UnsupportedMessage(Hl7Error):
    """A message type the listener does not take (answered AR)."""


@dataclass(frozen=True)
class PatientRef:
    patient_id: str
    issuer: str
    name: str | None = None
    birth_date: str | None = None
    sex: str | None = None


@dataclass(frozen=True)
class OrderData:
    patient: PatientRef
    order_control: str | None
    placer_number: str | None
    filler_number: str | None
    accession_number: str | None
    requested_procedure_id: str | None
    requested_procedure: str | None
    modality: str | None
    study_instance_uid: str | None


@dataclass(frozen=True)
class Inbound:
    message_type: str  # e.g. "ORM^O01"
    control_id: str
    sending_application: str
    sending_facility: str
    order: OrderData | None = None
    patient: PatientRef | None = None
    merged_from: PatientRef | None = None
    #: PV1 as far as the sender gave it (see :func:`visit_of`), for the ORU's PV1.
    visit: dict[str, Any] | None = None


#: PV1 fields kept: patient class (PV1-2), assigned location (PV1-3: point of care, room, bed, facility),
#: attending doctor (PV1-7: id, family, given), visit number (PV1-19).
_LOCATION_PARTS, _DOCTOR_PARTS = 4, 3


def visit_of(pv1: Any | None) -> dict[str, Any] | None:
    """What the order or ADT says about the visit (unescaped text), or None when it says nothing."""
    if pv1 is None:
        return None
    location = [_field(pv1, 3, k) for k in range(1, _LOCATION_PARTS + 1)]
    attending = [_field(pv1, 7, k) for k in range(1, _DOCTOR_PARTS + 1)]
    visit: dict[str, Any] = {
        "patient_class": _field(pv1, 2),
        "location": location if any(location) else [],
        "attending": attending if any(attending) else [],
        "visit_number": _field(pv1, 19, 1),
    }
    return {k: v for k, v in visit.items() if v} or None


def _segments(element: Any) -> Iterator[Any]:
    for child in element.children:
        if child.classname == "Segment":
            yield child
        elif child.classname == "Group":
            yield from _segments(child)


def _field(seg: Any | None, n: int, component: int | None = None) -> str:
    if seg is None:
        return ""
    try:
        value = str(getattr(seg, f"{seg.name.lower()}_{n}").to_er7())
    except (HL7apyException, AttributeError, IndexError):
        return ""
    value = value.split("~")[0]
    if component is not None:
        parts = value.split("^")
        value = parts[component - 1] if len(parts) >= component else ""
        value = value.split("&")[0]
    return unescape(value).strip()


def _patient(pid: Any | None, id_field: int = 3) -> PatientRef | None:
    if pid is None:
        return None
    pid_value = _field(pid, id_field, 1)
    if not pid_value:
        return None
    name = _field(pid, 5)
    return PatientRef(
        patient_id=pid_value,
        issuer=_field(pid, id_field, 4),
        name=name.replace("\\S\\", "^") or None,
        birth_date=_field(pid, 7)[:8] or None,
        sex=_field(pid, 8) or None,
    )


def parse_inbound(er7: str) -> Inbound:
    """Parse an order or patient update. Raises :class:`UnsupportedMessage` or :class:`Hl7Error`."""
    text = er7.replace("\n", "\r").strip("\r")
    if not text.startswith("MSH"):
        raise Hl7Error("not an HL7 v2 message (no MSH)")
    msh_fields = text.split("\r", 1)[0].split(text[3])
    if len(msh_fields) < 12:
        raise Hl7Error("MSH is incomplete")
    trigger = "^".join(msh_fields[8].split(text[4])[:2])
    if trigger not in SUPPORTED:
        raise UnsupportedMessage(f"message type {trigger} is not accepted here")
    try:
        msg = parse_message(text, find_groups=False, validation_level=VALIDATION_LEVEL.TOLERANT)
    except HL7apyException as exc:
        raise Hl7Error(f"cannot parse {trigger}: {exc}") from exc
    segs: dict[str, Any] = {}
    for seg in _segments(msg):
        segs.setdefault(seg.name, seg)
    control = msh_fields[9]
    app, facility = msh_fields[2].split(text[4])[0], msh_fields[3].split(text[4])[0]
    patient = _patient(segs.get("PID"))
    if trigger.startswith("ADT"):
        if patient is None:
            raise Hl7Error(f"{trigger} without PID-3")
        merged = _patient(segs.get("MRG"), 1) if trigger == "ADT^A40" else None
        if trigger == "ADT^A40" and merged is None:
            raise Hl7Error("ADT^A40 without MRG-1")
        return Inbound(
            trigger,
            control,
            app,
            facility,
            patient=patient,
            merged_from=merged,
            visit=visit_of(segs.get("PV1")),
        )
    orc, obr, ipc, zds = segs.get("ORC"), segs.get("OBR"), segs.get("IPC"), segs.get("ZDS")
    if obr is None and ipc is None:
        raise Hl7Error(f"{trigger} without OBR")
    if patient is None:
        raise Hl7Error(f"{trigger} without PID-3")
    accession = _field(ipc, 1) or _field(obr, 18)
    order = OrderData(
        patient=patient,
        order_control=_field(orc, 1) or None,
        placer_number=_field(orc, 2, 1) or _field(obr, 2, 1) or None,
        filler_number=_field(orc, 3, 1) or _field(obr, 3, 1) or None,
        accession_number=accession or None,
        requested_procedure_id=_field(ipc, 2) or _field(obr, 19) or None,
        requested_procedure=_field(obr, 4, 2) or _field(obr, 4, 1) or None,
        modality=_field(ipc, 5) or _field(obr, 24) or None,
        study_instance_uid=_field(ipc, 3) or _field(zds, 1, 1) or None,
    )
    return Inbound(
        trigger, control, app, facility, patient=patient, order=order, visit=visit_of(segs.get("PV1"))
    )


def build_ack(received: str, code: str, text: str = "", *, application: str = "GATEWAY") -> str:
    """A general acknowledgement (ACK) to ``received``: MSA-1 ``code``, MSA-2 its MSH-10, MSA-3 ``text``."""
    fields = received.replace("\n", "\r").split("\r", 1)[0].split("|")

    def get(n: int) -> str:
        return fields[n] if len(fields) > n else ""

    trigger = get(8).split("^")[1] if "^" in get(8) else ""
    ack = Message("ACK", version="2.5.1", validation_level=VALIDATION_LEVEL.TOLERANT)
    ack.msh.msh_3 = escape(application)
    if get(2):
        ack.msh.msh_5 = get(2)
    if get(3):
        ack.msh.msh_6 = get(3)
    ack.msh.msh_9 = f"ACK^{trigger}^ACK" if trigger else "ACK"
    ack.msh.msh_10 = f"{get(9)[:19]}A"
    ack.msh.msh_11 = get(10) or "P"
    ack.msh.msh_12 = "2.5.1"
    if get(17):
        ack.msh.msh_18 = get(17)
    ack.msa.msa_1 = code
    ack.msa.msa_2 = escape(get(9))
    if text:
        ack.msa.msa_3 = escape(text[:80])
    return str(ack.to_er7())
