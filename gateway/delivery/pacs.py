"""Channel ``pacs``: results back to the PACS with C-STORE, as a Basic Text SR and a Key Object Selection.

Building both objects is pure (:func:`build_sr`, :func:`build_kos`: FHIR resources of the publication in,
pydicom Datasets out); they are stored as Part-10 bytes in the outbox row and sent by :class:`PacsSender`.

- Basic Text SR (PS3.3 A.35.1) after TID 2000: root CONTAINER 18748-4 "Diagnostic imaging report"; a
  CONTAINER 121070 Findings with TEXT 121071 Finding per sentence, each INFERRED FROM the IMAGE items of its
  linked instances; a CONTAINER 121072 Impressions with TEXT 121073 Impression; the referenced instances in
  CurrentRequestedProcedureEvidenceSequence. A machine draft (report status preliminary) has the device as
  observer (TID 1004: 121005 Observer Type = Device, 121012 Device Observer UID, 121013 name), Preliminary
  Flag PRELIMINARY, Completion Flag PARTIAL and Verification Flag UNVERIFIED.
- Key Object Selection (PS3.3 A.35.4, TID 2010): title 113000 "Of Interest", one IMAGE item per linked image.
- Optionally (``pacs[].rendition_pdf``), the report's HTML rendition laid out as a PDF
  (:func:`gateway.delivery.rendition.html_to_pdf`) in an Encapsulated PDF (PS3.3 A.45.1), for viewers that
  show PDF reports.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian
from pynetdicom import AE
from sqlalchemy.orm import Session

from gateway.delivery import outbox
from gateway.delivery.errors import DeliveryError, PermanentDeliveryError
from gateway.delivery.settings import PacsDestination

KIND = "pacs"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
_FINDINGS, _IMPRESSION = "59776-5", "19005-8"
_SEX = {"male": "M", "female": "F", "other": "O"}
# A UID root under 2.25 (UUID-derived) keeps our objects' UIDs stable: same report version, same UIDs.
_ROOT = "2.25."


def _uid(*parts: str) -> str:
    return _ROOT + str(uuid.uuid5(uuid.NAMESPACE_OID, "\x1f".join(parts)).int)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    ds = Dataset()
    ds.CodeValue = value
    ds.CodingSchemeDesignator = scheme
    ds.CodeMeaning = meaning
    return ds


def _item(relationship: str, value_type: str, concept: Dataset | None = None) -> Dataset:
    ds = Dataset()
    ds.RelationshipType = relationship
    ds.ValueType = value_type
    if concept is not None:
        ds.ConceptNameCodeSequence = DicomSequence([concept])
    return ds


def _text(relationship: str, concept: Dataset, text: str) -> Dataset:
    ds = _item(relationship, "TEXT", concept)
    ds.TextValue = (
        text[:1024]
        if len(text.encode("utf-8")) <= 1024
        else text.encode("utf-8")[:1020].decode("utf-8", "ignore")
    )
    return ds


def _image(relationship: str, sop_class: str, sop_uid: str) -> Dataset:
    ds = _item(relationship, "IMAGE")
    ref = Dataset()
    ref.ReferencedSOPClassUID = sop_class
    ref.ReferencedSOPInstanceUID = sop_uid
    ds.ReferencedSOPSequence = DicomSequence([ref])
    return ds


@dataclass(frozen=True)
class _Context:
    report: dict[str, Any]
    patient: dict[str, Any]
    study_uid: str
    accession: str
    instances: dict[str, tuple[str, str]]  # SOP Instance UID → (series UID, SOP class UID)
    sentences: list[tuple[str, str, list[str]]]  # (section code, text, linked SOP UIDs)
    devices: list[tuple[str, str]]  # (name, version)


def _context(resources: Sequence[dict[str, Any]]) -> _Context:
    by_ref = {f"{r['resourceType']}/{r['id']}": r for r in resources}
    report = next((r for r in resources if r["resourceType"] == "DiagnosticReport"), None)
    if report is None:
        raise PermanentDeliveryError("the publication has no DiagnosticReport")
    patient = by_ref.get(str((report.get("subject") or {}).get("reference")), {})
    study = next((by_ref.get(str(s.get("reference"))) for s in report.get("imagingStudy", [])), None) or {}
    study_uid = next(
        (str(i["value"])[8:] for i in study.get("identifier", []) if i.get("system") == "urn:dicom:uid"), ""
    )
    if not study_uid:
        raise PermanentDeliveryError("the report's ImagingStudy has no Study Instance UID")
    instances = {
        str(inst["uid"]): (
            str(series["uid"]),
            str((inst.get("sopClass") or {}).get("code", "")).removeprefix("urn:oid:"),
        )
        for series in study.get("series", [])
        for inst in series.get("instance", [])
    }
    accession = next(
        (
            str(i.get("value"))
            for i in report.get("identifier", [])
            if any(c.get("code") == "ACSN" for c in (i.get("type") or {}).get("coding", []))
        ),
        "",
    )
    sentences = []
    for ref in report.get("result", []):
        obs = by_ref.get(str(ref.get("reference")))
        if obs is None or obs.get("resourceType") != "Observation":
            continue
        code = next((c.get("code") for c in (obs.get("code") or {}).get("coding", [])), _FINDINGS)
        linked = []
        for derived in obs.get("derivedFrom", []):
            media = by_ref.get(str(derived.get("reference")), {})
            for ident in media.get("identifier", []):
                uid = str(ident.get("value", "")).removeprefix("urn:oid:")
                if ident.get("system") == "urn:dicom:uid" and uid in instances:
                    linked.append(uid)
        sentences.append(
            (str(code), str(obs.get("valueString") or (obs.get("code") or {}).get("text") or ""), linked)
        )
    devices = []
    for prov in (r for r in resources if r["resourceType"] == "Provenance"):
        for agent in prov.get("agent", []):
            dev = by_ref.get(str((agent.get("who") or {}).get("reference")), {})
            if dev.get("resourceType") == "Device":
                name = next((n.get("name") for n in dev.get("deviceName", [])), "device")
                version = next((v.get("value") for v in dev.get("version", [])), "")
                devices.append((str(name), str(version)))
    return _Context(report, patient, study_uid, accession, instances, sentences, devices)


def _common(
    ds: Dataset,
    ctx: _Context,
    sop_class: str,
    sop_uid: str,
    series_uid: str,
    modality: str,
    when: dt.datetime,
) -> None:
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = when.strftime("%Y%m%d")
    ds.InstanceCreationTime = when.strftime("%H%M%S")
    # Patient and General Study modules: as the PACS has them (from the FHIR side of the same study).
    ident = next((i.get("value") for i in ctx.patient.get("identifier", [])), "")
    name = (ctx.patient.get("name") or [{}])[0]
    ds.PatientName = "^".join([name.get("family", ""), *name.get("given", [])[:1]]) if name else ""
    ds.PatientID = str(ident or "")
    ds.PatientBirthDate = str(ctx.patient.get("birthDate", "")).replace("-", "")
    ds.PatientSex = _SEX.get(str(ctx.patient.get("gender")), "")
    ds.StudyInstanceUID = ctx.study_uid
    effective = str(ctx.report.get("effectiveDateTime", ""))[:10].replace("-", "")
    ds.StudyDate = effective
    ds.StudyTime = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = ctx.accession
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = {"SR": 9901, "KO": 9902}.get(modality, 9903)
    ds.ReferencedPerformedProcedureStepSequence = DicomSequence([])
    ds.Manufacturer = "gateway"
    ds.InstanceNumber = 1
    ds.ContentDate = when.strftime("%Y%m%d")
    ds.ContentTime = when.strftime("%H%M%S")


def _evidence(ctx: _Context, uids: Sequence[str]) -> DicomSequence:
    by_series: dict[str, list[Dataset]] = {}
    for uid in dict.fromkeys(uids):
        series_uid, sop_class = ctx.instances[uid]
        ref = Dataset()
        ref.ReferencedSOPClassUID = sop_class
        ref.ReferencedSOPInstanceUID = uid
        by_series.setdefault(series_uid, []).append(ref)
    series_items = []
    for series_uid, refs in by_series.items():
        item = Dataset()
        item.SeriesInstanceUID = series_uid
        item.ReferencedSOPSequence = DicomSequence(refs)
        series_items.append(item)
    study = Dataset()
    study.StudyInstanceUID = ctx.study_uid
    study.ReferencedSeriesSequence = DicomSequence(series_items)
    return DicomSequence([study])


def _when(ctx: _Context) -> dt.datetime:
    stamp = str((ctx.report.get("meta") or {}).get("lastUpdated") or ctx.report.get("issued") or "")
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def build_sr(resources: Sequence[dict[str, Any]], version: str) -> Dataset:
    """The Basic Text SR of the publication's report (pure; UIDs stable per report version)."""
    ctx = _context(resources)
    when = _when(ctx)
    ds = Dataset()
    sop_uid = _uid("sr", ctx.report["id"], version)
    _common(ds, ctx, BASIC_TEXT_SR, sop_uid, _uid("sr-series", ctx.study_uid), "SR", when)
    preliminary = ctx.report.get("status") in ("preliminary", "partial", "registered")
    ds.CompletionFlag = "PARTIAL" if preliminary else "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    if preliminary:
        ds.PreliminaryFlag = "PRELIMINARY"
    ds.PerformedProcedureCodeSequence = DicomSequence([])
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = DicomSequence([_code("18748-4", "LN", "Diagnostic Imaging Report")])
    ds.ContinuityOfContent = "SEPARATE"
    template = Dataset()
    template.MappingResource = "DCMR"
    template.TemplateIdentifier = "2000"
    ds.ContentTemplateSequence = DicomSequence([template])
    content: list[Dataset] = []
    if preliminary and ctx.devices:
        name, version_text = ctx.devices[0]
        observer = _item("HAS OBS CONTEXT", "CODE", _code("121005", "DCM", "Observer Type"))
        observer.ConceptCodeSequence = DicomSequence([_code("121007", "DCM", "Device")])
        device_uid = _item("HAS OBS CONTEXT", "UIDREF", _code("121012", "DCM", "Device Observer UID"))
        device_uid.UID = _uid("device", name, version_text)
        content += [
            observer,
            device_uid,
            _text(
                "HAS OBS CONTEXT",
                _code("121013", "DCM", "Device Observer Name"),
                f"{name} {version_text}".strip(),
            ),
        ]
    sections = {
        _FINDINGS: ("121070", "Findings", "121071", "Finding"),
        _IMPRESSION: ("121072", "Impressions", "121073", "Impression"),
    }
    linked: list[str] = []
    for code, (cval, cmeaning, tval, tmeaning) in sections.items():
        items = []
        for section, text, uids in ctx.sentences:
            if (section if section in sections else _FINDINGS) != code or not text:
                continue
            sentence = _text("CONTAINS", _code(tval, "DCM", tmeaning), text)
            refs = [_image("INFERRED FROM", ctx.instances[u][1], u) for u in uids]
            if refs:
                sentence.ContentSequence = DicomSequence(refs)
            linked += uids
            items.append(sentence)
        if items:
            container = _item("CONTAINS", "CONTAINER", _code(cval, "DCM", cmeaning))
            container.ContinuityOfContent = "SEPARATE"
            container.ContentSequence = DicomSequence(items)
            content.append(container)
    ds.ContentSequence = DicomSequence(content)
    if linked:
        ds.CurrentRequestedProcedureEvidenceSequence = _evidence(ctx, linked)
    return ds


