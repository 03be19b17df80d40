"""Stage ``draft_findings``: draft findings from the study's images with the configured model.

With no checkpoint configured the stage records "no findings model configured" and writes no text at all:
a draft must never be invented. Drafts are stored sentence by sentence, each with the SOP Instance UID of
the image it was generated from, and marked preliminary with the model's name and version.

A model trained with the clinical context (age, sex, indication) gets it from
:func:`gateway.findings.context.indexed_context`, the function ``gateway findings export`` wrote its training
manifest with, so the prefix it reads here is built as in training. The draft records the context it used.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from gateway.errors import PermanentStageError
from gateway.findings.settings import FindingsSettings
from gateway.index.models import Study
from gateway.pipeline.stage import StageContext

log = logging.getLogger(__name__)

NO_MODEL = "no findings model configured"
IMAGE_MODALITIES = frozenset({"CR", "DX", "DR", "RG"})


@functools.lru_cache(maxsize=2)
def _drafter(settings_json: str) -> Any:
    from gateway.findings.service import load_drafter

    return load_drafter(FindingsSettings.model_validate_json(settings_json))


def _record(ctx: StageContext, study: Study, content: dict[str, Any]) -> dict[str, Any]:
    ctx.put_document(study, key="draft.json", kind="draft", media_type="application/json", content=content)
    return {"status": content.get("status"), "sentences": len(content.get("sentences") or [])}


def run(ctx: StageContext, study: Study) -> dict[str, Any]:
    settings = ctx.settings.findings
    url = ctx.settings.pipeline.inference_url
    if url is None and settings.checkpoint is None:
        return _record(ctx, study, {"status": NO_MODEL, "sentences": []})
    from gateway.findings.service import StudyImage

    images = [
        StudyImage(
            sop_instance_uid=i.sop_instance_uid,
            path=Path(i.path),
            view_position=i.view_position or s.view_position,
        )
        for i, s in ctx.instances(study)
        if (s.modality or "").upper() in IMAGE_MODALITIES
    ]
    if not images:
        return _record(ctx, study, {"status": "no radiograph in study", "sentences": []})
    from gateway.findings.context import indexed_context

    if url is not None:
        # The service holds the model (on a GPU host, say) and batches studies from all workers; it reads the
        # context only if its model was trained with it.
        from gateway.inference.client import draft_remote

        with ctx.sessions() as session:
            context = indexed_context(session, study, [i.path for i in images])
        payload = [(i.sop_instance_uid, i.path.read_bytes(), i.view_position) for i in images]
        return _record(ctx, study, draft_remote(url, payload, context=context.to_json()))
    drafter = _drafter(settings.model_dump_json())
    if drafter is None:
        raise PermanentStageError(NO_MODEL)
    local = None
    if drafter.uses_context:
        with ctx.sessions() as session:
            local = indexed_context(session, study, [i.path for i in images])
    draft = drafter.draft_studies([images], [local])[0]
    from gateway.inference.findings import draft_to_json

    return _record(ctx, study, draft_to_json(draft))
