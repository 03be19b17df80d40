"""Parsing FHIR search query strings (FHIR R4 3.1.1 "Search") into :class:`~gateway.fhir.store.Criteria`.

The parser accepts only what it understands; any other parameter, modifier or prefix is refused with
:class:`~gateway.fhir.errors.InvalidSearch` (HTTP 400) rather than ignored, since an ignored filter would
silently return another patient's reports.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.fhir.errors import InvalidSearch
from gateway.fhir.store import Criteria, DateRange

#: Search parameters per resource type (besides _id, _count, _offset, _lastUpdated).
PARAMS: dict[str, tuple[str, ...]] = {
    "DiagnosticReport": (
        "patient",
        "subject",
        "identifier",
        "category",
        "code",
        "date",
        "status",
        "study",
        "patient.identifier",
        "patient.name",
        "subject.identifier",
        "based-on.identifier",
        "imaging-study.identifier",
        "imaging-study.modality",
        "imaging-study.started",
    ),
    "ImagingStudy": (
        "patient",
        "subject",
        "identifier",
        "status",
        "patient.identifier",
        "started",
        "modality",
    ),
    "Observation": ("patient", "subject", "status", "code", "category", "date", "patient.identifier"),
    "Media": ("patient", "subject", "identifier", "status"),
    "ImagingSelection": ("patient", "subject", "identifier", "status"),
    "ServiceRequest": ("patient", "subject", "identifier", "status"),
    "Patient": ("identifier", "name", "family", "given", "birthdate", "gender"),
    "Provenance": (),
    "Device": (),
    "Organization": (),
    "Endpoint": (),
    "Practitioner": (),
    "Binary": (),
}
COMMON = (
    "_id",
    "_count",
    "_offset",
    "_lastUpdated",
    "_format",
    "_include",
    "_revinclude",
    "_sort",
    "_summary",
    "_elements",
    "_total",
    "_totalMethod",
)
#: ``_include`` targets: search parameter of the source type → the elements whose references it follows.
INCLUDES: dict[str, dict[str, tuple[str, ...]]] = {
    "DiagnosticReport": {
        "result": ("result",),
        "subject": ("subject",),
        "patient": ("subject",),
        "imaging-study": ("imagingStudy", "study"),
        "based-on": ("basedOn",),
        "performer": ("performer",),
        "results-interpreter": ("resultsInterpreter",),
    },
    "Observation": {"subject": ("subject",), "patient": ("subject",), "based-on": ("basedOn",)},
    "ImagingStudy": {"subject": ("subject",), "patient": ("subject",), "based-on": ("basedOn",)},
    "ServiceRequest": {"subject": ("subject",), "patient": ("subject",)},
}
#: ``_revinclude`` sources: Provenance whose target is a match.
REVINCLUDES = ("Provenance:target",)
#: ``_sort`` keys (a leading "-" sorts descending).
SORTS = ("date", "issued", "_lastUpdated", "_id")
SUMMARIES = ("true", "false", "count", "text", "data")
_ELEMENT = re.compile(r"^[a-z][A-Za-z0-9]{0,63}$")
_DATE = re.compile(
    r"^(?P<prefix>eq|ne|gt|lt|ge|le|sa|eb)?(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_UINT = re.compile(r"^[0-9]{1,9}$")  # ASCII digits only; bounded so that no database integer overflows
#: Bounds on one query: more parameters, values or characters are refused (400) rather than turned into a
#: statement the database cannot plan or evaluate.
MAX_PARAMETERS = 64
MAX_VALUES = 100
MAX_VALUE_LENGTH = 1024
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def parse_uint(name: str, raw: str, *, largest: int = 10**9) -> int:
    """A non-negative integer parameter: ASCII digits only (``str.isdigit`` admits "²" and "١")."""
    if not _UINT.match(raw) or int(raw) > largest:
        raise InvalidSearch(f"{name} must be an integer from 0 to {largest}")
    return int(raw)


@dataclass(frozen=True)
class Paging:
    count: int
    offset: int


@dataclass
class Options:
    """How to shape the result: what to add (_include, _revinclude), order, subset and count."""

    include: list[tuple[str, str, str | None]] = field(default_factory=list)  # (source, param, target)
    revinclude: list[str] = field(default_factory=list)
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (key, descending)
    summary: str | None = None
    elements: tuple[str, ...] = ()
    total: str = "accurate"


def parse_options(rtype: str, name: str, raw: str, values: tuple[str, ...], o: Options) -> None:
    """One result parameter (``_include`` ... ``_total``) into ``o``; anything unknown is a 400."""
    if name == "_include":
        parts = raw.split(":")
        if len(parts) not in (2, 3) or parts[0] != rtype or parts[1] not in INCLUDES.get(rtype, {}):
            raise InvalidSearch(f"_include {raw[:64]!r} is not supported for {rtype}")
        o.include.append((parts[0], parts[1], parts[2] if len(parts) == 3 else None))
    elif name == "_revinclude":
        if raw not in REVINCLUDES:
            raise InvalidSearch(f"_revinclude {raw[:64]!r} is not supported; use {', '.join(REVINCLUDES)}")
        o.revinclude.append(raw)
    elif name == "_sort":
        if o.sort:
            raise InvalidSearch("_sort may be given once (a list of keys)")
        for v in values:
            key = v.removeprefix("-")
            if key not in SORTS:
                raise InvalidSearch(f"cannot sort by {v[:64]!r}; supported: {', '.join(SORTS)}")
            o.sort.append((key, v.startswith("-")))
    elif name == "_summary":
        if raw not in SUMMARIES:
            raise InvalidSearch(f"_summary must be one of {', '.join(SUMMARIES)}")
        o.summary = None if raw == "false" else raw
    elif name == "_elements":
        for v in values:
            if not _ELEMENT.match(v):
                raise InvalidSearch(f"invalid element name {v[:64]!r} in _elements")
        o.elements = values
    elif name == "_total":
        if raw not in ("none", "estimate", "accurate"):
            raise InvalidSearch("_total must be none, estimate or accurate")
        o.total = raw
    elif name == "_totalMethod":  # Aidbox's spelling, which fhirpy's count() sends
        if raw not in ("count", "estimate"):
            raise InvalidSearch("_totalMethod must be count or estimate")
        o.total = "accurate" if raw == "count" else "estimate"
    if o.summary and o.elements:
        raise InvalidSearch("_summary and _elements cannot be combined")


def check_format(raw: str) -> None:
    """``_format``: JSON only; XML is refused with 406 (see :class:`~gateway.fhir.errors.NotAcceptable`)."""
    from gateway.fhir.errors import NotAcceptable

    if raw in ("json", "application/json", "application/fhir+json"):
        return
    if "xml" in raw or raw == "ttl" or "turtle" in raw:
        raise NotAcceptable(f"_format {raw[:64]!r}: this server speaks JSON only")
    raise InvalidSearch(f"unknown _format {raw[:64]!r}")


def parse_date(value: str) -> DateRange:
    """A date parameter value as a prefix and the half-open interval its precision covers."""
    m = _DATE.match(value)
    if not m:
        raise InvalidSearch(f"cannot parse date {value!r}")
    prefix = m["prefix"] or "eq"
    y, mo, d = int(m["y"]), int(m["m"] or 1), int(m["d"] or 1)
    try:
        if m["time"]:
            start = dt.datetime.fromisoformat(f"{m['y']}-{m['m']}-{m['d']}T{m['time']}")
            tz = m["tz"]
            if tz is None:
                raise InvalidSearch(f"a date with a time needs a time zone: {value!r}")
            start = start.replace(tzinfo=dt.UTC if tz == "Z" else dt.datetime.strptime(tz, "%z").tzinfo)
            step = dt.timedelta(seconds=1) if m["time"].count(":") >= 2 else dt.timedelta(minutes=1)
            end = start + step
        else:
            start = dt.datetime(y, mo, d, tzinfo=dt.UTC)
            if m["d"]:
                end = start + dt.timedelta(days=1)
            elif m["m"]:
                end = dt.datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=dt.UTC)
            else:
                end = dt.datetime(y + 1, 1, 1, tzinfo=dt.UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidSearch(f"invalid or out-of-range date {value!r}") from exc
    return DateRange(prefix, start, end)


def _token(value: str) -> tuple[str | None, str]:
    if "|" in value:
        system, _, code = value.partition("|")
        if not code:
            raise InvalidSearch(f"token {value!r} has no code")
        return system, code
    if not value:
        raise InvalidSearch("empty token")
    return None, value


def _reference(value: str, rtype: str) -> str:
    tail = value.rstrip("/").split("/")
    rid = tail[-1]
    if len(tail) >= 2 and tail[-2] != rtype:
        raise InvalidSearch(f"{value!r} is not a {rtype} reference")
    if not _ID.match(rid):
        raise InvalidSearch(f"invalid id in reference {value!r}")
    return f"{rtype}/{rid}"


def parse_search(
    rtype: str, items: Sequence[tuple[str, str]], *, default_count: int, max_count: int
) -> tuple[Criteria, Paging, Options]:
    """Parse ``items`` (the query string as name/value pairs) for a search of ``rtype``."""
    if rtype not in PARAMS:
        raise InvalidSearch(f"search of {rtype} is not supported")
    allowed = set(PARAMS[rtype]) | set(COMMON)
    c = Criteria()
    o = Options()
    count, offset = default_count, 0
    if len(items) > MAX_PARAMETERS:
        raise InvalidSearch(f"at most {MAX_PARAMETERS} search parameters per request")
    for name, raw in items:
        if len(raw) > MAX_VALUE_LENGTH:
            raise InvalidSearch(f"the value of {name[:64]!r} is longer than {MAX_VALUE_LENGTH} characters")
        if raw.count(",") >= MAX_VALUES:
            raise InvalidSearch(f"at most {MAX_VALUES} values in one parameter")
        if name not in allowed:
            raise InvalidSearch(f"unknown or unsupported search parameter {name[:64]!r} for {rtype}")
        values = tuple(v.strip() for v in raw.split(","))
        if any(not v for v in values) and name not in ("_format",):
            raise InvalidSearch(f"empty value for {name!r}")
        if name == "_count":
            count = min(parse_uint("_count", raw), max_count)
        elif name == "_offset":
            offset = parse_uint("_offset", raw)
        elif name == "_format":
            check_format(raw)
        elif name in ("_include", "_revinclude", "_sort", "_summary", "_elements", "_total", "_totalMethod"):
            parse_options(rtype, name, raw, values, o)
        elif name == "_id":
            for v in values:
                if not _ID.match(v):
                    raise InvalidSearch(f"invalid id {v!r}")
            c.ids.append(values)
        elif name in ("patient", "subject"):
            c.patient.append(tuple(_reference(v, "Patient") for v in values))
        elif name == "identifier":
            c.identifier.append(tuple(_token(v) for v in values))
        elif name == "category":
            c.category.append(tuple(_token(v) for v in values))
        elif name in ("code", "modality", "gender"):
            c.code.append(tuple(_token(v) for v in values))
        elif name == "status":
            c.status.append(values)
        elif name in ("date", "started", "birthdate"):
            if len(values) > 1:
                raise InvalidSearch(f"{name} does not take a list")
            c.date.append(parse_date(values[0]))
        elif name in ("name", "family", "given"):
            c.names.append(tuple(v.casefold() for v in values))
        elif name in ("patient.identifier", "subject.identifier"):
            c.patient_identifier.append(tuple(_token(v) for v in values))
        elif name == "patient.name":
            c.patient_name.append(tuple(v.casefold() for v in values))
        elif name == "based-on.identifier":
            c.related_identifier.append(("ServiceRequest", tuple(_token(v) for v in values)))
        elif name == "imaging-study.identifier":
            c.related_identifier.append(("ImagingStudy", tuple(_token(v) for v in values)))
        elif name == "imaging-study.modality":
            c.related_code.append(("ImagingStudy", tuple(_token(v) for v in values)))
        elif name == "imaging-study.started":
            if len(values) > 1:
                raise InvalidSearch(f"{name} does not take a list")
            c.related_date.append(("ImagingStudy", parse_date(values[0])))
        elif name == "_lastUpdated":
            if len(values) > 1:
                raise InvalidSearch("_lastUpdated does not take a list")
            c.last_updated.append(parse_date(values[0]))
        elif name == "study":
            # A reference to the ImagingStudy, or the Study Instance UID itself (bare or urn:oid:).
            uids = tuple(v.removeprefix("urn:oid:") for v in values if _UID.match(v.removeprefix("urn:oid:")))
            refs = tuple(
                _reference(v, "ImagingStudy").split("/")[1]
                for v in values
                if v not in uids and not _UID.match(v.removeprefix("urn:oid:"))
            )
            if uids and refs:
                raise InvalidSearch("study takes UIDs or references, not both in one parameter")
            if uids:
                c.study_uid.append(uids)
            else:
                c.study_ref.append(refs)
        else:  # pragma: no cover - allowed but unhandled would be a bug
            raise InvalidSearch(f"unsupported parameter {name!r}")
    return c, Paging(count, offset), o
