"""Training data from the gateway's own index: the ``archive`` manifest (``gateway findings export``).

A study is exported when it holds CR/DX images and a report the ``read_report`` stage read, whose FINDINGS
section is not empty. The target is that section (Chinese or English, as written), unless a reader approved or
corrected the machine draft: then the reviewed text is the better target (:func:`reviewed_findings`).

Splits are by patient and fixed across exports: a patient's bucket is a hash of its key (issuer and patient
ID), so a patient never moves between train and test however the archive grows.

De-identification (``deidentify=True``) replaces study, patient and instance identifiers by keyed hashes
(HMAC-SHA256 with a key kept beside the export, so pseudonyms are stable across exports), strips names, IDs
and dates from the text, and writes the pixels as PNG (after the DICOM display pipeline), so no DICOM header
leaves the gateway. Text burnt into the pixels is not removed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.findings.context import study_context
from gateway.index.models import Document, DraftReview, Instance, Patient, Series, Study

__all__ = [
    "ExportOptions",
    "ExportSummary",
    "deidentify_text",
    "export_archive",
    "findings_text",
    "patient_key",
    "patient_split",
    "reviewed_findings",
]

log = logging.getLogger(__name__)

IMAGE_MODALITIES = frozenset({"CR", "DX"})
SplitName = Literal["train", "val", "test"]
_CJK = re.compile(r"[\u3400-\u9fff]")
# Review documents as the review page stores them: kind, and the statuses that make the text a target.
REVIEW_KINDS = frozenset({"draft-review", "draft-approved", "review"})
REVIEWED_STATUSES = frozenset({"approved", "final", "corrected", "edited", "amended"})


@dataclass(frozen=True, slots=True)
class ExportOptions:
    since: dt.date | None = None
    deidentify: bool = False
    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)
    split_salt: str = "gateway-findings-split-v1"  # changing it reshuffles every patient (SPLIT_SALT)


@dataclass
class ExportSummary:
    manifest: Path
    studies: int = 0
    reviewed: int = 0
    splits: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0, "test": 0})
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


def patient_key(issuer: str | None, patient_id: str | None) -> str:
    """What identifies a patient across studies: the issuer and the patient ID."""
    return f"{issuer or ''}\x00{patient_id or ''}"


SPLIT_SALT = "gateway-findings-split-v1"


def patient_split(
    patient_key: str, ratios: tuple[float, float, float] = (0.7, 0.1, 0.2), salt: str = SPLIT_SALT
) -> SplitName:
    """A patient's split from a hash of its key: the same in every export."""
    digest = hashlib.sha256(f"{salt}\x00{patient_key}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") / 2**64
    if bucket < ratios[0]:
        return "train"
    return "val" if bucket < ratios[0] + ratios[1] else "test"


def findings_text(document: dict[str, Any]) -> str:
    """The FINDINGS section's body paragraphs of a read document (``gateway.reading.document``)."""
    paragraphs = [
        str(p.get("text") or "").strip()
        for p in document.get("paragraphs") or []
        if p.get("section") == "findings" and not p.get("heading") and p.get("role", "body") == "body"
    ]
    joiner = "" if any(_CJK.search(p) for p in paragraphs) else " "
    return joiner.join(p for p in paragraphs if p)


def reviewed_findings(documents: Iterable[Document]) -> tuple[str, str] | None:
    """The findings text a reader approved or corrected, with its status; None when there is none.

    The review page stores a document of kind ``draft-review`` (or ``draft-approved``/``review``) whose
    content carries ``status`` and the reviewed ``text`` (or ``sentences`` with ``text``). The newest wins.
    This is the one place that knows that layout.
    """
    for doc in sorted(documents, key=lambda d: (d.created_at, d.id), reverse=True):
        content = doc.content or {}
        if doc.kind not in REVIEW_KINDS or str(content.get("status", "")).lower() not in REVIEWED_STATUSES:
            continue
        text = content.get("text") or content.get("findings")
        if not text and content.get("sentences"):
            parts = [str(s.get("text", "")).strip() for s in content["sentences"] if isinstance(s, dict)]
            joiner = "" if any(_CJK.search(p) for p in parts) else " "
            text = joiner.join(
                p if p.endswith((".", "。")) else p + ("。" if _CJK.search(p) else ".") for p in parts
            )
        if text and str(text).strip():
            return str(text).strip(), str(content["status"]).lower()
    return None


