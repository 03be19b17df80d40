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

from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt

from gateway.align.anatomy import find_cues, resolve_cues, series_views
from gateway.align.context import foreign_words, window_cues
from gateway.align.figures import Candidate, FigureIndex, Rendering, to_grey
from gateway.align.geometry import Geometry
from gateway.align.model import Alignment, AlignOptions, InstanceInfo, Link, Sentence
from gateway.align.panels import Box, split_panels
from gateway.align.sentences import split_sentences
from gateway.align.verify import Registered, Verifier
from gateway.align.windows import alternative_windows

Image = npt.NDArray[np.generic]
#: Renders the given instances: each as its displayed image, or as a :class:`Rendering` that also carries the
#: stored values, so that a figure captured under another window can still be matched.
InstanceImages = Callable[[Sequence[InstanceInfo]], Mapping[str, Image | Rendering]]
#: Renders one instance at full resolution (None when it cannot), for registering a figure onto it.
FullResolution = Callable[[str], Rendering | None]


def _refs_of(paragraph: Mapping[str, Any]) -> list[dict[str, Any]]:
    if "figure_refs" in paragraph:
        return [dict(r) for r in paragraph.get("figure_refs") or []]
    # A document from before figure references were part of the schema: find them here.
    from gateway.reading.figure_refs import find_figure_refs

    return [r.model_dump() for r in find_figure_refs(str(paragraph.get("text", "")))]


@overload
def document_sentences(
    document: Mapping[str, Any], *, with_role: Literal[False] = False
) -> list[tuple[Sentence, list[dict[str, Any]]]]: ...


@overload
def document_sentences(
    document: Mapping[str, Any], *, with_role: Literal[True]
) -> list[tuple[Sentence, list[dict[str, Any]], str]]: ...


def document_sentences(document: Mapping[str, Any], *, with_role: bool = False) -> list[Any]:
    """Every sentence of every paragraph, with the figure references that fall inside it (and, with
    ``with_role``, its paragraph's role: "body" or "caption")."""
    out: list[Any] = []
    for paragraph in document.get("paragraphs", []):
        text = str(paragraph.get("text", ""))
        refs = _refs_of(paragraph)
        spans = [(int(r["start"]), int(r["end"])) for r in refs]
        index = int(paragraph.get("index", len(out)))
        refs.sort(key=lambda r: int(r["start"]))
        starts = [int(r["start"]) for r in refs]
        for sentence in split_sentences(
            text, paragraph=index, section=paragraph.get("section"), protect=spans
        ):
            inside = refs[bisect_left(starts, sentence.start) : bisect_left(starts, sentence.end)]
            role = str(paragraph.get("role") or "body")
            out.append((sentence, inside, role) if with_role else (sentence, inside))
    return out


#: SOP classes that carry no image to link a figure to (PS3.4 B.5): reports, SR, KOS, presentation states.
_NOT_IMAGES = ("1.2.840.10008.5.1.4.1.1.104.", "1.2.840.10008.5.1.4.1.1.88.", "1.2.840.10008.5.1.4.1.1.11.")

Resolution = tuple[str | None, float, str, dict[str, Any]]
#: Distinct neighbourhoods among the ranked candidates that are registered and compared.
_PEAKS = 3
#: The coarse pass looks at thin series every this many millimetres.
_COARSE_MM = 2.5
#: Slices of the best match's neighbourhood registered properly after the quick scan.
_REFINE = 3


def _fit(registered: Registered) -> float:
    """How well a registered candidate fits: structure (fidelity) tells regions and other patients apart,
    the detailed score tells adjacent slices and a smoothed reconstruction from the sharp source."""
    return 0.5 * (registered.score + registered.fidelity)