def build_kos(resources: Sequence[dict[str, Any]], version: str) -> Dataset | None:
    """The Key Object Selection of the report's linked images, or None when nothing is linked (pure)."""
    ctx = _context(resources)
    uids = list(dict.fromkeys(u for _, _, linked in ctx.sentences for u in linked))
    if not uids:
        return None
    ds = Dataset()
    _common(
        ds,
        ctx,
        KEY_OBJECT_SELECTION,
        _uid("kos", ctx.report["id"], version),
        _uid("kos-series", ctx.study_uid),
        "KO",
        _when(ctx),
    )
    ds.CurrentRequestedProcedureEvidenceSequence = _evidence(ctx, uids)
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = DicomSequence([_code("113000", "DCM", "Of Interest")])
    ds.ContinuityOfContent = "SEPARATE"
    template = Dataset()
    template.MappingResource = "DCMR"
    template.TemplateIdentifier = "2010"
    ds.ContentTemplateSequence = DicomSequence([template])
    ds.ContentSequence = DicomSequence([_image("CONTAINS", ctx.instances[u][1], u) for u in uids])
    return ds


def build_pdf(resources: Sequence[dict[str, Any]], version: str) -> Dataset | None:
    """The Encapsulated PDF of the report's HTML rendition, or None when it has none (pure)."""
    from gateway.delivery.rendition import html_to_pdf

    ctx = _context(resources)
    form = next(
        (
            f
            for f in ctx.report.get("presentedForm", [])
            if f.get("contentType") == "text/html" and f.get("data")
        ),
        None,
    )
    if form is None:
        return None
    title = str(form.get("title") or "Radiology report")[:64]
    pdf = html_to_pdf(base64.b64decode(form["data"]), title)
    when = _when(ctx)
    ds = Dataset()
    _common(
        ds,
        ctx,
        ENCAPSULATED_PDF,
        _uid("pdf", ctx.report["id"], version),
        _uid("pdf-series", ctx.study_uid),
        "DOC",
        when,
    )
    del ds.ReferencedPerformedProcedureStepSequence  # type 3 here, and then one item or none (A.45.1)
    ds.ConversionType = "WSD"  # SC Equipment: made by a workstation
    ds.AcquisitionDateTime = when.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"  # the report names the patient
    ds.DocumentTitle = title
    ds.ConceptNameCodeSequence = DicomSequence([_code("18748-4", "LN", "Diagnostic Imaging Report")])
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + b"\x00" if len(pdf) % 2 else pdf
    ds.EncapsulatedDocumentLength = len(pdf)
    if ctx.report.get("status") in ("preliminary", "partial", "registered"):
        ds.DocumentTitle = f"PRELIMINARY {title}"[:64]
    return ds


