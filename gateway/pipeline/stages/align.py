"""Pipeline stage ``align``: link the read report's sentences (and drafted findings) to image instances.

This is the I/O edge of :func:`gateway.align.align`: it loads the read document, figure images, the Key
Object Selection and the draft from the index and the artifact store, renders instances on demand, and stores
the links as the study version's ``links.json`` document.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from pydicom import dcmread

from gateway.align import Alignment, AlignOptions, InstanceInfo, Rendering, align
from gateway.align.features import InstanceFeatures, renderer, reuse_or_compute, unpack
from gateway.align.kos import kos_references
from gateway.align.model import KOS_SOP_CLASS
from gateway.dicom.sopclasses import ENCAPSULATED_PDF, TEXT_SR
from gateway.imaging import ImagingError, read_dataset, render_dataset, stored_values
from gateway.index.models import Instance, Series, Study
from gateway.pipeline.stage import StageContext
from gateway.pipeline.stages.read_report import primary_report
from gateway.settings import Settings

log = logging.getLogger(__name__)
_NOT_IMAGES = TEXT_SR | {ENCAPSULATED_PDF, KOS_SOP_CLASS}


def instance_info(inst: Instance, series: Series) -> InstanceInfo:
    return InstanceInfo(
        sop_instance_uid=inst.sop_instance_uid,
        sop_class_uid=inst.sop_class_uid,
        series_instance_uid=series.series_instance_uid,
        series_number=series.series_number,
        instance_number=inst.instance_number,
        modality=series.modality,
        body_part=series.body_part,
        laterality=series.laterality,
        view_position=inst.view_position or series.view_position,
        series_description=series.series_description,
        image_laterality=inst.image_laterality,
        window_center=inst.window_center,
        window_width=inst.window_width,
        rows=inst.rows,
        columns=inst.columns,
    )


def options_from(settings: Settings) -> AlignOptions:
    f = settings.fhir
    return AlignOptions(
        anatomy_cues=f.anatomy_cues,
        figure_min_score=f.figure_min_score,
        figure_margin=f.figure_margin,
        shortlist=f.figure_shortlist,
        figure_fidelity=f.figure_fidelity,
        figure_foreign_fidelity=f.figure_foreign_fidelity,
        figure_foreign=f.figure_foreign,
        neighbour_margin=f.figure_neighbour_margin,
        max_refs_per_sentence=f.max_refs_per_sentence,
        max_refs_per_document=f.max_refs_per_document,
    )


def _matching_features(
    ctx: StageContext, study: Study, pairs: Sequence[tuple[Instance, Series]]
) -> dict[str, InstanceFeatures]:
    """The features the ``extract`` stage kept; any instance they miss (a study version extracted before
    features existed, or an instance whose pixels failed then) is computed now from its file."""
    features: dict[str, InstanceFeatures] = {}
    docs = ctx.documents(study, stage="extract", kind="features")
    if docs and docs[-1].path and Path(docs[-1].path).is_file():
        features = unpack(Path(docs[-1].path))
    missing = [
        (i.sop_instance_uid, i.digest, i.path)
        for i, _ in pairs
        if i.sop_instance_uid not in features and i.rows is not None and i.sop_class_uid not in _NOT_IMAGES
    ]
    if missing:
        computed, _ = reuse_or_compute(missing, {}, max_pixels=ctx.settings.imaging.max_pixels)
        features.update((f.sop_instance_uid, f) for f in computed)
    return features


def _full_resolution(paths: Mapping[str, str], max_pixels: int) -> Callable[[str], Rendering | None]:
    """Reads one instance at full resolution, for the final registration of a figure's few candidates."""

    def read(uid: str) -> Rendering | None:
        path = paths.get(uid)
        if path is None:
            return None
        try:
            ds = read_dataset(path)
            shown = render_dataset(ds, max_pixels=max_pixels)
            return Rendering(shown, stored_values(ds, max_pixels=max_pixels))
        except ImagingError as exc:
            log.debug("no full-resolution pixels for %s: %s", uid, exc)
            return None

    return read


def _decode(path: str) -> npt.NDArray[np.uint8] | None:
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    return None if image is None else np.asarray(image, dtype=np.uint8)


def compute_alignment(ctx: StageContext, study: Study) -> Alignment:
    """Gather the inputs of the aligner for ``study`` at ``ctx.study_version`` and run it."""
    docs = ctx.documents(study, stage="read_report", kind="document")
    primary = primary_report(docs)
    document: dict[str, Any] = (
        dict(primary.content or {}) if primary is not None else {"paragraphs": [], "figures": []}
    )
    artifacts = {d.key: d.path for d in ctx.documents(study, stage="read_report") if d.path}
    figure_images: dict[str, npt.NDArray[np.uint8]] = {}
    for fig in document.get("figures", []):
        path = artifacts.get(str(fig.get("artifact")))
        if path and Path(path).is_file():
            decoded = _decode(path)
            if decoded is not None:
                figure_images[str(fig["artifact"])] = decoded
    pairs = ctx.instances(study)
    features = _matching_features(ctx, study, pairs)
    infos = []
    for inst, series in pairs:
        info = instance_info(inst, series)
        found = features.get(inst.sop_instance_uid)
        if found is not None:
            info = replace(info, image_position=found.position, image_orientation=found.orientation)
        infos.append(info)
    paths = {i.sop_instance_uid: i.path for i, _ in pairs}
    kos: list[str] = []
    for inst, _ in pairs:
        if inst.sop_class_uid == KOS_SOP_CLASS:
            try:
                kos.extend(
                    u for u in kos_references(dcmread(inst.path, stop_before_pixels=True)) if u not in kos
                )
            except Exception as exc:  # an unreadable KOS only loses its hints
                log.warning("cannot read key object selection %s: %s", inst.sop_instance_uid, exc)
    drafts = ctx.documents(study, stage="draft_findings", kind="draft")
    draft = dict(drafts[-1].content or {}) if drafts else None
    return align(
        document,
        infos,
        figure_images=figure_images,
        instance_images=renderer(features),
        full_resolution=_full_resolution(paths, ctx.settings.imaging.max_pixels),
        kos=kos,
        draft=draft,
        options=options_from(ctx.settings),
    )


def run(ctx: StageContext, study: Study) -> dict[str, Any]:
    alignment = compute_alignment(ctx, study)
    links = [link.to_json() for link in alignment.links]
    ctx.put_document(
        study,
        key="links.json",
        kind="links",
        media_type="application/json",
        content={"links": links, "sentences": len(alignment.sentences)},
    )
    by_method: dict[str, int] = {}
    for link in alignment.links:
        if link.resolved:
            by_method[link.method] = by_method.get(link.method, 0) + 1
    return {
        "sentences": len(alignment.sentences),
        "links": len(links),
        "unresolved": sum(1 for link in alignment.links if not link.resolved),
        "by_method": by_method,
    }
