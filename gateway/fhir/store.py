"""Versioned storage of FHIR resources in the ``fhir_resources`` table, and the searches the API offers.

Every version is a row; ``is_current`` marks the latest. Publishing content equal to the current version
(ignoring ``meta`` and the time stamps a re-run changes) writes nothing, so a re-run of an unchanged study
adds no version. All queries are built with SQLAlchemy expressions: input reaches SQL only as bound
parameters (``contains(..., autoescape=True)`` escapes LIKE wildcards too).
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from gateway.index.models import FhirIdentifier, FhirResource, Study, utcnow

#: Elements a re-publication changes even when the content is the same.
_VOLATILE: dict[str, tuple[str, ...]] = {
    "DiagnosticReport": ("issued",),
    "Provenance": ("recorded",),
}
_FINALISED = ("final", "amended", "corrected", "appended")


def _content(body: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in body.items() if k != "meta"}
    for key in _VOLATILE.get(str(body.get("resourceType")), ()):
        data.pop(key, None)
    return data


def _tokens(pairs: Sequence[tuple[str | None, str | None]]) -> str | None:
    """Search tokens as ``\\nsystem|value\\n...`` so that a token can be matched whole with LIKE."""
    items = [f"{s or ''}|{v}" for s, v in pairs if v]
    return "\n" + "\n".join(items) + "\n" if items else None


def _parse_when(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        if len(value) == 10:
            return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _names(body: dict[str, Any]) -> str | None:
    """Case-folded name parts and whole names of a Patient or Practitioner, one per line."""
    parts: list[str] = []
    for name in body.get("name", []) if isinstance(body.get("name"), list) else []:
        parts += [str(name.get("text", "")), str(name.get("family", "")), *map(str, name.get("given", []))]
    words = [p.casefold().strip() for p in parts if p and p.strip()]
    return "\n" + "\n".join(dict.fromkeys(words)) + "\n" if words else None


def search_columns(body: dict[str, Any]) -> dict[str, Any]:
    """The indexed columns of a resource body."""
    subject = body.get("subject") or body.get("patient") or {}
    patient_ref = subject.get("reference") if isinstance(subject, dict) else None
    if body.get("resourceType") == "Patient":
        patient_ref = f"Patient/{body['id']}"
    codes = [(c.get("system"), c.get("code")) for c in (body.get("code") or {}).get("coding", [])]
    # Types without a ``code`` keep the coded value they are searched by in that column: an
    # ImagingStudy's modalities (``modality``, RAD-143's ``imaging-study.modality``), a Patient's gender.
    if body.get("resourceType") == "ImagingStudy":
        for m in body.get("modality", []):
            codes += [(c.get("system"), c.get("code")) for c in m.get("coding", [])] or [
                (m.get("system"), m.get("code"))
            ]
    elif body.get("resourceType") == "Patient" and body.get("gender"):
        codes.append(("http://hl7.org/fhir/administrative-gender", body["gender"]))
    cats = [
        (c.get("system"), c.get("code")) for cat in body.get("category", []) for c in cat.get("coding", [])
    ]
    idents = [(i.get("system"), i.get("value")) for i in body.get("identifier", [])]
    idents += [
        (c.get("system"), i.get("value"))
        for i in body.get("identifier", [])
        for c in (i.get("type") or {}).get("coding", [])
    ]
    effective = body.get("effectiveDateTime") or body.get("started") or body.get("birthDate")
    return {
        "names": _names(body),
        "patient_ref": patient_ref,
        "status": body.get("status"),
        "code": (_tokens(codes) or "")[:128] or None,
        "category": (_tokens(cats) or "")[:256] or None,
        "identifiers": _tokens(idents),
        "effective": _parse_when(effective),
    }


def current(session: Session, rtype: str, rid: str) -> FhirResource | None:
    return session.scalars(
        select(FhirResource).where(
            FhirResource.resource_type == rtype,
            FhirResource.resource_id == rid,
            FhirResource.is_current.is_(True),
        )
    ).one_or_none()


def reconcile_report(new: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """A re-sent report of a finalised one becomes ``amended`` (unless it says ``corrected``); see FHIR
    DiagnosticReport.status. Unchanged content keeps the previous status and issue time."""
    if previous is None or new.get("resourceType") != "DiagnosticReport":
        return new
    out = copy.deepcopy(new)
    same = {k: v for k, v in _content(new).items() if k != "status"} == {
        k: v for k, v in _content(previous).items() if k != "status"
    }
    prev_status, new_status = previous.get("status"), new.get("status")
    if same and (new_status == prev_status or (new_status == "final" and prev_status in _FINALISED)):
        out["status"] = prev_status
        if "issued" in previous:
            out["issued"] = previous["issued"]
    elif prev_status in _FINALISED and new_status == "final":
        out["status"] = "amended"
    return out


@dataclass
class SaveSummary:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    versions: dict[str, int] = field(default_factory=dict)


def save_resources(
    session: Session,
    resources: Sequence[dict[str, Any]],
    *,
    study_fk: int | None,
    now: dt.datetime | None = None,
) -> SaveSummary:
    """Write a new version of each resource whose content changed, inside the caller's transaction."""
    now = now or utcnow()
    summary = SaveSummary()
    added: list[FhirResource] = []
    for resource in resources:
        rtype, rid = str(resource["resourceType"]), str(resource["id"])
        row = current(session, rtype, rid)
        body = reconcile_report(dict(resource), row.body if row is not None else None)
        key = f"{rtype}/{rid}"
        if row is not None and _content(row.body) == _content(body):
            summary.unchanged += 1
            summary.versions[key] = row.version_id
            continue
        version = 1 if row is None else row.version_id + 1
        if row is not None:
            row.is_current = False
            session.flush()
        body["meta"] = {"versionId": str(version), "lastUpdated": now.isoformat(timespec="milliseconds")}
        new_row = FhirResource(
            resource_type=rtype,
            resource_id=rid,
            version_id=version,
            is_current=True,
            study_fk=study_fk,
            last_updated=now,
            body=body,
            **search_columns(body),
        )
        session.add(new_row)
        added.append(new_row)
        if row is None:
            summary.created += 1
        else:
            summary.updated += 1
        summary.versions[key] = version
    session.flush()
    session.add_all(
        FhirIdentifier(resource_fk=row.id, system=system, value=value)
        for row in added
        for system, value in identifier_tokens(row.identifiers)
    )
    session.flush()
    return summary


