"""The pipeline, declared in one table: each stable study version runs these stages, in this order."""

from __future__ import annotations

from gateway.pipeline.stage import Stage
from gateway.pipeline.stages import align, draft_findings, extract, publish, read_report

PIPELINE: tuple[Stage, ...] = (
    Stage("extract", extract.run, "pull PDFs, SR content trees and key-image lists out of report instances"),
    Stage("read_report", read_report.run, "read each report into paragraphs, sections and figure references"),
    Stage(
        "draft_findings", draft_findings.run, "draft preliminary findings from radiographs, if a model is set"
    ),
    Stage(
        "align", align.run, "link report and draft sentences to SOP Instance UIDs, with method and confidence"
    ),
    Stage("publish", publish.run, "build, validate and store versioned FHIR resources"),
)
