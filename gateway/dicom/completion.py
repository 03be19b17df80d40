"""When is a study complete? On evidence when there is some, on a quiet timer otherwise.

A study that is ``receiving`` becomes ``stable`` (and its pipeline runs) when, in this order:

(a) an MPPS for it is COMPLETED and every instance that step lists has arrived
    ("MPPS COMPLETED: 12/12 referenced instances arrived");
(b) a report arrived that references instances explicitly, and every one of them exists ("report arrived:
    4/4 referenced instances present"): a Structured Report or Key Object Selection through its evidence
    sequences (by SOP Instance UID); an Encapsulated PDF through the positions its text layer names
    ("Se 3 Im 45", "series 4, image 112", "序列3 第45幅": :mod:`gateway.reading.figure_refs`), each
    present when an instance of the study has that Series Number and Instance Number. Only the PDF's own
    text is read (PyMuPDF, no OCR): a scanned PDF, or one that names only figures ("Figure 2"), leaves the
    study to the timer;
(c) no instance has arrived for ``stable_age`` seconds (:func:`gateway.pipeline.jobs.promote_stable`).

An MPPS DISCONTINUED with no COMPLETED step fails the study with the modality's reason. The reason is
stored in ``studies.state_reason`` and shown by ``gateway studies``. A late instance reopens the study as
before.

:func:`decide` is pure; :func:`promote_complete` is its edge over the index.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from gateway.dicom.mpps import COMPLETED, DISCONTINUED
from gateway.dicom.sopclasses import ENCAPSULATED_PDF, KEY_OBJECT_SELECTION, TEXT_SR
from gateway.index.models import Instance, Mpps, Series, Study, utcnow
from gateway.pipeline.jobs import enqueue

log = logging.getLogger(__name__)

EVIDENCE_CLASSES = TEXT_SR | {KEY_OBJECT_SELECTION, ENCAPSULATED_PDF}
#: Pages and bytes of a PDF's text layer read for references: a report names its images early.
PDF_PAGES = 20
PDF_TEXT_CHARS = 200_000


def position_key(series_number: int, instance_number: int) -> str:
    """The key of "series s, image i" beside SOP Instance UIDs in one set (a UID has no letters)."""
    return f"se{series_number}/im{instance_number}"


@dataclass(frozen=True)
class Step:
    status: str
    referenced: frozenset[str]
    reason: str | None = None


@dataclass(frozen=True)
class Decision:
    state: str  # "stable" or "failed"
    reason: str


def decide(
    present: frozenset[str], steps: Iterable[Step], report_refs: Iterable[frozenset[str]]
) -> Decision | None:
    """Pure: the decision for one receiving study, or None to keep waiting (for evidence or the timer)."""
    steps = list(steps)
    for step in steps:
        if step.status == COMPLETED and step.referenced and step.referenced <= present:
            n = len(step.referenced)
            return Decision("stable", f"MPPS COMPLETED: {n}/{n} referenced instances arrived")
    for refs in report_refs:
        if refs and refs <= present:
            return Decision("stable", f"report arrived: {len(refs)}/{len(refs)} referenced instances present")
    if steps and all(s.status == DISCONTINUED for s in steps):
        reason = next((s.reason for s in steps if s.reason), None) or "no reason given"
        return Decision("failed", f"MPPS DISCONTINUED: {reason}")
    return None


def evidence_references(path: str | Path) -> frozenset[str]:
    """What a report references explicitly: SOP Instance UIDs of an SR's or KOS's evidence sequences
    (PS3.3 C.17.2), or :func:`position_key` of each series/image position an Encapsulated PDF names."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    if str(ds.get("SOPClassUID", "")) == ENCAPSULATED_PDF:
        return pdf_position_references(bytes(ds.get("EncapsulatedDocument", b"")))
    uids: set[str] = set()
    for seq in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in ds.get(seq, []):
            for series in study.get("ReferencedSeriesSequence", []):
                uids.update(str(i.ReferencedSOPInstanceUID) for i in series.get("ReferencedSOPSequence", []))
    return frozenset(uids)


def pdf_text(data: bytes) -> str:
    """The text layer of the first :data:`PDF_PAGES` pages (no OCR); empty for a scanned or broken PDF."""
    # PyMuPDF, the reading package's PDF engine; typed loosely (its own annotations are partial).
    pymupdf: Any = importlib.import_module("pymupdf")
    pymupdf.TOOLS.mupdf_display_errors(False)
    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except Exception:
        return ""
    try:
        if doc.needs_pass:
            return ""
        parts: list[str] = []
        size = 0
        for number in range(min(doc.page_count, PDF_PAGES)):
            text = str(doc.load_page(number).get_text("text"))
            parts.append(text)
            size += len(text)
            if size >= PDF_TEXT_CHARS:
                break
        return "\n".join(parts)[:PDF_TEXT_CHARS]
    finally:
        doc.close()


