"""The aligner: a pure function from a read report and the study's instances to sentence→image links.

Methods, strongest first (see ``docs/alignment.md``):

1. ``explicit``: "Se 3 Im 45", "series 4, image 112", "(3:45)" through (Series Number, Instance Number),
   PS3.3 C.7.3.1 and C.7.6.1. A position that matches no instance, or more than one, stays unresolved.
2. ``figure``: "图1"/"Figure 2" → the embedded figure with that label → the instance it was made from, by
   image similarity (:mod:`gateway.align.figures`).
3. ``kos``: figure N → the N-th image of the study's Key Object Selection, when similarity cannot decide.
4. ``anatomy``: anatomy, laterality, view and window cues → series (:mod:`gateway.align.anatomy`); only for
   sentences with no stronger link, and only when enabled.
5. ``drafted``: a drafted finding → the instance it was generated from.

Every sentence is kept in :attr:`Alignment.sentences`, linked or not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.align.anatomy import find_cues, resolve_cues, series_views
from gateway.align.figures import FigureIndex, FigureMatch, Rendering
from gateway.align.model import Alignment, AlignOptions, InstanceInfo, Link, Sentence
from gateway.align.sentences import split_sentences
from gateway.align.windows import alternative_windows

Image = npt.NDArray[np.generic]
#: Renders the given instances: each as its displayed image, or as a :class:`Rendering` that also carries the
#: stored values, so that a figure captured under another window can still be matched.
InstanceImages = Callable[[Sequence[InstanceInfo]], Mapping[str, Image | Rendering]]


def _refs_of(paragraph: Mapping[str, Any]) -> list[dict[str, Any]]:
    if "figure_refs" in paragraph:
        return [dict(r) for r in paragraph.get("figure_refs") or []]
    # A document from before figure references were part of the schema: find them here.
    from gateway.reading.figure_refs import find_figure_refs

    return [r.model_dump() for r in find_figure_refs(str(paragraph.get("text", "")))]


def document_sentences(document: Mapping[str, Any]) -> list[tuple[Sentence, list[dict[str, Any]]]]:
    """Every sentence of every paragraph, with the figure references that fall inside it."""
    out: list[tuple[Sentence, list[dict[str, Any]]]] = []
    for paragraph in document.get("paragraphs", []):
        text = str(paragraph.get("text", ""))
        refs = _refs_of(paragraph)
        spans = [(int(r["start"]), int(r["end"])) for r in refs]
        index = int(paragraph.get("index", len(out)))
        for sentence in split_sentences(
            text, paragraph=index, section=paragraph.get("section"), protect=spans
        ):
            inside = [r for r in refs if sentence.start <= int(r["start"]) < sentence.end]
            out.append((sentence, inside))
    return out


def _neighbours(instances: Sequence[InstanceInfo]) -> dict[str, list[str]]:
    """Each instance's adjacent instances in its series, by Instance Number (PS3.3 C.7.6.1)."""
    by_series: dict[str, list[InstanceInfo]] = {}
    for inst in instances:
        if inst.instance_number is not None:
            by_series.setdefault(inst.series_instance_uid, []).append(inst)
    out: dict[str, list[str]] = {}
    for members in by_series.values():
        members.sort(key=lambda i: i.instance_number or 0)
        for k, inst in enumerate(members):
            out[inst.sop_instance_uid] = [
                m.sop_instance_uid for m in members[max(0, k - 1) : k + 2] if m is not inst
            ]
    return out


class _Figures:
    """Resolves figure labels once per figure, building the image index only if a figure needs it."""

    def __init__(
        self,
        document: Mapping[str, Any],
        instances: Sequence[InstanceInfo],
        figure_images: Mapping[str, Image],
        instance_images: InstanceImages | None,
        kos: Sequence[str],
        options: AlignOptions,
    ) -> None:
        self._figures = list(document.get("figures", []))
        self._instances = [i for i in instances if i.rows is not None]
        self._figure_images = figure_images
        self._instance_images = instance_images
        self._kos = list(kos)
        self._options = options
        self._index: FigureIndex | None = None
        self._cache: dict[int, tuple[Link | None, dict[str, Any]]] = {}
        self._by_uid = {i.sop_instance_uid: i for i in instances}

    def _figure(self, ref: Mapping[str, Any]) -> dict[str, Any] | None:
        label, number = ref.get("label"), ref.get("number")
        for fig in self._figures:
            if label is not None and fig.get("label") == label:
                return dict(fig)
        for fig in self._figures:
            if number is not None and fig.get("number") == number:
                return dict(fig)
        return None

    def _match(self, image: Image) -> FigureMatch | None:
        if not self._instances or self._instance_images is None:
            return None
        if self._index is None:
            self._index = FigureIndex(
                self._instance_images(self._instances),
                windows=alternative_windows(self._instances),
                series={i.sop_instance_uid: i.series_instance_uid for i in self._instances},
                neighbours=_neighbours(self._instances),
            )
        return self._index.match(image, shortlist=self._options.shortlist)

    def resolve(self, ref: Mapping[str, Any]) -> tuple[str | None, float, str, dict[str, Any]]:
        """(SOP Instance UID or None, confidence, method, detail) for a figure reference."""
        number = ref.get("number")
        fig = self._figure(ref)
        detail: dict[str, Any] = {}
        match: FigureMatch | None = None
        if fig is not None:
            detail["figure"] = fig.get("artifact")
            image = self._figure_images.get(str(fig.get("artifact")))
            if image is not None:
                match = self._match(image)
        kos_uid = None
        if (
            isinstance(number, int)
            and 1 <= number <= len(self._kos)
            and self._kos[number - 1] in self._by_uid
        ):
            kos_uid = self._kos[number - 1]
        opts = self._options
        if match is not None and match.sop_instance_uid is not None:
            detail.update(
                score=round(match.score, 4), margin=round(match.margin, 4), runner_up=match.runner_up
            )
            if match.window is not None:
                detail["window"] = list(match.window)
            if match.score >= opts.figure_min_score and match.margin >= opts.figure_margin:
                confidence = min(0.99, 0.4 + 0.6 * match.score)
                if kos_uid == match.sop_instance_uid:
                    confidence = 0.99
                return match.sop_instance_uid, confidence, "figure", detail
            # Not distinctive enough; the KOS may still say which image it is.
            if kos_uid is not None and kos_uid in (match.sop_instance_uid, match.runner_up):
                return kos_uid, 0.9, "kos", detail
        if kos_uid is not None:
            return kos_uid, 0.75, "kos", detail
        detail["reason"] = (
            "no embedded figure with this label"
            if fig is None
            else "figure image not available"
            if match is None
            else "no instance matches the figure distinctively"
        )
        return None, 0.0, "figure", detail