class _Figures:
    """Resolves figure labels, building the image index only if a figure needs it (once per figure crop)."""

    def __init__(
        self,
        document: Mapping[str, Any],
        instances: Sequence[InstanceInfo],
        figure_images: Mapping[str, Image],
        instance_images: InstanceImages | None,
        kos: Sequence[str],
        options: AlignOptions,
        full_resolution: FullResolution | None = None,
    ) -> None:
        self._figures = list(document.get("figures", []))
        self._instances = [
            i for i in instances if i.rows is not None and not i.sop_class_uid.startswith(_NOT_IMAGES)
        ]
        self._figure_images = figure_images
        self._instance_images = instance_images
        self._full_resolution = full_resolution
        self._full: dict[str, Rendering | None] = {}
        self._kos = list(kos)
        self._options = options
        self._index: FigureIndex | None = None
        self._geometry = Geometry(self._instances)
        self._views = series_views(self._instances)
        self._by_uid = {i.sop_instance_uid: i for i in instances}
        self._panels: dict[str, list[Box]] = {}
        self._related_cache: dict[str, set[str]] = {}
        self._cache: dict[tuple[str, str | None, tuple[str, ...], bool], Resolution] = {}

    # -- which figure, which crop ---------------------------------------------------------------------

    def _figure(self, ref: Mapping[str, Any]) -> dict[str, Any] | None:
        label, number = ref.get("label"), ref.get("number")
        for fig in self._figures:
            if label is not None and fig.get("label") == label:
                return dict(fig)
        for fig in self._figures:
            if number is not None and fig.get("number") == number:
                return dict(fig)
        return None

    def image_series(self) -> list[str]:
        return sorted({i.series_instance_uid for i in self._instances})

    def _crops(self, fig: Mapping[str, Any], panel: str | None) -> list[tuple[str | None, Image]] | str:
        """The figure image, or its panels; a string is the reason there is nothing to match.

        A reference without a panel letter gets the panels only if the figure looks like a montage; the
        caller still tries the whole figure first, since a single image can have a flat band in its middle.
        """
        artifact = str(fig.get("artifact"))
        image = self._figure_images.get(artifact)
        if image is None:
            return "figure image not available"
        if artifact not in self._panels:
            self._panels[artifact] = split_panels(image)
        panels = self._panels[artifact]
        if panel:
            k = ord(panel.upper()[0]) - ord("A")
            if not panels:
                return [(None, image)]  # one image: "图2A" then names the figure itself
            if not 0 <= k < len(panels):
                return f"the figure has {len(panels)} panels, none is {panel}"
            x0, y0, x1, y1 = panels[k]
            return [(panel.upper()[0], image[y0:y1, x0:x1])]
        if panels:
            return [(chr(ord("A") + k), image[y0:y1, x0:x1]) for k, (x0, y0, x1, y1) in enumerate(panels)]
        return [(None, image)]

    # -- matching --------------------------------------------------------------------------------------

    def _index_of(self) -> FigureIndex | None:
        if not self._instances or self._instance_images is None:
            return None
        if self._index is None:
            self._index = FigureIndex(
                self._instance_images(self._instances),
                windows=alternative_windows(self._instances),
                series={i.sop_instance_uid: i.series_instance_uid for i in self._instances},
                coarse=self._geometry.sampled(_COARSE_MM),
            )
        return self._index

    def _render(self, uid: str, window: tuple[float, float] | None) -> Any:
        """The instance's pixels for registration as the index holds them: its stored values when it has
        them (the tone map then stands for any window), else its 8-bit rendering."""
        index = self._index
        if index is None:
            return None
        values = index.values(uid)
        if values is not None:
            return -values.values if values.monochrome1 else values.values
        return index.image(uid)

    def _render_full(self, uid: str, window: tuple[float, float] | None) -> Any:
        """The same at full resolution, read by the caller's ``full_resolution`` (None: not available)."""
        if self._full_resolution is None:
            return None
        if uid not in self._full:
            self._full[uid] = self._full_resolution(uid)
        full = self._full[uid]
        if full is None:
            return None
        if full.values is not None:
            return -full.values.values if full.values.monochrome1 else full.values.values
        return to_grey(full.image)

    def _at_full_resolution(
        self, image: Image, head: Candidate, ranked: list[Registered]
    ) -> list[Registered]:
        """The best slice and its adjacent ones registered again at full resolution, best first; adjacent
        thin slices differ in detail that the stored 128 px renderings may not keep."""
        if self._full_resolution is None:
            return ranked
        fine = Verifier(image, self._render_full)
        top = fine.register(replace(head, sop_instance_uid=ranked[0].sop_instance_uid), like=ranked[0])
        if top is None or top.score <= -1.0:
            return ranked
        out = [top]
        for uid in self._geometry.around(top.sop_instance_uid, 1):
            if uid != top.sop_instance_uid:
                result = fine.register(replace(head, sop_instance_uid=uid), like=top)
                if result is not None and result.score > -1.0:
                    out.append(result)
        return sorted(out, key=lambda r: r.score, reverse=True)

    def _related(self, uid: str) -> set[str]:
        """The best match's neighbourhood (nearby slices of its series) and those slices' twins."""
        if uid not in self._related_cache:
            radius = self._geometry.radius(uid, self._options.neighbourhood_mm)
            near = self._geometry.around(uid, radius)
            out = set(near)
            for other in near:
                out.update(self._geometry.twins(other))
            self._related_cache[uid] = out
        return self._related_cache[uid]

    def _display_window(self, candidate: Candidate) -> tuple[float, float] | None:
        """The window ``candidate`` was shown under when it matched: an alternative one, or its own."""
        if candidate.window is not None:
            return candidate.window
        info = self._by_uid.get(candidate.sop_instance_uid)
        if info is None or info.window_center is None or info.window_width is None:
            return None
        return (info.window_center, info.window_width)

    def _neighbourhood(self, head: Candidate) -> list[Candidate]:
        """The head's adjacent slices and the twins of its nearest ones, shown the way the head matched.

        They share the head's frame, so they are registered from the head's warp, not searched for.
        """
        shown = self._display_window(head)
        out: list[Candidate] = []
        for uid in self._geometry.around(head.sop_instance_uid, 2):
            if uid != head.sop_instance_uid:
                out.append(replace(head, sop_instance_uid=uid, score=float("nan")))
        for near in self._geometry.around(head.sop_instance_uid, 1):
            for twin in self._geometry.twins(near):
                out.append(replace(head, sop_instance_uid=twin, score=float("nan"), window=shown))
        return out

    def _match(self, image: Image, context: str) -> Resolution:
        index = self._index_of()
        if index is None:
            return None, 0.0, "figure", {"reason": "figure image not available"}
        opts = self._options
        match = index.match(image, shortlist=opts.shortlist, related=self._related)
        best = match.best
        if best is None:
            return None, 0.0, "figure", {"reason": "no image instance to match"}
        detail: dict[str, Any] = {"score": round(best.score, 4)}
        if best.score < opts.figure_min_score:
            detail["reason"] = "no instance matches the figure"
            return None, 0.0, "figure", detail
        # The heads of distinct neighbourhoods among the ranked candidates: the real rivals of each other.
        heads: list[Candidate] = []
        for candidate in match.candidates:
            if not any(candidate.sop_instance_uid in self._related(h.sop_instance_uid) for h in heads):
                heads.append(candidate)
                if len(heads) == _PEAKS:
                    break
        verifier = Verifier(image, self._render)
        registered_heads = [
            (h, r) for h in heads if (r := verifier.register(h)) is not None and r.score > -1.0
        ]
        if not registered_heads:
            detail["reason"] = "the best match could not be registered"
            return None, 0.0, "figure", detail
        registered_heads.sort(key=lambda hr: _fit(hr[1]), reverse=True)
        head, head_registered = registered_heads[0]
        registered = {head.sop_instance_uid: head_registered}
        # Scan the head's neighbourhood in its frame (no search: adjacent slices share the frame), then
        # register the best few properly: the ranking's best may sit several thin slices from the source.
        radius = self._geometry.radius(head.sop_instance_uid, opts.neighbourhood_mm)
        quick: dict[str, Registered] = {}
        for uid in self._geometry.around(head.sop_instance_uid, radius):
            if uid != head.sop_instance_uid:
                result = verifier.register(
                    replace(head, sop_instance_uid=uid), like=head_registered, optimise=False
                )
                if result is not None and result.score > -1.0:
                    quick[uid] = result
        quick[head.sop_instance_uid] = head_registered
        best_quick = sorted(quick, key=lambda u: _fit(quick[u]), reverse=True)[:_REFINE]
        for uid in best_quick:
            result = verifier.register(replace(head, sop_instance_uid=uid), like=head_registered)
            if result is not None and result.score > -1.0:
                registered[uid] = result
        peak = max(registered, key=lambda u: _fit(registered[u]))
        centre = replace(head, sop_instance_uid=peak)
        for candidate in self._neighbourhood(centre):
            if candidate.sop_instance_uid not in registered:
                result = verifier.register(candidate, like=registered[peak])
                if result is not None and result.score > -1.0:
                    registered[candidate.sop_instance_uid] = result
        # Twins: the same slices reconstructed in another series. A window word picks the series; otherwise
        # the series whose registered rendering fits best.
        series_of = {u: self._geometry.series_of(u) for u in registered}
        chosen_series = series_of[head.sop_instance_uid]
        if len(set(series_of.values())) > 1:
            cues = window_cues(context)
            wanted = set(resolve_cues(cues, self._views, max_series=len(self._views))) if cues else set()
            in_cue = {s for s in series_of.values() if s in wanted}
            # A window word names one of the same slices reconstructed twice; a thicker slab over the
            # source is told apart by the fit, whatever the caption says about the window.
            reconstructions = all(
                self._geometry.same_slices(head.sop_instance_uid, u)
                for u in registered
                if series_of[u] in in_cue
            )
            if len(in_cue) == 1 and reconstructions:
                chosen_series = in_cue.pop()
                detail["series_choice"] = "window cue: " + ", ".join(c.name for c in cues)
            else:
                fittest = max(registered.values(), key=lambda r: r.score)
                chosen_series = series_of[fittest.sop_instance_uid]
                detail["series_choice"] = "the series whose rendering fits the figure best"
        ranked = sorted(
            (r for u, r in registered.items() if series_of[u] == chosen_series),
            key=lambda r: r.score,
            reverse=True,
        )
        top = ranked[0]
        # The margin rule: the fit must beat every distinct neighbourhood elsewhere (other regions, series
        # that are no twins), each at its own best registration.
        mine = self._related(top.sop_instance_uid)
        rivals = [r for _, r in registered_heads if r.sop_instance_uid not in mine]
        if rivals:
            rival = max(rivals, key=_fit)
            detail.update(margin=round(_fit(top) - _fit(rival), 4), runner_up=rival.sop_instance_uid)
            if _fit(top) - _fit(rival) < opts.figure_margin:
                detail["reason"] = (
                    "no instance matches the figure distinctively (another region or series as well)"
                )
                return None, 0.0, "figure", detail
        foreign = foreign_words(context)
        needed = opts.figure_foreign_fidelity if foreign else opts.figure_fidelity
        detail.update(registered_score=round(top.score, 4), fidelity=round(top.fidelity, 4))
        if foreign:
            detail["foreign_words"] = foreign[:5]
        if head.window is not None:
            detail["window"] = list(head.window)
        if foreign and opts.figure_foreign == "unresolved":
            detail["reason"] = (
                "the report says this figure shows another study (a prior, outside or comparison image)"
            )
            return None, 0.0, "figure", detail
        if top.fidelity < needed:
            detail["reason"] = (
                f"the best match does not verify: registered, it differs from the figure in structure "
                f"(fidelity {top.fidelity:.3f} < {needed})"
            )
            return None, 0.0, "figure", detail
        # Which of the adjacent slices: decided at full resolution where the caller can read it.
        closest = self._at_full_resolution(image, head, ranked)
        if closest[0].sop_instance_uid != top.sop_instance_uid:
            detail["full_resolution"] = "chose an adjacent slice"
        top_uid = closest[0].sop_instance_uid
        detail.update(
            fine_detail=round(closest[0].detail, 4),
            fine_score=round(closest[0].score, 4),
            local_residual=round(closest[0].local, 4),
        )
        ranked = closest
        top = replace(top, sop_instance_uid=top_uid, score=closest[0].score)
        ties = [
            r
            for r in ranked[1:]
            if (1.0 - r.score) < (1.0 - top.score) * (1.0 + opts.neighbour_margin)
            and (self._geometry.distance(r.sop_instance_uid, top.sop_instance_uid) or 0) <= 2
        ]
        confidence = min(0.99, 0.5 + 0.5 * top.fidelity)
        if ties:
            detail["neighbours"] = [
                {
                    "sop_instance_uid": r.sop_instance_uid,
                    "instance_number": self._by_uid[r.sop_instance_uid].instance_number,
                    "score": round(r.score, 4),
                }
                for r in ties
            ]
            confidence *= 0.8
        elif len(ranked) > 1:
            detail["neighbour_margin"] = round((1.0 - ranked[1].score) / max(1e-6, 1.0 - top.score) - 1.0, 3)
        return top.sop_instance_uid, confidence, "figure", detail

    def _kos_uid(self, number: Any) -> str | None:
        if (
            isinstance(number, int)
            and 1 <= number <= len(self._kos)
            and self._kos[number - 1] in self._by_uid
        ):
            return self._kos[number - 1]
        return None

    def resolve(self, ref: Mapping[str, Any], context: str) -> list[Resolution]:
        """(SOP Instance UID or None, confidence, method, detail) for a figure reference; one per panel."""
        number = ref.get("number")
        fig = self._figure(ref)
        kos_uid = self._kos_uid(number)
        if fig is None:
            if kos_uid is not None:
                return [(kos_uid, 0.75, "kos", {})]
            return [(None, 0.0, "figure", {"reason": "no embedded figure with this label"})]
        crops = self._crops(fig, ref.get("panel"))
        if isinstance(crops, str):
            return [(None, 0.0, "figure", {"figure": fig.get("artifact"), "reason": crops})]
        if len(crops) > 1:
            whole = self._figure_images[str(fig.get("artifact"))]
            crops_or_whole = self._resolve_crops(fig, [(None, whole)], context, None)
            if crops_or_whole[0][0] is not None:
                return crops_or_whole  # one image after all: it verifies as a whole
        return self._resolve_crops(fig, crops, context, kos_uid)

    def _resolve_crops(
        self,
        fig: Mapping[str, Any],
        crops: list[tuple[str | None, Image]],
        context: str,
        kos_uid: str | None,
    ) -> list[Resolution]:
        out: list[Resolution] = []
        for panel, image in crops:
            full_context = f"{context} {fig.get('caption') or ''}"
            key = (
                str(fig.get("artifact")),
                panel,
                tuple(sorted(c.name for c in window_cues(full_context))),
                bool(foreign_words(full_context)),
            )
            if key not in self._cache:
                self._cache[key] = self._match(image, full_context)
            uid, confidence, method, detail = self._cache[key]
            detail = {"figure": fig.get("artifact"), **detail}
            if panel is not None:
                detail["panel"] = panel
            if uid is not None and kos_uid == uid:
                confidence = 0.99
            elif uid is None and kos_uid is not None and len(crops) == 1:
                uid, confidence, method = kos_uid, 0.75, "kos"
            out.append((uid, confidence, method, detail))
        return out


