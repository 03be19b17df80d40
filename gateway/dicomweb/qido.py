"""QIDO-RS (PS3.18 10.6): search studies, series and instances in the index, answered as DICOM JSON.

Matching (PS3.4 C.2.2.2): single value; UID list (comma-separated); ``*``/``?`` wildcards on strings
(case-insensitive for person names); ``a-b`` ranges on dates. Each level returns its required attributes
(PS3.18 Table 10.6.3-3/4/5); ``includefield`` adds the optional ones (or ``all``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from gateway.index.models import Instance, Patient, Series, Study


class QueryError(ValueError):
    """A search parameter this server does not understand (→ 400)."""


@dataclass(frozen=True)
class Attr:
    keyword: str
    vr: str
    column: Any  # a column or SQL expression; None = computed
    default: bool = True

    @property
    def tag(self) -> str:
        tag = tag_for_keyword(self.keyword)
        assert tag is not None, self.keyword
        return f"{tag:08X}"


STUDY = (
    Attr("StudyInstanceUID", "UI", Study.study_instance_uid),
    Attr("StudyDate", "DA", Study.study_date),
    Attr("StudyTime", "TM", Study.study_time),
    Attr("AccessionNumber", "SH", Study.accession_number),
    Attr("ReferringPhysicianName", "PN", Study.referring_physician),
    Attr("PatientName", "PN", Patient.name),
    Attr("PatientID", "LO", Patient.patient_id),
    Attr("PatientBirthDate", "DA", Patient.birth_date),
    Attr("PatientSex", "CS", Patient.sex),
    Attr("StudyID", "SH", Study.study_id),
    Attr("ModalitiesInStudy", "CS", None),
    Attr("StudyDescription", "LO", Study.description, default=False),
    Attr("NumberOfStudyRelatedSeries", "IS", None, default=False),
    Attr("NumberOfStudyRelatedInstances", "IS", None, default=False),
)
SERIES = (
    Attr("SeriesInstanceUID", "UI", Series.series_instance_uid),
    Attr("Modality", "CS", Series.modality),
    Attr("SeriesNumber", "IS", Series.series_number),
    Attr("SeriesDescription", "LO", Series.series_description),
    Attr("BodyPartExamined", "CS", Series.body_part, default=False),
    Attr("Laterality", "CS", Series.laterality, default=False),
    Attr("NumberOfSeriesRelatedInstances", "IS", None, default=False),
)
INSTANCE = (
    Attr("SOPInstanceUID", "UI", Instance.sop_instance_uid),
    Attr("SOPClassUID", "UI", Instance.sop_class_uid),
    Attr("InstanceNumber", "IS", Instance.instance_number),
    Attr("Rows", "US", Instance.rows),
    Attr("Columns", "US", Instance.columns),
    Attr("ViewPosition", "CS", Instance.view_position, default=False),
    Attr("ImageLaterality", "CS", Instance.image_laterality, default=False),
    Attr("AvailableTransferSyntaxUID", "UI", Instance.transfer_syntax_uid, default=False),
)
LEVELS: dict[str, tuple[Attr, ...]] = {"study": STUDY, "series": SERIES, "instance": INSTANCE}
_PAGING = {"limit", "offset", "includefield", "fuzzymatching"}


def _attr_name(name: str) -> str:
    """A keyword, or an 8-hex-digit tag, as the keyword."""
    if len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name):
        keyword = keyword_for_tag(int(name, 16))
        if not keyword:
            raise QueryError(f"unknown attribute tag {name}")
        return str(keyword)
    return name


def _match(column: Any, vr: str, value: str) -> ColumnElement[bool]:
    if vr == "UI":
        uids = [u.strip() for u in value.replace("\\", ",").split(",") if u.strip()]
        return column.in_(uids)  # type: ignore[no-any-return]
    if vr == "DA" and "-" in value:
        lo, _, hi = value.partition("-")
        cond = column.isnot(None)
        if lo:
            cond = cond & (column >= lo)
        if hi:
            cond = cond & (column <= hi)
        return cast(ColumnElement[bool], cond)
    if vr == "IS":
        if not value.strip().lstrip("-").isdigit():
            raise QueryError(f"{value!r} is not an integer")
        return column == int(value)  # type: ignore[no-any-return]
    target = column if vr != "PN" else func.lower(column)
    text = value if vr != "PN" else value.lower()
    if "*" in text or "?" in text:
        pattern = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = pattern.replace("*", "%").replace("?", "_")
        return cast(ColumnElement[bool], target.like(pattern, escape="\\"))
    return cast(ColumnElement[bool], target == text)


@dataclass(frozen=True)
class Query:
    filters: dict[str, str]
    include: frozenset[str] | None  # None: defaults; empty set never; "all" → every attribute
    limit: int
    offset: int
    fuzzy: bool = False


def parse_query(items: Sequence[tuple[str, str]], level: str, *, max_limit: int = 1000) -> Query:
    known = {a.keyword: a for lvl in ("study", "series", "instance") for a in LEVELS[lvl]}
    filters: dict[str, str] = {}
    include: set[str] = set()
    limit, offset, fuzzy = max_limit, 0, False
    for key, value in items:
        if key == "limit":
            if not value.isdigit():
                raise QueryError("limit must be a non-negative integer")
            limit = min(int(value), max_limit)
        elif key == "offset":
            if not value.isdigit():
                raise QueryError("offset must be a non-negative integer")
            offset = int(value)
        elif key == "fuzzymatching":
            fuzzy = value.lower() == "true"
        elif key == "includefield":
            for name in value.split(","):
                name = name.strip()
                if name == "all":
                    include.add("all")
                elif name:
                    include.add(_attr_name(name))
        else:
            keyword = _attr_name(key)
            if keyword not in known:
                raise QueryError(f"searching on {key} is not supported")
            filters[keyword] = value
    return Query(filters, frozenset(include), limit, offset, fuzzy)


def _element(attr: Attr, value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {"vr": attr.vr}
    if attr.vr == "PN":
        return {"vr": "PN", "Value": [{"Alphabetic": str(value)}]}
    if attr.vr in ("IS", "US"):
        return {"vr": attr.vr, "Value": [int(value)]}
    if isinstance(value, list):
        return {"vr": attr.vr, "Value": value}
    return {"vr": attr.vr, "Value": [str(value)]}


def _wanted(attrs: Sequence[Attr], query: Query) -> list[Attr]:
    every = query.include is not None and "all" in query.include
    return [
        a
        for a in attrs
        if a.default
        or every
        or (query.include is not None and a.keyword in query.include)
        or a.keyword in query.filters
    ]


def _apply(stmt: Any, attrs: Sequence[Attr], query: Query) -> Any:
    for attr in attrs:
        if attr.keyword in query.filters and attr.column is not None:
            value = query.filters[attr.keyword]
            if query.fuzzy and attr.vr == "PN" and "*" not in value:
                value = value + "*"
            stmt = stmt.where(_match(attr.column, attr.vr, value))
    return stmt


RetrieveUrl = Callable[..., str]


def search_studies(session: Session, query: Query, retrieve_url: RetrieveUrl) -> list[dict[str, Any]]:
    stmt: Any = select(Study, Patient).join(Patient, Study.patient_fk == Patient.id)
    stmt = _apply(stmt, STUDY, query)
    if "ModalitiesInStudy" in query.filters:
        mods = [m.strip() for m in query.filters["ModalitiesInStudy"].split(",") if m.strip()]
        stmt = stmt.where(
            select(Series.id).where(Series.study_fk == Study.id, Series.modality.in_(mods)).exists()
        )
    for level in ("series", "instance"):
        for attr in LEVELS[level]:
            if attr.keyword in query.filters and attr.column is not None:
                stmt = stmt.where(
                    select(Instance.id)
                    .join(Series, Instance.series_fk == Series.id)
                    .where(
                        Instance.study_fk == Study.id,
                        _match(attr.column, attr.vr, query.filters[attr.keyword]),
                    )
                    .exists()
                )
    stmt = stmt.order_by(Study.study_date.desc(), Study.id.desc()).limit(query.limit).offset(query.offset)
    rows = session.execute(stmt).tuples().all()
    wanted = _wanted(STUDY, query)
    out = []
    for study, patient in rows:  # type: Study, Patient
        series = session.execute(
            select(Series.modality, func.count(Instance.id))
            .join(Instance, Instance.series_fk == Series.id, isouter=True)
            .where(Series.study_fk == study.id)
            .group_by(Series.id)
        ).all()
        computed = {
            "ModalitiesInStudy": sorted({m for m, _ in series if m}),
            "NumberOfStudyRelatedSeries": len(series),
            "NumberOfStudyRelatedInstances": sum(n for _, n in series),
        }
        values = {a.keyword: _value(a, study, patient, computed) for a in wanted}
        item = {a.tag: _element(a, values[a.keyword]) for a in wanted}
        item["00081190"] = {"vr": "UR", "Value": [retrieve_url(study.study_instance_uid)]}
        out.append(item)
    return out


def _value(attr: Attr, *rows_and_computed: Any) -> Any:
    *rows, computed = rows_and_computed
    if attr.column is None:
        return computed.get(attr.keyword)
    for row in rows:
        if row is not None and isinstance(row, attr.column.class_):
            return getattr(row, attr.column.key)
    return None


def search_series(
    session: Session, query: Query, retrieve_url: RetrieveUrl, study_uid: str | None = None
) -> list[dict[str, Any]]:
    stmt: Any = select(Series, Study).join(Study, Series.study_fk == Study.id)
    if study_uid is not None:
        stmt = stmt.where(Study.study_instance_uid == study_uid)
    stmt = _apply(stmt, SERIES, query)
    stmt = _apply(stmt, [a for a in STUDY if a.column is not None and a.column.class_ is Study], query)
    stmt = stmt.order_by(Study.id, Series.series_number, Series.id).limit(query.limit).offset(query.offset)
    wanted = _wanted(SERIES, query)
    out = []
    for series, study in session.execute(stmt).tuples().all():
        count = session.scalar(select(func.count(Instance.id)).where(Instance.series_fk == series.id)) or 0
        computed = {"NumberOfSeriesRelatedInstances": count}
        item = {a.tag: _element(a, _value(a, series, computed)) for a in wanted}
        item["0020000D"] = {"vr": "UI", "Value": [study.study_instance_uid]}
        item["00081190"] = {
            "vr": "UR",
            "Value": [retrieve_url(study.study_instance_uid, series.series_instance_uid)],
        }
        out.append(item)
    return out


def search_instances(
    session: Session,
    query: Query,
    retrieve_url: RetrieveUrl,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> list[dict[str, Any]]:
    stmt: Any = (
        select(Instance, Series, Study)
        .join(Series, Instance.series_fk == Series.id)
        .join(Study, Instance.study_fk == Study.id)
    )
    if study_uid is not None:
        stmt = stmt.where(Study.study_instance_uid == study_uid)
    if series_uid is not None:
        stmt = stmt.where(Series.series_instance_uid == series_uid)
    stmt = _apply(stmt, INSTANCE, query)
    stmt = _apply(stmt, SERIES, query)
    stmt = _apply(stmt, [a for a in STUDY if a.column is not None and a.column.class_ is Study], query)
    stmt = stmt.order_by(Series.series_number, Instance.instance_number, Instance.id)
    stmt = stmt.limit(query.limit).offset(query.offset)
    wanted = _wanted(INSTANCE, query)
    series_attrs = [a for a in SERIES if a.column is not None and a.default]
    out = []
    for inst, series, study in session.execute(stmt).tuples().all():
        item = {a.tag: _element(a, _value(a, inst, {})) for a in wanted}
        for a in series_attrs:
            item[a.tag] = _element(a, _value(a, series, {}))
        item["0020000D"] = {"vr": "UI", "Value": [study.study_instance_uid]}
        item["00081190"] = {
            "vr": "UR",
            "Value": [
                retrieve_url(study.study_instance_uid, series.series_instance_uid, inst.sop_instance_uid)
            ],
        }
        out.append(item)
    return out
