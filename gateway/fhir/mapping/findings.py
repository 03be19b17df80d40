"""Coded finding Observations from the report's finding sentences (see ``docs/structured-findings.md``).

Each finding sentence goes through :mod:`gateway.structure`; mentions of the same lesion are merged across
sentences and languages (same finding, same presence, compatible site, no conflicting size: "右肺上叶见结节"
and "The nodule measures 14 mm x 11 mm" are one nodule). Each lesion becomes one Observation:

- ``code``: the SNOMED CT finding (text only where the lexicon has no code);
- ``valueCodeableConcept``: SNOMED CT 52101004 Present / 2667000 Absent;
- ``interpretation``: v3 ObservationInterpretation ``E`` (equivocal) when a hedge ("考虑", "cannot exclude")
  qualifies it, with the cue in text;
- ``bodySite``: the site's SNOMED CT code, and for a site that takes a side, the post-coordinated expression
  ``site:272741003=side`` (272741003 Laterality; 24028007 Right, 7771000 Left, 51440002 Bilateral);
- ``component``: one per dimension, ``valueQuantity`` in UCUM ``mm`` (cm converted): SNOMED CT 81827009
  Diameter for one, 103339001 Long axis / 103340004 Short axis (then a third axis) for more; the count and
  the descriptors as further components;
- ``derivedFrom``: the images the aligner linked to any of its sentences (Media in R4, ImagingSelection
  in R5);
- ``basedOn``, ``subject``, ``effectiveDateTime`` as the sentence Observations; status ``preliminary`` with a
  note, because no reader has approved the extraction (the sentence itself may be final).

The sentence Observation names them in ``hasMember``; they are not added to ``DiagnosticReport.result``,
whose entries HL7 ORU and the PACS SR read as the report's sentences. The follow-up recommendation is its
own Observation (LOINC 18783-1) with the interval as a UCUM quantity, ``focus`` on the lesions of its
sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gateway import __version__
from gateway.fhir import ids
from gateway.fhir.codes import code_map
from gateway.fhir.mapping.agents import _provenance, device_resource
from gateway.fhir.mapping.common import _ref, dicom_datetime
from gateway.fhir.mapping.imaging import _image_target, _link_display
from gateway.fhir.mapping.inputs import PublishInput, Resource
from gateway.structure import Extraction, Finding, Recommendation, Site, Size, default_lexicon, extract

__all__ = ["STRUCTURE_DEVICE", "Lesion", "Structured", "lesions", "structured_resources"]

STRUCTURE_DEVICE = ("gateway-structure", __version__)
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_PRESENCE = {
    "present": {"system": SNOMED, "code": "52101004", "display": "Present"},
    "absent": {"system": SNOMED, "code": "2667000", "display": "Absent"},
}
_LATERALITY_ATTRIBUTE = "272741003"
_DIAMETER = {"system": SNOMED, "code": "81827009", "display": "Diameter"}
_AXES = (
    {"system": SNOMED, "code": "103339001", "display": "Long axis"},
    {"system": SNOMED, "code": "103340004", "display": "Short axis"},
)
_RECOMMENDATION = {
    "system": LOINC,
    "code": "18783-1",
    "display": "Radiology Study recommendation (narrative)",
}
#: Generic sites a more specific one of the same side refines ("右肺" then "右肺上叶").
_GENERIC_SITES = frozenset({"lungs", "right_lung", "left_lung", "lung_zone"})


@dataclass
class Lesion:
    """One finding as the whole report describes it: its merged mentions and the sentences they came from."""

    finding: Finding
    sentences: list[Any] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


def _sites_agree(a: Site | None, b: Site | None) -> bool:
    if a is None or b is None or a.key == b.key:
        return True
    if a.laterality != b.laterality:
        return False
    return a.key in _GENERIC_SITES or b.key in _GENERIC_SITES


def _more_specific(a: Site | None, b: Site | None) -> Site | None:
    if a is None:
        return b
    if b is None:
        return a
    if a.key in _GENERIC_SITES and b.key not in _GENERIC_SITES:
        return b
    if a.segment is None and b.segment is not None and a.key == b.key:
        return b
    return a


def _merge(a: Finding, b: Finding) -> Finding | None:
    """``b`` folded into ``a`` when both describe the same lesion, else None."""
    if a.kind != b.kind or a.presence != b.presence or not _sites_agree(a.site, b.site):
        return None
    if a.size is not None and b.size is not None and a.size.dims_mm != b.size.dims_mm:
        return None
    return replace(
        a,
        site=_more_specific(a.site, b.site),
        size=a.size or b.size,
        count=a.count if a.count is not None else b.count,
        # Certain as soon as one mention is: "右肺上叶结节" then "考虑炎性结节可能" keeps the nodule.
        uncertain=a.uncertain and b.uncertain,
        descriptors=tuple(dict.fromkeys([*a.descriptors, *b.descriptors])),
        cues=tuple(dict.fromkeys([*a.cues, *b.cues])) if a.uncertain and b.uncertain else a.cues,
    )


def lesions(sentences: Sequence[Any]) -> tuple[list[Lesion], list[tuple[Any, Recommendation, Extraction]]]:
    """The report's lesions (mentions merged in reading order) and its recommendations with their sentence."""
    out: list[Lesion] = []
    recommendations: list[tuple[Any, Recommendation, Extraction]] = []
    previous: list[Lesion] = []
    for sentence in sentences:
        extraction = extract(sentence.text)
        mine: list[Lesion] = []
        for finding in extraction.findings:
            for lesion in out:
                merged = _merge(lesion.finding, finding)
                if merged is not None:
                    lesion.finding = merged
                    break
            else:
                lesion = Lesion(finding)
                out.append(lesion)
            if sentence not in lesion.sentences:
                lesion.sentences.append(sentence)
                lesion.texts.append(sentence.text)
            mine.append(lesion)
        if not extraction.findings and extraction.loose_sizes:
            # "大小约12mm。" alone measures the lesion of the sentence before.
            target = next((x for x in reversed(previous) if x.finding.presence == "present"), None)
            if target is not None and target.finding.size is None:
                target.finding = replace(target.finding, size=extraction.loose_sizes[0])
                target.sentences.append(sentence)
                target.texts.append(sentence.text)
                mine.append(target)
        if extraction.recommendation is not None:
            recommendations.append((sentence, extraction.recommendation, extraction))
        previous = mine or previous
    return out, recommendations