def _positions(instances: Sequence[InstanceInfo]) -> dict[tuple[int, int], list[InstanceInfo]]:
    table: dict[tuple[int, int], list[InstanceInfo]] = {}
    for inst in instances:
        if inst.series_number is not None and inst.instance_number is not None:
            table.setdefault((inst.series_number, inst.instance_number), []).append(inst)
    return table


def align(
    document: Mapping[str, Any],
    instances: Sequence[InstanceInfo],
    *,
    figure_images: Mapping[str, Image] | None = None,
    instance_images: InstanceImages | None = None,
    kos: Sequence[str] = (),
    draft: Mapping[str, Any] | None = None,
    options: AlignOptions | None = None,
) -> Alignment:
    """Link the sentences of ``document`` (the read-document JSON) to the study's ``instances``.

    ``figure_images`` maps a figure's artifact name to its decoded pixels; ``instance_images`` renders the
    given instances (called at most once, and only when a figure has to be matched); ``kos`` lists the SOP
    Instance UIDs of the study's Key Object Selection in order; ``draft`` is the drafted-findings content.
    """
    opts = options or AlignOptions()
    positions = _positions(instances)
    figures = _Figures(document, instances, figure_images or {}, instance_images, kos, opts)
    views = series_views(instances) if opts.anatomy_cues else []
    by_uid = {i.sop_instance_uid: i for i in instances}
    sentences: list[Sentence] = []
    links: list[Link] = []
    for sentence, refs in document_sentences(document):
        sentences.append(sentence)
        mine: list[Link] = []
        base = {"text": sentence.text, "paragraph": sentence.paragraph, "sentence": sentence.index}
        for ref in refs:
            raw = str(ref.get("raw", ""))
            if ref.get("kind") == "position":
                hits = positions.get((int(ref.get("series") or -1), int(ref.get("instance") or -1)), [])
                if len(hits) == 1:
                    mine.append(
                        Link(
                            image_ref=raw,
                            sop_instance_uid=hits[0].sop_instance_uid,
                            series_instance_uid=hits[0].series_instance_uid,
                            method="explicit",
                            confidence=1.0,
                            **base,  # type: ignore[arg-type]
                        )
                    )
                else:
                    reason = (
                        "no instance at this position" if not hits else "several instances at this position"
                    )
                    mine.append(
                        Link(
                            image_ref=raw,
                            sop_instance_uid=None,
                            series_instance_uid=None,
                            method="explicit",
                            confidence=0.0,
                            resolved=False,
                            detail={
                                "reason": reason,
                                "series": ref.get("series"),
                                "instance": ref.get("instance"),
                            },
                            **base,  # type: ignore[arg-type]
                        )
                    )
            else:
                uid, confidence, method, detail = figures.resolve(ref)
                found = by_uid.get(uid) if uid else None
                mine.append(
                    Link(
                        image_ref=raw,
                        sop_instance_uid=uid,
                        series_instance_uid=found.series_instance_uid if found else None,
                        method=method,  # type: ignore[arg-type]
                        confidence=confidence,
                        resolved=uid is not None,
                        detail=detail,
                        **base,  # type: ignore[arg-type]
                    )
                )
        if opts.anatomy_cues and not any(link.resolved for link in mine):
            cues = find_cues(sentence.text)
            series = resolve_cues(cues, views, max_series=opts.anatomy_max_series)
            for uid in series:
                mine.append(
                    Link(
                        image_ref=None,
                        sop_instance_uid=None,
                        series_instance_uid=uid,
                        method="anatomy",
                        confidence=round(0.4 / len(series), 3),
                        detail={"cues": [c.name for c in cues]},
                        **base,  # type: ignore[arg-type]
                    )
                )
        links.extend(mine)
    for i, item in enumerate((draft or {}).get("sentences") or []):
        uid = str(item.get("sop_instance_uid") or "")
        drafted_from = by_uid.get(uid)
        links.append(
            Link(
                text=str(item.get("text", "")),
                image_ref=None,
                sop_instance_uid=uid or None,
                series_instance_uid=drafted_from.series_instance_uid if drafted_from else None,
                method="drafted",
                confidence=1.0 if drafted_from else 0.0,
                resolved=drafted_from is not None,
                sentence=i,
                source="draft",
                detail={
                    "model": (draft or {}).get("model_name"),
                    "version": (draft or {}).get("model_version"),
                },
            )
        )
    return Alignment(tuple(sentences), tuple(links))