def identifier_tokens(identifiers: str | None) -> list[tuple[str, str]]:
    """(system, value) pairs of the ``identifiers`` search column, cut to the token table's widths."""
    out = []
    for token in (identifiers or "").split("\n"):
        if "|" in token:
            system, _, value = token.partition("|")
            out.append((system[:256], value[:256]))
    return out


def read(session: Session, rtype: str, rid: str, version: int | None = None) -> FhirResource | None:
    if version is None:
        return current(session, rtype, rid)
    return session.scalars(
        select(FhirResource).where(
            FhirResource.resource_type == rtype,
            FhirResource.resource_id == rid,
            FhirResource.version_id == version,
        )
    ).one_or_none()


def history(session: Session, rtype: str, rid: str) -> list[FhirResource]:
    return list(
        session.scalars(
            select(FhirResource)
            .where(FhirResource.resource_type == rtype, FhirResource.resource_id == rid)
            .order_by(FhirResource.version_id.desc())
        )
    )


# -- search -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DateRange:
    """A FHIR date search (prefix + value) as a half-open interval test on one column."""

    prefix: str
    start: dt.datetime
    end: dt.datetime


@dataclass
class Criteria:
    """Parsed search parameters; each list entry is ANDed, each inner tuple ORed (FHIR's , and &)."""

    ids: list[tuple[str, ...]] = field(default_factory=list)
    patient: list[tuple[str, ...]] = field(default_factory=list)
    identifier: list[tuple[tuple[str | None, str], ...]] = field(default_factory=list)
    category: list[tuple[tuple[str | None, str], ...]] = field(default_factory=list)
    code: list[tuple[tuple[str | None, str], ...]] = field(default_factory=list)
    status: list[tuple[str, ...]] = field(default_factory=list)
    study_uid: list[tuple[str, ...]] = field(default_factory=list)
    study_ref: list[tuple[str, ...]] = field(default_factory=list)
    date: list[DateRange] = field(default_factory=list)
    last_updated: list[DateRange] = field(default_factory=list)
    names: list[tuple[str, ...]] = field(default_factory=list)
    patient_identifier: list[tuple[tuple[str | None, str], ...]] = field(default_factory=list)
    patient_name: list[tuple[str, ...]] = field(default_factory=list)
    #: (resource type published with the match, identifier tokens): based-on / imaging-study chains.
    related_identifier: list[tuple[str, tuple[tuple[str | None, str], ...]]] = field(default_factory=list)
    #: (resource type published with the match, code tokens / dates): imaging-study.modality / .started.
    related_code: list[tuple[str, tuple[tuple[str | None, str], ...]]] = field(default_factory=list)
    related_date: list[tuple[str, DateRange]] = field(default_factory=list)