def _positions(instances: Sequence[InstanceInfo]) -> dict[tuple[int, int], list[InstanceInfo]]:
    table: dict[tuple[int, int], list[InstanceInfo]] = {}
    for inst in instances:
        if inst.series_number is not None and inst.instance_number is not None:
            table.setdefault((inst.series_number, inst.instance_number), []).append(inst)
    return table


def _image_number(
    ref: Mapping[str, Any], figures: _Figures, positions: Mapping[tuple[int, int], list[InstanceInfo]]
) -> tuple[int, int] | str | None:
    """For "Image 45" / "IMG 45" without a figure of that number: the position it must mean, or why none.

    None: the report embeds a figure with that number, so the reference is a figure reference.
    """
    number = ref.get("number")
    if not isinstance(number, int) or figures._figure(ref) is not None:
        return None
    series = figures.image_series()
    if len(series) != 1:
        return f"image {number}: no figure {number} in the report and {len(series)} image series in the study"
    numbers = {key[0] for key, hits in positions.items() if hits and hits[0].series_instance_uid == series[0]}
    if len(numbers) != 1:
        return f"image {number}: the study's image series has no single Series Number"
    return next(iter(numbers)), number


def _explicit(
    raw: str,
    base: Mapping[str, Any],
    position: tuple[int, int],
    positions: Mapping[tuple[int, int], list[InstanceInfo]],
    extra: Mapping[str, Any] | None = None,
) -> Link:
    hits = positions.get(position, [])
    if len(hits) == 1:
        return Link(
            image_ref=raw,
            sop_instance_uid=hits[0].sop_instance_uid,
            series_instance_uid=hits[0].series_instance_uid,
            method="explicit",
            confidence=1.0 if not extra else 0.9,
            detail=dict(extra or {}),
            **base,
        )
    reason = "no instance at this position" if not hits else "several instances at this position"
    return Link(
        image_ref=raw,
        sop_instance_uid=None,
        series_instance_uid=None,
        method="explicit",
        confidence=0.0,
        resolved=False,
        detail={"reason": reason, "series": position[0], "instance": position[1], **(extra or {})},
        **base,
    )