def _body_site(site: Site) -> dict[str, Any]:
    lexicon = default_lexicon()
    entry = lexicon.sites[site.key]
    codings: list[dict[str, str]] = []
    if site.code:
        codings.append({"system": SNOMED, "code": site.code, "display": site.display})
        if site.laterality and entry.lateralizable:
            side = lexicon.laterality[site.laterality]
            codings.append(
                {
                    "system": SNOMED,
                    "code": f"{site.code}:{_LATERALITY_ATTRIBUTE}={side.code}",
                    "display": f"{site.display}, {side.display.lower()}",
                }
            )
    text = site.display
    if site.laterality and entry.lateralizable:
        text = f"{site.display}, {lexicon.laterality[site.laterality].display.lower()}"
    if site.segment:
        text = f"{text}, {site.segment}"
    out: dict[str, Any] = {"text": text}
    if codings:
        out = {"coding": codings, "text": text}
    return out


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _size_components(size: Size) -> list[dict[str, Any]]:
    # Long axis first, whatever order the reader wrote them in ("9 × 12 mm").
    dims = tuple(sorted(size.dims_mm, reverse=True))
    codes: list[dict[str, Any]]
    if len(dims) == 1:
        codes = [{"coding": [_DIAMETER], "text": "Diameter"}]
    else:
        codes = [{"coding": [c], "text": c["display"]} for c in _AXES]
        codes.append({"text": "Third axis"})
    out = []
    for dim, code in zip(dims, codes, strict=False):
        item: dict[str, Any] = {"code": code, "valueQuantity": _quantity(dim, "mm")}
        out.append(item)
    return out


