"""What the review page shows, gathered from the index: pure reads that return plain data for templates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.align.aligner import document_sentences
from gateway.align.model import Link
from gateway.index.models import Document, DraftReview, Instance, Job, Patient, Series, Study
from gateway.pipeline.stages.read_report import primary_report

STATES = ("receiving", "stable", "processing", "done", "failed")


@dataclass
class WorklistRow:
    study_instance_uid: str
    state: str
    reason: str | None
    modalities: list[str]
    date: str | None
    description: str | None
    accession: str | None
    reports: int
    links: int
    drafts_waiting: int
    dead_job: int | None


@dataclass
class Filters:
    state: str = ""
    modality: str = ""
    date_from: str = ""
    date_to: str = ""
    text: str = ""
    page: int = 1

    def query(self, page: int | None = None) -> str:
        from urllib.parse import urlencode

        items = {
            "state": self.state,
            "modality": self.modality,
            "from": self.date_from,
            "to": self.date_to,
            "q": self.text,
            "page": str(page or self.page),
        }
        return urlencode({k: v for k, v in items.items() if v})


def _current_docs(session: Session, study: Study, stage: str, kind: str | None = None) -> list[Document]:
    stmt = select(Document).where(
        Document.study_fk == study.id, Document.study_version == study.version, Document.stage == stage
    )
    if kind:
        stmt = stmt.where(Document.kind == kind)
    return list(session.scalars(stmt.order_by(Document.id)))


def links_of(session: Session, study: Study) -> list[Link]:
    docs = _current_docs(session, study, "align", "links")
    return [Link.from_json(x) for x in ((docs[-1].content or {}).get("links", []) if docs else [])]


def draft_of(session: Session, study: Study) -> dict[str, Any] | None:
    docs = _current_docs(session, study, "draft_findings", "draft")
    return dict(docs[-1].content or {}) if docs else None


def worklist(session: Session, filters: Filters, page_size: int) -> tuple[list[WorklistRow], int]:
    stmt = select(Study).join(Patient, Study.patient_fk == Patient.id)
    if filters.state:
        stmt = stmt.where(Study.state == filters.state)
    if filters.modality:
        stmt = stmt.where(
            select(Series.id).where(Series.study_fk == Study.id, Series.modality == filters.modality).exists()
        )
    if filters.date_from:
        stmt = stmt.where(Study.study_date >= filters.date_from.replace("-", ""))
    if filters.date_to:
        stmt = stmt.where(Study.study_date <= filters.date_to.replace("-", ""))
    if filters.text:
        like = f"%{filters.text}%"
        stmt = stmt.where(Study.accession_number.like(like) | Study.description.like(like))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    studies = session.scalars(
        stmt.order_by(Study.updated_at.desc(), Study.id.desc())
        .limit(page_size)
        .offset((filters.page - 1) * page_size)
    ).all()
    rows = []
    for study in studies:
        modalities = sorted(
            {m for m in session.scalars(select(Series.modality).where(Series.study_fk == study.id)) if m}
        )
        draft = draft_of(session, study)
        decided = session.scalar(
            select(DraftReview.decision)
            .where(DraftReview.study_fk == study.id, DraftReview.study_version == study.version)
            .order_by(DraftReview.id.desc())
            .limit(1)
        )
        # Saved edits and withdrawn approvals still wait for a reader's decision.
        pending = decided is None or decided in ("saved", "withdrawn")
        waiting = 1 if draft and draft.get("sentences") and pending else 0
        dead = session.scalar(
            select(Job.id)
            .where(Job.study_fk == study.id, Job.state == "dead")
            .order_by(Job.id.desc())
            .limit(1)
        )
        rows.append(
            WorklistRow(
                study.study_instance_uid,
                study.state,
                study.state_reason,
                modalities,
                study.study_date,
                study.description,
                study.accession_number,
                len(_current_docs(session, study, "extract")),
                sum(1 for link in links_of(session, study) if link.resolved),
                waiting,
                dead,
            )
        )
    return rows, total


@dataclass
class LinkView:
    link: Link
    original: str | None
    series_number: int | None = None
    instance_number: int | None = None
    modality: str | None = None
    thumbnail: str = ""


@dataclass
class SentenceView:
    paragraph: int
    index: int
    text: str
    links: list[LinkView] = field(default_factory=list)


@dataclass
class ParagraphView:
    index: int
    section: str | None
    heading: bool
    sentences: list[SentenceView]


@dataclass
class PageView:
    number: int
    width: float
    height: float
    lines: list[dict[str, Any]]  # text, confidence, left/top/width/height in % of the page


def pages(document: dict[str, Any]) -> list[PageView]:
    out: list[PageView] = []
    for page in document.get("pages", []):
        width, height = float(page.get("width") or 0), float(page.get("height") or 0)
        if width <= 0 or height <= 0 or page.get("unit") == "none":
            continue
        lines = []
        for block in page.get("blocks", []):
            for line in block.get("lines", []):
                x0, y0, x1, y1 = (float(v) for v in line.get("bbox", [0, 0, 0, 0]))
                lines.append(
                    {
                        "text": line.get("text", ""),
                        "confidence": float(line.get("confidence") or 0.0),
                        "left": 100 * x0 / width,
                        "top": 100 * y0 / height,
                        "width": 100 * (x1 - x0) / width,
                        "height": 100 * (y1 - y0) / height,
                    }
                )
        out.append(PageView(int(page.get("number", len(out) + 1)), width, height, lines))
    return out


def report_document(session: Session, study: Study) -> dict[str, Any] | None:
    primary = primary_report(_current_docs(session, study, "read_report", "document"))
    return dict(primary.content or {}) if primary is not None else None


def report_pdf_path(session: Session, study: Study) -> str | None:
    """The PDF the primary read document came from (a scanned PDF too: its OCR boxes are in page pixels)."""
    document = report_document(session, study) or {}
    source = document.get("source_sop_instance_uid")
    for doc in reversed(_current_docs(session, study, "extract", "report-pdf")):
        if doc.path and (source is None or (doc.content or {}).get("sop_instance_uid") == source):
            return doc.path
    return None


def paragraphs(document: dict[str, Any], links: list[tuple[str | None, Link]]) -> list[ParagraphView]:
    """Paragraphs and their sentences (split as the aligner splits them), each with its links."""
    by_sentence: dict[tuple[int | None, int | None], list[tuple[str | None, Link]]] = {}
    for original, link in links:
        if link.source == "report":
            by_sentence.setdefault((link.paragraph, link.sentence), []).append((original, link))
    grouped: dict[int, ParagraphView] = {}
    meta = {int(p.get("index", i)): p for i, p in enumerate(document.get("paragraphs", []))}
    for sentence, _refs in document_sentences(document):
        p = meta.get(sentence.paragraph, {})
        view = grouped.setdefault(
            sentence.paragraph,
            ParagraphView(sentence.paragraph, p.get("section"), bool(p.get("heading")), []),
        )
        sv = SentenceView(sentence.paragraph, sentence.index, sentence.text)
        for original, link in by_sentence.get((sentence.paragraph, sentence.index), []):
            sv.links.append(LinkView(link, original))
        view.sentences.append(sv)
    return list(grouped.values())


def study_instances(session: Session, study: Study) -> list[tuple[Instance, Series]]:
    return [
        (i, s)
        for i, s in session.execute(
            select(Instance, Series)
            .join(Series, Instance.series_fk == Series.id)
            .where(Instance.study_fk == study.id)
            .order_by(Series.series_number, Instance.instance_number, Instance.id)
        ).tuples()
    ]


def read_reports(session: Session, study: Study) -> list[tuple[Document, Instance | None]]:
    """Every report read for the current study version, with the instance it came from."""
    out = []
    for doc in _current_docs(session, study, "read_report", "document"):
        inst = session.get(Instance, doc.instance_fk) if doc.instance_fk else None
        out.append((doc, inst))
    return out


def sr_tree(instance: Instance | None) -> Any:
    """The content tree of an SR instance (:mod:`gateway.ui.srtree`), or None when it is not an SR."""
    from pydicom import dcmread

    from gateway.reading.sr import SR_SOP_CLASSES
    from gateway.ui.srtree import content_tree

    if instance is None or instance.sop_class_uid not in SR_SOP_CLASSES or not instance.path:
        return None
    return content_tree(dcmread(instance.path, stop_before_pixels=True))