def approved_by_reader(session: Session, study_fk: int) -> tuple[str, str] | None:
    """The drafted findings a reader approved in the review page (``draft_reviews``): the newest decision,
    if it is an approval (a later rejection, saved edit or withdrawn approval undoes it)."""
    row = session.scalars(
        select(DraftReview)
        .where(DraftReview.study_fk == study_fk)
        .order_by(DraftReview.created_at.desc(), DraftReview.id.desc())
        .limit(1)
    ).first()
    if row is None or row.decision != "approved" or not row.sentences:
        return None
    parts = [str(p).strip() for p in row.sentences if str(p).strip()]
    joiner = "" if any(_CJK.search(p) for p in parts) else " "
    return joiner.join(parts), "approved"


# ------------------------------------------------------------------------------------ de-identification

_DATE_PATTERNS = (
    r"\d{4}\s*年\s*\d{1,2}\s*月(\s*\d{1,2}\s*[日号])?",
    r"\d{1,2}\s*月\s*\d{1,2}\s*[日号]",
    r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b",
    r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b",
    r"\b(19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])\b",
    r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+\d{1,2}(st|nd|rd|th)?,?\s+\d{4}\b",
    r"\b\d{1,2}\s+(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+\d{4}\b",
)
_ID_PATTERNS = (
    r"\b\d+(\.\d+){4,}\b",  # DICOM UIDs
    r"\b[a-z]{0,3}\d{6,}\b",  # record and accession numbers
    r"(住院号|门诊号|检查号|病案号|影像号|登记号|id|mrn|accession)\s*[:：#]?\s*[a-z0-9-]+",
)
_NAME_LABELS = (
    r"(姓名|患者|病人|报告医师|审核医师|医师|医生|dr\.?|doctor|patient|name|radiologist)\s*[:：]?\s*"
)
_MASK = "XXXX"


def deidentify_text(text: str, names: Sequence[str] = (), ids: Sequence[str] = ()) -> str:
    """``text`` with the given names and IDs, dates, ID-like numbers and labelled names replaced by XXXX.

    ``names`` are the patient's and staff names the index holds (DICOM PN: ``Family^Given`` parts are masked
    one by one too). IU X-Ray masks the same way, so masked text trains and scores like the public set.
    """
    out = text
    parts: set[str] = set()
    for name in names:
        for piece in re.split(r"[\^=\s,]+", name or ""):
            if len(piece.strip()) >= 2:
                parts.add(piece.strip())
        if name and name.strip():
            parts.add(name.replace("^", " ").strip())
            parts.add(name.replace("^", "").strip())
    parts |= {i.strip() for i in ids if i and len(i.strip()) >= 3}
    for piece in sorted(parts, key=len, reverse=True):
        # Latin names and IDs only as whole words ("Na" must not eat "normal"); Chinese ones anywhere.
        pattern = re.escape(piece) if _CJK.search(piece) else rf"(?<![a-z0-9]){re.escape(piece)}(?![a-z0-9])"
        out = re.sub(pattern, _MASK, out, flags=re.IGNORECASE)
    for pattern in _DATE_PATTERNS + _ID_PATTERNS:
        out = re.sub(pattern, _MASK, out, flags=re.IGNORECASE)
    # a labelled name: the label stays, one Chinese name (2-4 characters) or up to 3 capitalised words go
    out = re.sub(_NAME_LABELS + r"([\u4e00-\u9fff]{2,4})", lambda m: m.group(1) + _MASK, out, flags=re.I)
    out = re.sub(
        r"\b(dr\.?|doctor|name:|patient:)\s+([A-Z][a-z]+(\s+[A-Z][a-z]+){0,2})",
        lambda m: m.group(1) + " " + _MASK,
        out,
    )
    return out


def _pseudonym(key: bytes, prefix: str, value: str) -> str:
    return prefix + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:20]


def _deid_key(out: Path) -> bytes:
    path = out / ".deid-key"
    if path.is_file():
        return bytes.fromhex(path.read_text().strip())
    key = secrets.token_bytes(32)
    path.write_text(key.hex())
    path.chmod(0o600)
    return key


def _png(path: Path, source: Path) -> None:
    import cv2

    from gateway.findings.images import read_dicom

    unit, _, _ = read_dicom(source)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.clip(unit * 255.0 + 0.5, 0, 255).astype(np.uint8)):
        raise OSError(f"cannot write {path}")


def _study_day(study: Study) -> dt.date:
    try:
        return dt.datetime.strptime(study.study_date or "", "%Y%m%d").date()
    except ValueError:
        return study.created_at.date()


def _pick_images(images: Sequence[tuple[Instance, Series]]) -> list[tuple[Instance, str | None]]:
    """One frontal and one lateral image by ViewPosition (the instance's, else the series')."""
    from gateway.findings.images import ViewInfo, choose_views

    infos = [
        ViewInfo(
            view_position=i.view_position or s.view_position,
            aspect=(i.columns / i.rows) if i.rows and i.columns else None,
        )
        for i, s in images
    ]
    frontal, lateral = choose_views(infos)
    chosen = [frontal] if frontal == lateral else [frontal, lateral]
    return [(images[k][0], infos[k].view_position) for k in chosen]