def _targets(inp: PublishInput, sentences: Sequence[Any]) -> list[dict[str, str]]:
    seen: set[str] = set()
    out = []
    for sentence in sentences:
        for link in sentence.links:
            target = _image_target(inp, link)
            if target is None:
                continue
            key = f"{target[0]}/{target[1]}"
            if key not in seen:
                seen.add(key)
                out.append(_ref(target[0], target[1], _link_display(link, inp)))
    return out


def _common(inp: PublishInput, oid: str, code: dict[str, Any]) -> Resource:
    s = inp.study
    res: Resource = {"resourceType": "Observation", "id": oid}
    if s.accession_number:
        res["basedOn"] = [
            _ref("ServiceRequest", ids.service_request_id(s.study_instance_uid, s.accession_number))
        ]
    res.update(
        {
            # Machine-extracted: preliminary until a named reader approves it, whatever the report's status.
            "status": "preliminary",
            "category": [{"coding": [code_map().coding("observation_category")]}],
            "code": code,
            "subject": _ref("Patient", ids.patient_id(s.patient.patient_id, s.patient.issuer)),
        }
    )
    effective = dicom_datetime(s.study_date, s.study_time, inp.timezone)
    if effective:
        res["effectiveDateTime"] = effective
    return res


def _lesion_observation(inp: PublishInput, lesion: Lesion, n: int, source: str) -> Resource:
    f = lesion.finding
    first = lesion.sentences[0]
    oid = ids.stable_id(
        "Observation",
        inp.study.study_instance_uid,
        f"{source}-finding",
        str(first.paragraph),
        str(first.index),
        f.kind,
        str(n),
    )
    code: dict[str, Any] = {"text": f.display}
    if f.code:
        code = {"coding": [{"system": SNOMED, "code": f.code, "display": f.display}], "text": f.display}
    res = _common(inp, oid, code)
    res["valueCodeableConcept"] = {"coding": [_PRESENCE[f.presence]], "text": f.presence}
    if f.uncertain:
        hedges = ", ".join(f.cues) or "hedged"
        res["interpretation"] = [
            {
                "coding": [{"system": INTERPRETATION, "code": "E", "display": "Equivocal"}],
                "text": f"Uncertain ({hedges})",
            }
        ]
    notes = [
        {
            "text": "Machine-extracted from the report (preliminary, not reviewed): "
            + " / ".join(dict.fromkeys(lesion.texts))
        }
    ]
    if f.presence == "absent" and f.cues:
        notes.append({"text": f"Stated absent ({', '.join(f.cues)})"})
    res["note"] = notes
    if f.site is not None:
        res["bodySite"] = _body_site(f.site)
    components = _size_components(f.size) if f.size is not None and f.presence == "present" else []
    if f.count is not None and f.presence == "present":
        if f.count > 0:
            components.append({"code": {"text": "Number of lesions"}, "valueInteger": f.count})
        else:
            components.append({"code": {"text": "Number of lesions"}, "valueString": "multiple"})
    for word in f.descriptors:
        components.append({"code": {"text": "Descriptor"}, "valueString": word.replace("_", " ")})
    if components:
        res["component"] = components
    derived = _targets(inp, lesion.sentences)
    if derived:
        res["derivedFrom"] = derived
    return res


