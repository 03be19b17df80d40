"""A named reader's decision on machine-drafted findings, applied to the published resources.

Post-processing over :func:`gateway.fhir.mapping.build_resources`: an approved draft becomes ``final`` with
the reader as ``resultsInterpreter`` and a Provenance naming them as verifier; a rejected one ``cancelled``.
A draft the reader edited and saved without approving stays ``preliminary`` with their text (Provenance: the
reader as author); an approval the reader undid (``withdrawn``) is ``preliminary`` again, with a Provenance
naming who withdrew it (performer). The decision itself is stored by the review page
(:mod:`gateway.ui.review`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
from dataclasses import dataclass
from typing import Literal

from gateway.fhir import ids
from gateway.fhir.codes import code_map
from gateway.fhir.mapping.agents import organization_resource
from gateway.fhir.mapping.common import _instant, _ref, attachment
from gateway.fhir.mapping.inputs import PublishInput, Resource


@dataclass(frozen=True)
class DraftReviewData:
    """A named reader's decision on the drafted findings: ``approved`` (with the approved sentences),
    ``rejected``, ``saved`` (edited, not approved) or ``withdrawn`` (an approval undone; the sentences are
    those that had been approved)."""

    decision: Literal["approved", "rejected", "saved", "withdrawn"]
    reader_username: str
    reader_name: str
    at: dt.datetime
    sentences: tuple[str, ...] = ()


_NOTES = {
    "approved": "Machine-drafted; reviewed and approved by {reader} on {when}.",
    "saved": "Machine-drafted; edited by {reader} on {when}; not yet approved.",
    "withdrawn": "Machine-drafted; approval withdrawn by {reader} on {when}; awaiting review.",
}
_CONCLUSIONS = {
    "approved": "Findings drafted by a model and approved by {reader}.",
    "saved": "Findings drafted by a model and edited by {reader}; preliminary, not yet approved.",
    "withdrawn": "Findings drafted by a model; the approval was withdrawn by {reader}; preliminary.",
}
_ACTIVITY = {
    "approved": "draft approved",
    "rejected": "draft rejected",
    "saved": "draft edited",
    "withdrawn": "draft approval withdrawn",
}
#: The reader's role in the review Provenance (provenance-participant-type).
_READER_ROLE = {
    "approved": "provenance_verifier",
    "rejected": "provenance_verifier",
    "saved": "provenance_author",
    "withdrawn": "provenance_performer",
}


def reviewed_draft(inp: PublishInput, review: DraftReviewData) -> PublishInput:
    """``inp`` with the drafted sentences replaced by the reader's text (approved, saved or withdrawn), so
    that everything built from them, the coded findings included, says what the reader let stand; a rejected
    draft keeps the machine's text (it is published ``cancelled``)."""
    if review.decision == "rejected" or not inp.draft or not review.sentences:
        return inp
    old = list(inp.draft.get("sentences") or [])
    new = [{**(old[i] if i < len(old) else {}), "text": text} for i, text in enumerate(review.sentences)]
    return dataclasses.replace(inp, draft={**inp.draft, "sentences": new})