def export_archive(sessions: sessionmaker[Session], out: Path, options: ExportOptions) -> ExportSummary:
    """Write ``out/archive.jsonl`` (and, de-identified, ``out/images/``); see the module docstring."""
    from gateway.pipeline.stages.read_report import primary_report

    out.mkdir(parents=True, exist_ok=True)
    key = _deid_key(out) if options.deidentify else b""
    summary = ExportSummary(out / "archive.jsonl")
    lines: list[str] = []
    with sessions() as session:
        studies = list(session.scalars(select(Study).order_by(Study.id)))
        for study in studies:
            if options.since is not None and _study_day(study) < options.since:
                summary.skip("before --since")
                continue
            rows = session.execute(
                select(Instance, Series)
                .join(Series, Instance.series_fk == Series.id)
                .where(Instance.study_fk == study.id)
                .order_by(Series.series_number, Instance.instance_number, Instance.id)
            ).tuples()
            images = [(i, s) for i, s in rows if (s.modality or "").upper() in IMAGE_MODALITIES]
            if not images:
                summary.skip("no CR/DX image")
                continue
            documents = list(session.scalars(select(Document).where(Document.study_fk == study.id)))
            read = [
                d
                for d in documents
                if d.stage == "read_report" and d.kind == "document" and d.study_version == study.version
            ]
            report = primary_report(read)
            reviewed = approved_by_reader(session, study.id) or reviewed_findings(documents)
            target = reviewed[0] if reviewed else (findings_text(report.content or {}) if report else "")
            if report is None and reviewed is None:
                summary.skip("no read report")
                continue
            if not target:
                summary.skip("no FINDINGS section")
                continue
            patient = session.get(Patient, study.patient_fk)
            if patient and patient.patient_id:
                key_of_patient = patient_key(patient.issuer, patient.patient_id)
            else:
                key_of_patient = patient_key(
                    "study", study.study_instance_uid
                )  # no ID: the study stands alone
            split = patient_split(key_of_patient, options.ratios, options.split_salt)
            picked = _pick_images(images)
            # the same function the draft_findings stage builds its prefix with (train and serve agree)
            clinical = study_context(
                birth_date=patient.birth_date if patient else None,
                sex=patient.sex if patient else None,
                study_date=study.study_date,
                image_paths=[Path(i.path) for i, _ in images],
                report=(report.content or {}) if report is not None else None,
            )
            indication = clinical.indication or ""
            context: dict[str, object] = clinical.to_json()
            item: dict[str, Any]
            if options.deidentify:
                names = [n for n in (patient.name if patient else None, study.referring_physician) if n]
                ids = [
                    v
                    for v in (patient.patient_id if patient else None, study.accession_number, study.study_id)
                    if v
                ]
                study_id = _pseudonym(key, "S", study.study_instance_uid)
                entries = []
                for instance, view in picked:
                    name = _pseudonym(key, "I", instance.sop_instance_uid)
                    rel = f"images/{study_id}/{name}.png"
                    try:
                        _png(out / rel, Path(instance.path))
                    except Exception as exc:  # an undecodable image: the study goes without it
                        log.warning("export: image of study %s not written: %s", study_id, exc)
                        continue
                    entries.append({"path": rel, "view_position": view, "sop_instance_uid": name})
                if not entries:
                    summary.skip("no decodable image")
                    continue
                age = context["age"]
                context = {
                    "age": min(age, 90) if isinstance(age, int) else None,  # HIPAA: ages over 89 pooled
                    "sex": context["sex"],
                    "indication": deidentify_text(indication, names, ids) if indication else None,
                }
                item = {
                    "study_uid": study_id,
                    "patient_id": _pseudonym(key, "P", key_of_patient),
                    "findings": deidentify_text(target, names, ids),
                    "images": entries,
                }
            else:
                item = {
                    "study_uid": study.study_instance_uid,
                    "patient_id": patient.patient_id
                    if patient and patient.patient_id
                    else study.study_instance_uid,
                    "findings": target,
                    "images": [
                        {
                            "path": str(Path(i.path).resolve()),
                            "view_position": v,
                            "sop_instance_uid": i.sop_instance_uid,
                        }
                        for i, v in picked
                    ],
                    "study_date": study.study_date,
                }
            item["language"] = "zh" if _CJK.search(target) else "en"
            item["target"] = f"reviewed-{reviewed[1]}" if reviewed else "report"
            item["split"] = split
            item["context"] = context
            lines.append(json.dumps(item, ensure_ascii=False))
            summary.studies += 1
            summary.reviewed += reviewed is not None
            summary.splits[split] += 1
    tmp = summary.manifest.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(summary.manifest)
    return summary
