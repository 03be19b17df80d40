"""The findings model as the pipeline sees it.

:func:`load_drafter` returns None when no checkpoint is configured: the stage then records "no findings model
configured" and no text is produced, ever. A configured but unusable checkpoint raises
:class:`~gateway.findings.checkpoint.CheckpointError` at start-up rather than drafting with a wrong model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from gateway.findings.checkpoint import Checkpoint, load_checkpoint
from gateway.findings.context import ClinicalContext
from gateway.findings.data import ImageRef
from gateway.findings.settings import FindingsSettings
from gateway.findings.text import split_sentences
from gateway.findings.training import context_prefixes, decode, load_views, pick_device

__all__ = [
    "NOT_CONFIGURED",
    "ClinicalContext",
    "Draft",
    "DraftSentence",
    "Drafter",
    "FindingsDrafter",
    "StudyImage",
    "load_drafter",
]

log = logging.getLogger(__name__)
NOT_CONFIGURED = "no findings model configured"


@dataclass(frozen=True, slots=True)
class StudyImage:
    """One stored instance of a study; ``path`` is a DICOM file."""

    sop_instance_uid: str
    path: Path
    view_position: str | None = None


@dataclass(frozen=True, slots=True)
class DraftSentence:
    text: str
    sop_instance_uid: str  # the instance it was generated from: the frontal image used


@dataclass(frozen=True, slots=True)
class Draft:
    model_name: str
    model_version: str
    sentences: list[DraftSentence]
    context: ClinicalContext | None = None  # what a model trained with context read; None for one without


class FindingsDrafter(Protocol):
    """The boundary the pipeline depends on."""

    def draft_studies(
        self, studies: list[list[StudyImage]], contexts: list[ClinicalContext | None] | None = None
    ) -> list[Draft]: ...


class Drafter:
    """Drafts findings with a loaded checkpoint, batched across studies."""

    def __init__(self, checkpoint: Checkpoint, settings: FindingsSettings, device: torch.device) -> None:
        self.checkpoint = checkpoint
        self.settings = settings
        self.device = device
        self.model_name = checkpoint.model_name
        self.model_version = checkpoint.model_version

    @property
    def uses_context(self) -> bool:
        """Whether the model was trained with the clinical-context prefix (it is then read, never written)."""
        return self.checkpoint.model.config.context

    def draft_studies(
        self, studies: list[list[StudyImage]], contexts: list[ClinicalContext | None] | None = None
    ) -> list[Draft]:
        """One draft per study, in order; a study without images gets a draft without sentences.

        ``contexts`` (one per study) feed a model trained with context; a missing one is read as unknown age,
        sex and indication, as in training. A model trained without context ignores them.
        """
        if contexts is not None and len(contexts) != len(studies):
            raise ValueError(f"{len(contexts)} contexts for {len(studies)} studies")
        size = self.checkpoint.model.config.image_size
        arrays, uids, where = [], [], []
        for index, study in enumerate(studies):
            if not study:
                continue
            refs = [ImageRef(img.path, img.view_position, img.sop_instance_uid) for img in study]
            views, frontal_uid = load_views(refs, size)
            arrays.append(views)
            uids.append(frontal_uid or study[0].sop_instance_uid)
            where.append(index)
        texts: list[str] = []
        if arrays:
            given = contexts or [None] * len(studies)
            prefix = context_prefixes(
                self.checkpoint.model, self.checkpoint.vocab, self.checkpoint.rules, [given[i] for i in where]
            )
            texts = decode(
                self.checkpoint.model,
                torch.from_numpy(np.stack(arrays)),
                self.checkpoint.vocab,
                beam_size=self.settings.beam_size,
                length_penalty=self.settings.length_penalty,
                max_tokens=self.settings.max_tokens,
                batch_size=self.settings.batch_size,
                prefix=prefix,
            )
        read = [
            (c or ClinicalContext()) if self.uses_context else None for c in contexts or [None] * len(studies)
        ]
        drafts = [Draft(self.model_name, self.model_version, [], read[i]) for i in range(len(studies))]
        for index, uid, text in zip(where, uids, texts, strict=True):
            sentences = [DraftSentence(s, uid) for s in split_sentences(text)]
            drafts[index] = Draft(self.model_name, self.model_version, sentences, read[index])
        return drafts


def load_drafter(settings: FindingsSettings) -> Drafter | None:
    """The configured drafter, or None when ``settings.checkpoint`` is unset."""
    if settings.checkpoint is None:
        log.info(NOT_CONFIGURED)
        return None
    device = pick_device(settings.device)
    loaded = load_checkpoint(settings.checkpoint, device)
    log.info(
        "findings model %s %s from %s on %s", loaded.model_name, loaded.model_version, loaded.folder, device
    )
    return Drafter(loaded, settings, device)
