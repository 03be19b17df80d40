"""The clinical context a draft may be conditioned on: the order's indication and the patient's age and sex.

A model trained with ``--context`` reads the context as a short text prefix fed to its decoder before
``<start>``; the words it generates start after ``<start>``, so the prefix is never part of a draft. The
prefix has a fixed length, so that studies batch without padding inside the text::

    age:70s sex:f <indication words, cleaned like the reports, cut or padded with <pad> to N>

Ages are given by decade, ninety and over pooled (as a de-identified export pools them), so an identified and
a de-identified export give the same prefix; an unknown age or sex is ``age:unknown`` / ``sex:unknown``.

Where the context comes from (:func:`study_context`) is one function, used by ``gateway findings export`` (the
training manifest) and by the ``draft_findings`` stage (serving), so train and serve see the same prefix:

- age: the patient's birth date (index) at the study date;
- sex: the patient's sex (index: DICOM Patient's Sex, or an ADT update);
- indication, first found of:
  1. the order as the modality received it from the worklist, in the image header: Reason for the Requested
     Procedure (0040,1002), directly or in the Request Attributes Sequence (0040,0275), then Reason for Study
     (0032,1030);
  2. the INDICATION section of the report ``read_report`` read (the pipeline reads the report before it
     drafts, so a study whose report came with it has the same indication in training and in serving).

The gateway's HL7 order table (``orders``, :mod:`gateway.hl7.orders`) holds no reason for the study (OBR-31),
and the FHIR ServiceRequest is one the gateway writes, not one it receives; neither is a source here yet.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from gateway.findings.text import TextRules, Vocabulary

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from gateway.index.models import Study

__all__ = [
    "ClinicalContext",
    "age_at",
    "encode_prefixes",
    "header_indication",
    "indexed_context",
    "prefix_words",
    "report_indication",
    "study_context",
]

log = logging.getLogger(__name__)
_SEXES = {"F": "f", "M": "m", "O": "o"}


@dataclass(frozen=True, slots=True)
class ClinicalContext:
    age: int | None = None
    sex: str | None = None  # DICOM Patient's Sex: F, M, O
    indication: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, object] | None) -> ClinicalContext:
        """From a manifest's ``context`` object; bad values become unknown rather than an error."""
        if not data:
            return cls()
        age = data.get("age")
        sex = data.get("sex")
        indication = data.get("indication")
        return cls(
            age if isinstance(age, int) and not isinstance(age, bool) and 0 <= age < 150 else None,
            str(sex).strip().upper()[:1] or None if isinstance(sex, str) else None,
            str(indication).strip() or None if isinstance(indication, str) else None,
        )

    def to_json(self) -> dict[str, object]:
        return {"age": self.age, "sex": self.sex, "indication": self.indication}


def prefix_words(context: ClinicalContext | None, rules: TextRules, indication_tokens: int) -> list[str]:
    """The prefix as words (without the padding); see the module docstring."""
    context = context or ClinicalContext()
    age = f"age:{min(context.age, 90) // 10 * 10}s" if context.age is not None else "age:unknown"
    sex = f"sex:{_SEXES.get((context.sex or '').upper(), 'unknown')}"
    words: list[str] = []
    if context.indication:
        words = [w for w in rules.clean(context.indication).split() if w not in (".", ",")]
    return [age, sex, *words[:indication_tokens]]


def encode_prefixes(
    contexts: Sequence[ClinicalContext | None], vocab: Vocabulary, rules: TextRules, indication_tokens: int
) -> Tensor:
    """Token ids ``(N, 2 + indication_tokens)``; unknown words are ``<unk>``, the rest ``<pad>``."""
    width = 2 + indication_tokens
    out = torch.full((len(contexts), width), Vocabulary.pad, dtype=torch.long)
    for row, context in enumerate(contexts):
        words = prefix_words(context, rules, indication_tokens)
        ids = vocab.encode(" ".join(words), width)[:-1]  # without <end>
        out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def age_at(birth: str | None, on: str | None) -> int | None:
    """Whole years from a DICOM DA birth date to a DICOM DA study date; None when either is missing."""
    try:
        b = dt.datetime.strptime(birth or "", "%Y%m%d").date()
        d = dt.datetime.strptime(on or "", "%Y%m%d").date()
    except ValueError:
        return None
    years = d.year - b.year - ((d.month, d.day) < (b.month, b.day))
    return years if 0 <= years < 150 else None


def header_indication(paths: Sequence[Path]) -> str | None:
    """The order's reason as the modality copied it from the worklist into an image header (first found)."""
    import pydicom

    for path in paths:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:  # an unreadable file has no context to give; drafting reads it again
            log.debug("no header context from %s: %s", path.name, exc)
            continue
        values: list[Any] = [ds.get("ReasonForTheRequestedProcedure")]
        values += [
            item.get("ReasonForTheRequestedProcedure") for item in ds.get("RequestAttributesSequence", [])
        ]
        values.append(ds.get("ReasonForStudy"))
        for value in values:
            if value is not None and str(value).strip():
                return str(value).strip()
    return None


def report_indication(document: Mapping[str, Any] | None) -> str | None:
    """The INDICATION section's body of a read document (``gateway.reading.document``)."""
    if not document:
        return None
    text = " ".join(
        str(p.get("text") or "").strip()
        for p in document.get("paragraphs") or []
        if p.get("section") == "indication" and not p.get("heading")
    ).strip()
    return text or None


def study_context(
    *,
    birth_date: str | None,
    sex: str | None,
    study_date: str | None,
    image_paths: Sequence[Path],
    report: Mapping[str, Any] | None,
) -> ClinicalContext:
    """The context of one study from what the index holds (see the module docstring for the order)."""
    indication = header_indication(image_paths) or report_indication(report)
    return ClinicalContext(
        age_at(birth_date, study_date), (sex or "").strip().upper()[:1] or None, indication
    )


def indexed_context(session: Session, study: Study, image_paths: Sequence[Path]) -> ClinicalContext:
    """:func:`study_context` of an indexed study (``gateway.index.models.Study``) in an open session."""
    from sqlalchemy import select

    from gateway.index.models import Document, Patient
    from gateway.pipeline.stages.read_report import primary_report

    patient = session.get(Patient, study.patient_fk)
    read = list(
        session.scalars(
            select(Document).where(
                Document.study_fk == study.id,
                Document.stage == "read_report",
                Document.kind == "document",
                Document.study_version == study.version,
            )
        )
    )
    report = primary_report(read)
    return study_context(
        birth_date=patient.birth_date if patient else None,
        sex=patient.sex if patient else None,
        study_date=study.study_date,
        image_paths=image_paths,
        report=(report.content or {}) if report is not None else None,
    )