def part10(ds: Dataset) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(ds.SOPClassUID)
    meta.MediaStorageSOPInstanceUID = UID(ds.SOPInstanceUID)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def enqueue_report(
    session: Session,
    destinations: Sequence[PacsDestination],
    *,
    study_fk: int,
    resources: Sequence[dict[str, Any]],
) -> int:
    report = next((r for r in resources if r["resourceType"] == "DiagnosticReport"), None)
    if report is None or not destinations:
        return 0
    version = str((report.get("meta") or {}).get("versionId", "1"))
    try:
        objects = [("sr", build_sr(resources, version)), ("kos", build_kos(resources, version))]
        if any(d.rendition_pdf for d in destinations):
            objects.append(("pdf", build_pdf(resources, version)))
        built = [
            (name, base64.b64encode(part10(ds)).decode("ascii")) for name, ds in objects if ds is not None
        ]
        dead = None
    except PermanentDeliveryError as exc:
        built, dead = [("sr", "")], f"cannot build the SR: {exc}"
    order_key = str((report.get("subject") or {}).get("reference", ""))
    queued = 0
    for dest in destinations:
        for name, data in built:
            if name == "pdf" and not dest.rendition_pdf:
                continue
            outbox.enqueue(
                session,
                study_fk=study_fk,
                destination=dest.name,
                kind=KIND,
                message_id=outbox.message_id(KIND, dest.name, name, report["id"], version),
                payload={"object": name, "dicom": data},
                order_key=order_key,
                dead_reason=dead,
            )
            queued += 1
    return queued