def _identifier_clause(pk: Any, values: tuple[tuple[str | None, str], ...]) -> Any:
    """Identifier tokens through the indexed ``fhir_identifiers`` table (exact value, optional system)."""
    parts = [
        FhirIdentifier.value == value
        if system is None
        else and_(FhirIdentifier.value == value, FhirIdentifier.system == system)
        for system, value in values
    ]
    return pk.in_(select(FhirIdentifier.resource_fk).where(or_(*parts)).scalar_subquery())


def _token_clause(column: Any, values: tuple[tuple[str | None, str], ...]) -> Any:
    parts = []
    for system, value in values:
        if system is None:
            parts.append(column.contains(f"|{value}\n", autoescape=True))
        else:
            parts.append(column.contains(f"\n{system}|{value}\n", autoescape=True))
    return or_(*parts)


def _date_clause(column: Any, r: DateRange) -> Any:
    if r.prefix == "eq":
        return and_(column >= r.start, column < r.end)
    if r.prefix == "ne":
        return or_(column < r.start, column >= r.end)
    if r.prefix in ("ge", "sa"):
        return column >= (r.start if r.prefix == "ge" else r.end)
    if r.prefix == "gt":
        return column >= r.end
    if r.prefix in ("le",):
        return column < r.end
    return column < r.start  # lt, eb


def _name_clause(column: Any, words: tuple[str, ...]) -> Any:
    """FHIR string search: a name part (or the whole name) starts with the value, case-insensitively."""
    return or_(*(column.contains(f"\n{w}", autoescape=True) for w in words))


def _patients(alias: Any, clause: Any) -> Any:
    return (
        select(alias.patient_ref)
        .where(alias.resource_type == "Patient", alias.is_current.is_(True), clause)
        .scalar_subquery()
    )


def search_query(rtype: str, c: Criteria) -> Select[Any]:
    q = select(FhirResource).where(FhirResource.resource_type == rtype, FhirResource.is_current.is_(True))
    for idset in c.ids:
        q = q.where(FhirResource.resource_id.in_(idset))
    for refs in c.patient:
        q = q.where(FhirResource.patient_ref.in_(refs))
    for values in c.identifier:
        q = q.where(_identifier_clause(FhirResource.id, values))
    for values in c.category:
        q = q.where(_token_clause(FhirResource.category, values))
    for values in c.code:
        q = q.where(_token_clause(FhirResource.code, values))
    for statuses in c.status:
        q = q.where(FhirResource.status.in_(statuses))
    for uids in c.study_uid:
        q = q.where(
            FhirResource.study_fk.in_(
                select(Study.id).where(Study.study_instance_uid.in_(uids)).scalar_subquery()
            )
        )
    for refs in c.study_ref:
        # "ImagingStudy/<id>": the rows published with that ImagingStudy.
        sub = select(FhirResource.study_fk).where(
            FhirResource.resource_type == "ImagingStudy",
            FhirResource.is_current.is_(True),
            FhirResource.resource_id.in_(refs),
        )
        q = q.where(FhirResource.study_fk.in_(sub.scalar_subquery()))
    for r in c.date:
        q = q.where(_date_clause(FhirResource.effective, r))
    for words in c.names:
        q = q.where(_name_clause(FhirResource.names, words))
    patients = aliased(FhirResource)
    for values in c.patient_identifier:
        q = q.where(
            FhirResource.patient_ref.in_(_patients(patients, _identifier_clause(patients.id, values)))
        )
    for words in c.patient_name:
        q = q.where(FhirResource.patient_ref.in_(_patients(patients, _name_clause(patients.names, words))))
    for related_type, values in c.related_identifier:
        other = aliased(FhirResource)
        sub = select(other.study_fk).where(
            other.resource_type == related_type,
            other.is_current.is_(True),
            _identifier_clause(other.id, values),
        )
        q = q.where(FhirResource.study_fk.in_(sub.scalar_subquery()))
    for related_type, values in c.related_code:
        other = aliased(FhirResource)
        sub = select(other.study_fk).where(
            other.resource_type == related_type, other.is_current.is_(True), _token_clause(other.code, values)
        )
        q = q.where(FhirResource.study_fk.in_(sub.scalar_subquery()))
    for related_type, r in c.related_date:
        other = aliased(FhirResource)
        sub = select(other.study_fk).where(
            other.resource_type == related_type, other.is_current.is_(True), _date_clause(other.effective, r)
        )
        q = q.where(FhirResource.study_fk.in_(sub.scalar_subquery()))
    for r in c.last_updated:
        q = q.where(_date_clause(FhirResource.last_updated, r))
    return q


