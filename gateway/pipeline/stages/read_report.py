"""Stage ``read_report``: read each extracted report into the versioned document schema.

The reading itself runs in the inference service: in this process by default, or at
``pipeline.inference_url`` when a site runs it separately (on a GPU host, say). Figures embedded in a PDF
are stored as artifacts of this stage, under the names the document gives them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.errors import StageError
from gateway.index.models import Document, Study
from gateway.inference.client import ReportReader, make_reader
from gateway.pipeline.stage import StageContext
from gateway.reading.settings import ReadingSettings

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=2)
def _reader(reading_json: str, inference_url: str | None) -> ReportReader:
    # OCR sessions take a while to build; keep one reader per process and settings.
    return make_reader(ReadingSettings.model_validate_json(reading_json), inference_url)


def run(ctx: StageContext, study: Study) -> dict[str, Any]:
    sources = [d for d in ctx.documents(study, stage="extract") if d.kind in ("report-pdf", "report-sr")]
    if not sources:
        return {"documents": 0, "note": "no report document in this study"}
    reader = _reader(ctx.settings.reading.model_dump_json(), ctx.settings.pipeline.inference_url)
    paths = {i.id: i.path for i, _ in ctx.instances(study)}
    read = 0
    for source in sources:
        content = source.content or {}
        sop_uid = str(content.get("sop_instance_uid", source.key))
        if source.kind == "report-pdf":
            if source.path is None:
                raise StageError(f"extracted PDF for {sop_uid} has no file")
            data, filename = Path(source.path).read_bytes(), f"{sop_uid}.pdf"
        else:
            # SR documents are read from the instance itself: the reader walks the content tree.
            if source.instance_fk is None or source.instance_fk not in paths:
                raise StageError(f"SR instance {sop_uid} is no longer indexed")
            data, filename = Path(paths[source.instance_fk]).read_bytes(), f"{sop_uid}.dcm"
        result = reader.read(data, filename)
        document = result.document.model_dump(mode="json")
        document["source_sop_instance_uid"] = sop_uid
        for name, (media_type, image) in result.figure_images.items():
            ctx.put_document(study, key=name, kind="figure", media_type=media_type, data=image)
        ctx.put_document(
            study,
            key=f"{sop_uid}.document.json",
            kind="document",
            media_type="application/json",
            content=document,
            instance_fk=source.instance_fk,
        )
        read += 1
    return {"documents": read}


def primary_report(documents: Sequence[Document]) -> Document | None:
    """The one read document that later stages treat as *the* report.

    A PACS often sends the same report twice, as an Encapsulated PDF and as an SR. The PDF wins because it
    carries the embedded figures the aligner needs. Among reports of one kind the newest wins (the instance
    indexed last): a corrected report re-sent as a new instance replaces the earlier one, and every stage
    (align, publish) takes the same document.
    """
    if not documents:
        return None

    def rank(doc: Document) -> tuple[int, int, int]:
        content = doc.content or {}
        is_pdf = content.get("source_kind") in ("dicom-pdf", "pdf")
        return (0 if is_pdf else 1, -(doc.instance_fk or 0), -doc.id)

    return sorted(documents, key=rank)[0]