def _recommendation_observation(
    inp: PublishInput, sentence: Any, rec: Recommendation, focus: Sequence[Resource], source: str
) -> Resource:
    oid = ids.stable_id(
        "Observation",
        inp.study.study_instance_uid,
        f"{source}-recommendation",
        str(sentence.paragraph),
        str(sentence.index),
    )
    res = _common(inp, oid, {"coding": [_RECOMMENDATION], "text": "Follow-up recommendation"})
    if focus:
        res["focus"] = [_ref("Observation", o["id"]) for o in focus]
    res["valueString"] = rec.text
    components: list[dict[str, Any]] = [
        {"code": {"text": "Recommended action"}, "valueString": rec.action.replace("_", " ")}
    ]
    if rec.interval is not None:
        components.append(
            {"code": {"text": "Interval"}, "valueQuantity": _quantity(rec.interval.value, rec.interval.unit)}
        )
    if rec.modality:
        components.append(
            {
                "code": {"text": "Modality"},
                "valueCodeableConcept": {
                    "coding": [{"system": code_map().system("dcm"), "code": rec.modality.split("-")[0]}],
                    "text": rec.modality,
                },
            }
        )
    res["component"] = components
    res["note"] = [{"text": "Machine-extracted from the report (preliminary, not reviewed)."}]
    return res


@dataclass
class Structured:
    """What :func:`structured_resources` adds to a publication."""

    #: The Device and the coded Observations, in dependency order (they reference only images and Patient).
    resources: list[Resource] = field(default_factory=list)
    #: Their Provenance; it goes after the report's own, which consumers read first (the PACS SR observer).
    provenance: Resource | None = None
    #: Sentence Observation id → the ``hasMember`` references it should carry.
    members: dict[str, list[dict[str, str]]] = field(default_factory=dict)


def structured_resources(
    inp: PublishInput,
    sentences: Sequence[Any],
    sentence_observations: Sequence[Resource],
    source: str = "report",
) -> Structured:
    """The coded Observations of the report's finding sentences, their Device and Provenance, and the
    ``hasMember`` references of the sentence Observations.

    ``sentences`` and ``sentence_observations`` are parallel: the i-th Observation is the i-th sentence's.
    ``source`` ("report" or "draft") keeps the ids of a drafted report's findings apart from the read one's.
    """
    found, recommendations = lesions(sentences)
    if not found and not recommendations:
        return Structured()
    by_sentence = {id(s): o["id"] for s, o in zip(sentences, sentence_observations, strict=True)}
    observations: list[Resource] = []
    members: dict[str, list[dict[str, str]]] = {}
    of_sentence: dict[int, list[Resource]] = {}
    for n, lesion in enumerate(found):
        obs = _lesion_observation(inp, lesion, n, source)
        observations.append(obs)
        for sentence in lesion.sentences:
            of_sentence.setdefault(id(sentence), []).append(obs)
            sid = by_sentence.get(id(sentence))
            if sid is not None:
                members.setdefault(sid, []).append(_ref("Observation", obs["id"]))
    order = {id(x): i for i, x in enumerate(sentences)}
    # The same advice in both languages of a bilingual report is one recommendation.
    grouped: dict[tuple[str, Any, str | None], list[tuple[Any, Recommendation]]] = {}
    for sentence, rec, _extraction in recommendations:
        grouped.setdefault((rec.action, rec.interval, rec.modality), []).append((sentence, rec))
    for group in grouped.values():
        focus: list[Resource] = []
        for sentence, _rec in group:
            # "Right upper lobe nodule; follow-up CT in 3 months": the advice may be a sentence of its own.
            i = order[id(sentence)]
            before = sentences[i - 1] if i > 0 and sentences[i - 1].paragraph == sentence.paragraph else None
            mine = of_sentence.get(id(sentence)) or (of_sentence.get(id(before), []) if before else [])
            focus.extend(o for o in mine if o["valueCodeableConcept"]["coding"][0] == _PRESENCE["present"])
        focus = list({o["id"]: o for o in focus}.values())
        first, rec = group[0]
        text = " / ".join(dict.fromkeys(r.text for _s, r in group))
        obs = _recommendation_observation(inp, first, replace(rec, text=text), focus, source)
        observations.append(obs)
        for sentence, _rec in group:
            sid = by_sentence.get(id(sentence))
            if sid is not None:
                members.setdefault(sid, []).append(_ref("Observation", obs["id"]))
    device = device_resource(*STRUCTURE_DEVICE, inp.version)
    return Structured([device, *observations], _provenance(inp, observations, [device], None), members)