def align(
    document: Mapping[str, Any],
    instances: Sequence[InstanceInfo],
    *,
    figure_images: Mapping[str, Image] | None = None,
    instance_images: InstanceImages | None = None,
    full_resolution: FullResolution | None = None,
    kos: Sequence[str] = (),
    draft: Mapping[str, Any] | None = None,
    options: AlignOptions | None = None,
) -> Alignment:
    """Link the sentences of ``document`` (the read-document JSON) to the study's ``instances``.

    ``figure_images`` maps a figure's artifact name to its decoded pixels; ``instance_images`` renders the
    given instances (called at most once, and only when a figure has to be matched); ``full_resolution``
    renders one instance at full resolution for the final registration (optional: without it, what
    ``instance_images`` gave is used); ``kos`` lists the SOP Instance UIDs of the study's Key Object
    Selection in order; ``draft`` is the drafted-findings content.
    """
    opts = options or AlignOptions()
    positions = _positions(instances)
    figures = _Figures(document, instances, figure_images or {}, instance_images, kos, opts, full_resolution)
    views = series_views(instances) if opts.anatomy_cues else []
    by_uid = {i.sop_instance_uid: i for i in instances}
    sentences: list[Sentence] = []
    links: list[Link] = []
    budget = opts.max_refs_per_document
    for sentence, refs, role in document_sentences(document, with_role=True):
        sentences.append(sentence)
        if role == "caption":
            continue  # a caption names its figure; the body's sentences are what link to it
        mine: list[Link] = []
        base: dict[str, Any] = {
            "text": sentence.text,
            "paragraph": sentence.paragraph,
            "sentence": sentence.index,
        }
        kept = refs[: max(0, min(opts.max_refs_per_sentence, budget))]
        budget -= len(kept)
        for ref in kept:
            raw = str(ref.get("raw", ""))
            if ref.get("kind") == "position":
                position = (int(ref.get("series") or -1), int(ref.get("instance") or -1))
                mine.append(_explicit(raw, base, position, positions))
                continue
            if str(ref.get("label") or "").startswith("image:"):
                meant = _image_number(ref, figures, positions)
                if isinstance(meant, tuple):
                    mine.append(
                        _explicit(raw, base, meant, positions, {"assumed": "the study's only image series"})
                    )
                    continue
                if isinstance(meant, str):
                    mine.append(
                        Link(
                            image_ref=raw,
                            sop_instance_uid=None,
                            series_instance_uid=None,
                            method="explicit",
                            confidence=0.0,
                            resolved=False,
                            detail={"reason": meant},
                            **base,
                        )
                    )
                    continue
            for uid, confidence, method, detail in figures.resolve(ref, sentence.text):
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
                        **base,
                    )
                )
        if len(refs) > len(kept):
            mine.append(
                Link(
                    image_ref=None,
                    sop_instance_uid=None,
                    series_instance_uid=None,
                    method="explicit",
                    confidence=0.0,
                    resolved=False,
                    detail={"reason": f"{len(refs) - len(kept)} more references not linked (over the limit)"},
                    **base,
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
                        **base,
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