def pdf_position_references(data: bytes) -> frozenset[str]:
    """Series/image positions ("Se 3 Im 45") named in a PDF report's text layer, as :func:`position_key`."""
    return position_references(pdf_text(data)) if data else frozenset()


def position_references(text: str) -> frozenset[str]:
    """Pure: :func:`position_key` of every explicit position in ``text``; figure labels are not positions."""
    from gateway.reading.figure_refs import find_figure_refs

    return frozenset(
        position_key(ref.series, ref.instance)
        for ref in find_figure_refs(text)
        if ref.kind == "position" and ref.series is not None and ref.instance is not None
    )


class Completion:
    """Promotes receiving studies that are complete on evidence; caches what it read from report files."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._refs: dict[int, frozenset[str]] = {}

    def _report_refs(self, rows: Iterable[tuple[int, str]]) -> list[frozenset[str]]:
        out = []
        for instance_id, path in rows:
            if instance_id not in self._refs:
                try:
                    self._refs[instance_id] = evidence_references(path)
                except Exception as exc:  # an unreadable report is the timer's business
                    log.warning("report references unreadable: %s", exc, extra={"instance": instance_id})
                    self._refs[instance_id] = frozenset()
            out.append(self._refs[instance_id])
        return out

    def promote(self, first_stage: str) -> list[tuple[int, Decision]]:
        """Decide every receiving study that has an MPPS or a report; apply the decisions."""
        with self.sessions() as session:
            receiving = dict(
                session.execute(
                    select(Study.study_instance_uid, Study.id).where(Study.state == "receiving")
                ).all()
            )
            if not receiving:
                return []
            steps: dict[int, list[Step]] = {}
            for row in session.scalars(select(Mpps).where(Mpps.study_instance_uid.in_(list(receiving)))):
                assert row.study_instance_uid is not None
                steps.setdefault(receiving[row.study_instance_uid], []).append(
                    Step(row.status, frozenset(row.referenced or []), row.reason)
                )
            reports: dict[int, list[tuple[int, str]]] = {}
            for inst_id, study_fk, path in session.execute(
                select(Instance.id, Instance.study_fk, Instance.path).where(
                    Instance.study_fk.in_(list(receiving.values())),
                    Instance.sop_class_uid.in_(sorted(EVIDENCE_CLASSES)),
                )
            ):
                reports.setdefault(study_fk, []).append((inst_id, path))
            candidates = set(steps) | set(reports)
            present: dict[int, set[str]] = {}
            if candidates:
                for study_fk, uid, series_number, instance_number in session.execute(
                    select(
                        Instance.study_fk,
                        Instance.sop_instance_uid,
                        Series.series_number,
                        Instance.instance_number,
                    )
                    .join(Series, Series.id == Instance.series_fk)
                    .where(Instance.study_fk.in_(candidates))
                ):
                    keys = present.setdefault(study_fk, set())
                    keys.add(uid)
                    if series_number is not None and instance_number is not None:
                        keys.add(position_key(series_number, instance_number))
        decided: list[tuple[int, Decision]] = []
        for study_fk in candidates:
            decision = decide(
                frozenset(present.get(study_fk, ())),
                steps.get(study_fk, []),
                self._report_refs(reports.get(study_fk, [])),
            )
            if decision is not None and self._apply(study_fk, decision, first_stage):
                decided.append((study_fk, decision))
                log.info("study %s", decision.state, extra={"study_id": study_fk, "reason": decision.reason})
        return decided

    def _apply(self, study_fk: int, decision: Decision, first_stage: str) -> bool:
        now = utcnow()
        with self.sessions.begin() as session:
            values: dict[str, object] = {
                "state": decision.state,
                "state_reason": decision.reason,
                "updated_at": now,
            }
            if decision.state == "stable":
                # state_reason is cleared when the pipeline ends; stable_reason stays for `gateway studies`.
                values.update(version=Study.version + 1, stage=None, stable_reason=decision.reason)
            # Conditional: a late instance or another worker may have moved the study meanwhile.
            result = session.execute(
                update(Study).where(Study.id == study_fk, Study.state == "receiving").values(**values)
            )
            if getattr(result, "rowcount", 0) != 1:
                return False
            if decision.state == "stable":
                version = session.scalars(select(Study.version).where(Study.id == study_fk)).one()
                enqueue(session, study_fk, first_stage, version, now=now)
        return True


def record_quiet(sessions: sessionmaker[Session], study_ids: Iterable[int], stable_age: float) -> None:
    """Note why the timer promoted these studies (case c)."""
    ids = list(study_ids)
    if not ids:
        return
    with sessions.begin() as session:
        session.execute(
            update(Study)
            .where(Study.id.in_(ids), Study.state_reason.is_(None))
            .values(
                state_reason=f"quiet timer: no instance for {stable_age:g} s",
                stable_reason=f"quiet timer: no instance for {stable_age:g} s",
            )
        )