def apply_draft_review(
    resources: list[Resource], review: DraftReviewData, inp: PublishInput
) -> list[Resource]:
    """Turn the preliminary draft report into the reader's ``final`` report (or ``cancelled`` when rejected).

    Approved: status ``final``, ``resultsInterpreter`` the reader (a Practitioner), the approved text in the
    Observations, and a Provenance whose verifier is the reader, recorded when they approved.
    """
    rid = ids.draft_report_id(inp.study.study_instance_uid)
    report = next((r for r in resources if r["resourceType"] == "DiagnosticReport" and r["id"] == rid), None)
    if report is None:
        return resources
    obs_ids = [ref["reference"].split("/", 1)[1] for ref in report.get("result", [])]
    observations = {
        r["id"]: r for r in resources if r["resourceType"] == "Observation" and r["id"] in obs_ids
    }
    model = None  # the Device that wrote the draft: the author of the draft's own Provenance
    for p in resources:
        if p["resourceType"] == "Provenance" and p["target"][0]["reference"] == f"DiagnosticReport/{rid}":
            model = p["agent"][0]["who"]["reference"]
    out = list(resources)
    practitioner: Resource = {
        "resourceType": "Practitioner",
        "id": ids.stable_id("practitioner", review.reader_username),
        "identifier": [{"system": "urn:gateway:user", "value": review.reader_username}],
        "name": [{"text": review.reader_name}],
    }
    when = _instant(review.at)
    if review.decision == "rejected":
        report["status"] = "cancelled"
        report["conclusion"] = f"Machine-written draft rejected by {review.reader_name} on {when}."
        coded = {m["reference"] for o in observations.values() for m in o.get("hasMember", [])}
        for o in observations.values():
            o["status"] = "cancelled"
        for r in resources:  # the findings coded from the rejected sentences go with them
            if r["resourceType"] == "Observation" and f"Observation/{r['id']}" in coded:
                r["status"] = "cancelled"
    else:
        final = review.decision == "approved"
        report["status"] = "final" if final else "preliminary"
        if final:
            report["resultsInterpreter"] = [_ref("Practitioner", practitioner["id"], review.reader_name)]
        kept = obs_ids[: len(review.sentences)]
        if obs_ids:
            # Sentences the reader added become Observations shaped like the draft's first one, unlinked.
            shape = observations[obs_ids[0]]
            at = next(i for i, r in enumerate(out) if r is report)
            for i in range(len(obs_ids), len(review.sentences)):
                extra = {k: v for k, v in shape.items() if k != "derivedFrom"}
                extra["id"] = ids.observation_id(inp.study.study_instance_uid, "draft", 0, i)
                observations[extra["id"]] = extra
                kept.append(extra["id"])
                out.insert(at, extra)
                at += 1
        for oid, text in zip(kept, review.sentences, strict=False):
            o = observations[oid]
            o["status"] = "final" if final else "preliminary"
            o["valueString"] = text
            if final:
                o["performer"] = [_ref("Practitioner", practitioner["id"], review.reader_name)]
            o["note"] = [{"text": _NOTES[review.decision].format(reader=review.reader_name, when=when)}]
        dropped = set(obs_ids) - set(kept)
        out = [r for r in out if not (r["resourceType"] == "Observation" and r["id"] in dropped)]
        report["result"] = [_ref("Observation", oid) for oid in kept]
        report["conclusion"] = _CONCLUSIONS[review.decision].format(reader=review.reader_name)
        paragraphs = "".join(f"<p>{html.escape(t)}</p>" for t in review.sentences)
        report["text"] = {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{paragraphs}</div>',
        }
        # IMR: a published report is presented as HTML too (contentType, size, hash).
        title = inp.study.description or "Imaging report"
        page = (
            f'<!DOCTYPE html><html lang="und"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        )
        page += f"</head><body>{paragraphs}</body></html>"
        report["presentedForm"] = [
            attachment("text/html", page.encode("utf-8"), title=title, embed=True, version=inp.version)
        ]
    out.insert(0, practitioner)
    agents: list[Resource] = [
        {
            "type": {"coding": [code_map().coding(_READER_ROLE[review.decision])]},
            "who": _ref("Practitioner", practitioner["id"]),
        }
    ]
    if model:
        organization = organization_resource(inp)
        agents.append(
            {
                "type": {"coding": [code_map().coding("provenance_author")]},
                "who": {"reference": model},
                # US Core Provenance: a Device agent acts on behalf of an Organization.
                "onBehalfOf": _ref("Organization", organization["id"]),
            }
        )
    out.append(
        {
            "resourceType": "Provenance",
            "id": ids.provenance_id(f"review/DiagnosticReport/{rid}"),
            "target": [_ref("DiagnosticReport", rid), *report.get("result", [])],
            "recorded": when,
            "activity": {"text": _ACTIVITY[review.decision]},
            "agent": agents,
        }
    )
    return out