class PacsSender:
    """C-STORE of stored objects to each configured PACS (optionally over TLS)."""

    def __init__(self, destinations: Sequence[PacsDestination], calling_ae: str) -> None:
        self._destinations = {d.name: d for d in destinations}
        self._calling_ae = calling_ae

    def send(self, destination: str, message_id: str, payload: dict[str, Any]) -> None:
        import ssl

        import pydicom

        dest = self._destinations.get(destination)
        if dest is None:
            raise PermanentDeliveryError(f"PACS destination {destination!r} is not configured")
        ds = pydicom.dcmread(io.BytesIO(base64.b64decode(payload["dicom"])))
        ae = AE(ae_title=self._calling_ae)
        ae.add_requested_context(ds.SOPClassUID, ExplicitVRLittleEndian)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = dest.timeout
        tls_args = None
        if dest.tls.enabled:
            context = ssl.create_default_context(cafile=str(dest.tls.ca) if dest.tls.ca else None)
            if dest.tls.cert is not None and dest.tls.key is not None:
                context.load_cert_chain(str(dest.tls.cert), str(dest.tls.key))
            tls_args = (context, dest.tls.server_hostname or dest.host)
        assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, tls_args=tls_args)
        if not assoc.is_established:
            raise DeliveryError(f"could not associate with {dest.ae_title} at {dest.host}:{dest.port}")
        try:
            status = assoc.send_c_store(ds)
        finally:
            assoc.release()
        code = int(status.get("Status", 0xFFFF)) if status else 0xFFFF
        if code in (0x0000, 0xB000, 0xB007, 0xB006):
            return
        if code == 0xFFFF:
            raise DeliveryError("no C-STORE response")
        if 0xA700 <= code <= 0xA7FF:
            raise DeliveryError(f"PACS out of resources (0x{code:04X})")
        raise PermanentDeliveryError(f"PACS refused the object (0x{code:04X})")

    def close(self) -> None:
        return None