def _order(sort: Sequence[tuple[str, bool]]) -> list[Any]:
    columns: dict[str, Any] = {
        "date": FhirResource.effective,
        "_lastUpdated": FhirResource.last_updated,
        "_id": FhirResource.resource_id,
        # Not an indexed column: sorted from the JSON body (fine for a page of one patient's reports).
        "issued": FhirResource.body["issued"].as_string(),
    }
    out = [columns[key].desc() if desc else columns[key].asc() for key, desc in sort]
    if not sort:
        out.append(FhirResource.last_updated.desc())
    out.append(FhirResource.id.desc())
    return out


def search(
    session: Session,
    rtype: str,
    criteria: Criteria,
    *,
    count: int,
    offset: int,
    sort: Sequence[tuple[str, bool]] = (),
    total: bool = True,
) -> tuple[int | None, list[FhirResource]]:
    """One page of current rows; ``total`` None when not asked for (``_total=none``).

    The total is counted by a second query only when the page does not already tell it: a first page
    shorter than ``count`` holds every match (most searches by patient, identifier or a short date range).
    """
    q = search_query(rtype, criteria)
    rows = list(session.scalars(q.order_by(*_order(sort)).limit(count).offset(offset))) if count else []
    n: int | None = None
    if total:
        if count and offset == 0 and len(rows) < count:
            n = len(rows)
        else:
            n = int(session.scalar(select(func.count()).select_from(q.subquery())) or 0)
    return n, rows


def read_many(session: Session, refs: Sequence[tuple[str, str]]) -> list[FhirResource]:
    """Current rows of the given (type, id) references, in one query per type."""
    by_type: dict[str, set[str]] = {}
    for rtype, rid in refs:
        by_type.setdefault(rtype, set()).add(rid)
    out: list[FhirResource] = []
    for rtype, rids in by_type.items():
        out += session.scalars(
            select(FhirResource).where(
                FhirResource.resource_type == rtype,
                FhirResource.is_current.is_(True),
                FhirResource.resource_id.in_(sorted(rids)),
            )
        )
    return out


def provenance_of(session: Session, rows: Sequence[FhirResource]) -> list[FhirResource]:
    """Current Provenance rows whose ``target`` names any of ``rows`` (``_revinclude=Provenance:target``).

    A publication's Provenance has the same ``study_fk`` as what it is about, so only those are read.
    """
    wanted = {f"{r.resource_type}/{r.resource_id}" for r in rows}
    studies = sorted({r.study_fk for r in rows if r.study_fk is not None})
    if not studies:
        return []
    candidates = session.scalars(
        select(FhirResource).where(
            FhirResource.resource_type == "Provenance",
            FhirResource.is_current.is_(True),
            FhirResource.study_fk.in_(studies),
        )
    )
    return [p for p in candidates if any(t.get("reference") in wanted for t in p.body.get("target", []))]


def history_type(
    session: Session, rtype: str, *, count: int, offset: int, since: dt.datetime | None = None
) -> tuple[int, list[FhirResource]]:
    """Every version of every resource of ``rtype``, newest first (type-level history)."""
    q = select(FhirResource).where(FhirResource.resource_type == rtype)
    if since is not None:
        q = q.where(FhirResource.last_updated >= since)
    total = int(session.scalar(select(func.count()).select_from(q.subquery())) or 0)
    rows = session.scalars(
        q.order_by(FhirResource.last_updated.desc(), FhirResource.id.desc()).limit(count).offset(offset)
    )
    return total, list(rows)
