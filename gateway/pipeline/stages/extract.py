"""Stage ``extract``: pull each report document out of its DICOM instance.

- Encapsulated PDF → the PDF bytes (EncapsulatedDocument, PS3.3 C.24.2), kind ``report-pdf``.
- Basic/Enhanced/Comprehensive SR → the content tree as JSON (PS3.3 C.17.3), kind ``report-sr``.
- Key Object Selection → its referenced images in order, kind ``kos``.
- Every image instance → what figure matching needs (a small rendering, stored values, slice geometry),
  all in one ``features.npz`` (kind ``features``, :mod:`gateway.align.features`), so that ``align`` reads
  no pixel data; instances unchanged since the study's previous version are reused, not decoded again.

Each output is keyed by the SOP Instance UID, so running the stage twice replaces rather than duplicates.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pydicom

from gateway.align.features import pack as pack_features
from gateway.align.features import reuse_or_compute, unpack
from gateway.align.kos import kos_references
from gateway.dicom.sopclasses import ENCAPSULATED_PDF, KEY_OBJECT_SELECTION, TEXT_SR
from gateway.errors import StageError
from gateway.index.models import Study
from gateway.pipeline.stage import StageContext

log = logging.getLogger(__name__)


def sr_tree(items: Any) -> list[dict[str, Any]]:
    """The SR content tree as nested dicts: value type, concept name, value, children."""
    out: list[dict[str, Any]] = []
    for item in items or []:
        node: dict[str, Any] = {"type": str(item.get("ValueType", ""))}
        names = item.get("ConceptNameCodeSequence")
        if names:
            node["name"] = str(names[0].get("CodeMeaning", ""))
        if "TextValue" in item:
            node["value"] = str(item.TextValue)
        elif "ConceptCodeSequence" in item and item.ConceptCodeSequence:
            node["value"] = str(item.ConceptCodeSequence[0].get("CodeMeaning", ""))
        elif "MeasuredValueSequence" in item and item.MeasuredValueSequence:
            node["value"] = str(item.MeasuredValueSequence[0].get("NumericValue", ""))
        elif "ReferencedSOPSequence" in item and item.ReferencedSOPSequence:
            node["value"] = str(item.ReferencedSOPSequence[0].get("ReferencedSOPInstanceUID", ""))
        children = sr_tree(item.get("ContentSequence"))
        if children:
            node["children"] = children
        out.append(node)
    return out


def run(ctx: StageContext, study: Study) -> dict[str, Any]:
    counts = {"report-pdf": 0, "report-sr": 0, "kos": 0}
    for instance, _series in ctx.instances(study):
        sop_class = instance.sop_class_uid
        if sop_class != ENCAPSULATED_PDF and sop_class not in TEXT_SR and sop_class != KEY_OBJECT_SELECTION:
            continue
        try:
            ds = pydicom.dcmread(instance.path)
        except FileNotFoundError as exc:
            raise StageError(f"stored file missing for instance {instance.sop_instance_uid}") from exc
        uid = instance.sop_instance_uid
        if sop_class == ENCAPSULATED_PDF:
            data = bytes(ds.get("EncapsulatedDocument", b"") or b"")
            length = ds.get("EncapsulatedDocumentLength")
            if length is not None and 0 < int(length) <= len(data):
                data = data[: int(length)]  # drop the even-length padding byte
            media_type = str(ds.get("MIMETypeOfEncapsulatedDocument", "application/pdf") or "application/pdf")
            ctx.put_document(
                study,
                key=f"{uid}.pdf",
                kind="report-pdf",
                media_type=media_type,
                data=data,
                instance_fk=instance.id,
                content={"sop_instance_uid": uid, "title": str(ds.get("DocumentTitle", "") or "")},
            )
            counts["report-pdf"] += 1
        elif sop_class in TEXT_SR:
            content = {
                "sop_instance_uid": uid,
                "sop_class_uid": sop_class,
                "completion_flag": str(ds.get("CompletionFlag", "") or ""),
                "verification_flag": str(ds.get("VerificationFlag", "") or ""),
                "title": str(ds.ConceptNameCodeSequence[0].CodeMeaning)
                if ds.get("ConceptNameCodeSequence")
                else "",
                "tree": sr_tree(ds.get("ContentSequence")),
            }
            ctx.put_document(
                study,
                key=f"{uid}.sr.json",
                kind="report-sr",
                media_type="application/json",
                content=content,
                instance_fk=instance.id,
            )
            counts["report-sr"] += 1
        else:
            ctx.put_document(
                study,
                key=f"{uid}.kos.json",
                kind="kos",
                media_type="application/json",
                content={"sop_instance_uid": uid, "references": kos_references(ds)},
                instance_fk=instance.id,
            )
            counts["kos"] += 1
    counts.update(_features(ctx, study))
    log.info("extracted report documents", extra={"study": study.study_instance_uid, **counts})
    return counts


FEATURES_KEY = "features.npz"


def _features(ctx: StageContext, study: Study) -> dict[str, int]:
    images = [
        (i.sop_instance_uid, i.digest, i.path)
        for i, _ in ctx.instances(study)
        if i.rows is not None
        and i.sop_class_uid != ENCAPSULATED_PDF
        and i.sop_class_uid not in TEXT_SR
        and i.sop_class_uid != KEY_OBJECT_SELECTION
    ]
    previous_doc = ctx.previous_document(study, stage="extract", key=FEATURES_KEY)
    previous = {}
    if previous_doc is not None and previous_doc.path and Path(previous_doc.path).is_file():
        try:
            previous = unpack(Path(previous_doc.path))
        except (OSError, ValueError) as exc:  # an unreadable earlier file costs only the reuse
            log.warning("cannot reuse earlier matching features: %s", exc)
    features, skipped = reuse_or_compute(images, previous, max_pixels=ctx.settings.imaging.max_pixels)
    for uid, reason in skipped[:5]:
        log.info("no matching features for %s: %s", uid, reason)
    reused = sum(1 for f in features if previous.get(f.sop_instance_uid) is f)
    ctx.put_document(
        study,
        key=FEATURES_KEY,
        kind="features",
        media_type="application/x-npz",
        data=pack_features(features),
        content={"instances": len(features), "reused": reused, "without_image": len(skipped)},
    )
    return {"features": len(features), "features_reused": reused}
