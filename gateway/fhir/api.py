"""The FHIR REST API at ``/fhir`` (FHIR R4 3.1.0 RESTful API) and the rendered-image route.

Interactions: ``metadata``, ``read``, ``vread``, ``history-instance`` for every published type, and
``search-type`` (see :mod:`gateway.fhir.search`). Everything except ``/fhir/metadata`` needs
``Authorization: Bearer <token>``; the token is compared in constant time. Every error is an
OperationOutcome. Handlers are plain functions, which Starlette runs in its thread pool, since the index is
synchronous SQLAlchemy.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from gateway import __version__
from gateway.auth import AuthError, LinkSigner, authenticator, build_auth_routes
from gateway.auth.core import Interaction
from gateway.fhir import ids
from gateway.fhir.audit import audit_event_resource, search_audit
from gateway.fhir.audit import record as record_audit
from gateway.fhir.endpoint import dicomweb_endpoint
from gateway.fhir.errors import (
    FhirError,
    Forbidden,
    InvalidSearch,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    NotModified,
    Unauthorized,
)
from gateway.fhir.links import Links, resolve
from gateway.fhir.search import (
    INCLUDES,
    MAX_PARAMETERS,
    PARAMS,
    REVINCLUDES,
    SORTS,
    Options,
    check_format,
    parse_date,
    parse_options,
    parse_search,
    parse_uint,
)
from gateway.fhir.settings import FhirSettings
from gateway.fhir.shape import subset
from gateway.fhir.store import history, history_type, provenance_of, read, read_many, search
from gateway.index.models import AuditEvent, FhirResource, Instance

FHIR_JSON = "application/fhir+json"
log = logging.getLogger(__name__)
Handler = Callable[[Request], Response]


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        import json

        self.fhir_content = content  # kept for the audit trail (what was returned)
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def operation_outcome(status: int, code: str, message: str) -> Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error" if status < 500 else "fatal", "code": code, "diagnostics": message}],
    }
    headers = {"WWW-Authenticate": 'Bearer realm="gateway"'} if status == 401 else None
    return FhirResponse(body, status_code=status, headers=headers)


Who = Callable[[Request, str | None], str]
Recorder = Callable[[Request, str, str | None, int, Any], None]


def _guard(
    who: Who,
    handler: Handler,
    *,
    public: bool = False,
    action: str | None = None,
    audit: Recorder | None = None,
) -> Handler:
    """Authentication, the auditor/clinical split, the error boundary (every failure leaves as an
    OperationOutcome) and the audit record of the request."""

    def wrapped(request: Request) -> Response:
        client: str | None = None
        response: Response
        try:
            if not public:
                client = who(request, action)
                request.state.client = client
            _check_accept(request)
            response = handler(request)
        except NotModified as exc:
            response = Response(status_code=304, headers={"ETag": exc.etag})
        except FhirError as exc:
            response = operation_outcome(exc.status, exc.code, str(exc))
            if isinstance(exc, MethodNotAllowed):
                response.headers["Allow"] = exc.allow
        except Exception:
            log.exception("FHIR request %s failed", request.url.path)
            response = operation_outcome(500, "exception", "internal error")
        if audit is not None and action is not None:
            client = client or getattr(request.state, "client", None)
            audit(request, action, client, response.status_code, getattr(response, "fhir_content", None))
        return response

    return wrapped


def _check_accept(request: Request) -> None:
    """JSON only: an Accept naming XML (or Turtle) and no JSON or wildcard is a 406, as is ``_format=xml``."""
    accept = request.headers.get("accept", "").lower()
    readable = ("json", "*/*", "application/*", "application/pdf", "image/")
    if ("xml" in accept or "turtle" in accept) and not any(x in accept for x in readable):
        raise NotAcceptable("this server speaks JSON only (application/fhir+json)")
    fmt = request.query_params.get("_format")
    if fmt is not None:
        check_format(fmt)


def _root(request: Request, settings_base: str | None) -> str:
    """The server's public root URL: ``[http] public_base_url``, else the request's own base URL."""
    return (settings_base or str(request.base_url)).rstrip("/")


def _base(request: Request, settings_base: str | None) -> str:
    return _root(request, settings_base) + "/fhir"


def _resource_response(
    row: FhirResource, options: Options | None = None, links: Links | None = None
) -> Response:
    headers = {
        "ETag": f'W/"{row.version_id}"',
        "Last-Modified": row.last_updated.astimezone(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT"),
    }
    body = subset(row.body, options.summary, options.elements) if options else row.body
    return FhirResponse(resolve(body, links) if links else body, headers=headers)


def _read_options(rtype: str, request: Request) -> Options:
    """``_summary`` / ``_elements`` on a read; any other parameter is a 400."""
    options = Options()
    for name, raw in request.query_params.multi_items():
        if name == "_format":
            continue
        if name not in ("_summary", "_elements") or len(raw) > 1024:
            raise InvalidSearch(f"a read takes only _summary, _elements and _format, not {name[:64]!r}")
        if name == "_summary" and raw == "count":
            raise InvalidSearch("_summary=count applies to searches")
        parse_options(rtype, name, raw, tuple(v.strip() for v in raw.split(",")), options)
    return options


def _not_modified(request: Request, row: FhirResource) -> None:
    """Conditional read (FHIR R4 3.1.0.5.2): If-None-Match on the version, else If-Modified-Since."""
    etag = f'W/"{row.version_id}"'
    match = request.headers.get("if-none-match")
    if match is not None:
        tags = {t.strip() for t in match.split(",")}
        if "*" in tags or etag in tags or f'"{row.version_id}"' in tags:
            raise NotModified(etag)
        return
    since = request.headers.get("if-modified-since")
    if since:
        try:
            when = parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return  # an unparseable date is ignored (RFC 9110 13.1.3)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        if row.last_updated.astimezone(dt.UTC).replace(microsecond=0) <= when:
            raise NotModified(etag)


def _history_entry(base: str, r: FhirResource, links: Links | None = None) -> dict[str, Any]:
    return {
        "fullUrl": f"{base}/{r.resource_type}/{r.resource_id}",
        "resource": resolve(r.body, links) if links else r.body,
        "request": {
            "method": "POST" if r.version_id == 1 else "PUT",
            "url": f"{r.resource_type}/{r.resource_id}",
        },
        "response": {"status": "201 Created" if r.version_id == 1 else "200 OK"},
    }


SEARCH_TYPES: dict[str, str] = {
    "_id": "token",
    "_lastUpdated": "date",
    "patient": "reference",
    "subject": "reference",
    "identifier": "token",
    "category": "token",
    "code": "token",
    "date": "date",
    "started": "date",
    "birthdate": "date",
    "status": "token",
    "study": "reference",
    "name": "string",
    "family": "string",
    "given": "string",
    "patient.identifier": "token",
    "subject.identifier": "token",
    "patient.name": "string",
    "based-on.identifier": "token",
    "imaging-study.identifier": "token",
    "imaging-study.modality": "token",
    "imaging-study.started": "date",
    "modality": "token",
    "gender": "token",
}


def capability_statement(fhir: FhirSettings, base: str | None = None) -> dict[str, Any]:
    """What this server really does, generated from :data:`gateway.fhir.search.PARAMS`, ``INCLUDES``,
    ``REVINCLUDES`` and ``SORTS`` so that it cannot drift from the code."""
    resources = []
    for rtype, params in PARAMS.items():
        if fhir.version == "R4" and rtype == "ImagingSelection":
            continue
        if fhir.version == "R5" and rtype == "Media":
            continue
        interactions = ["read", "vread", "history-instance", "history-type"]
        entry: dict[str, Any] = {"type": rtype, "versioning": "versioned", "readHistory": True}
        entry["conditionalRead"] = "full-support"
        if rtype != "Binary":
            interactions.append("search-type")
            entry["searchInclude"] = [f"{rtype}:{p}" for p in INCLUDES.get(rtype, {})] or None
            entry["searchRevInclude"] = list(REVINCLUDES)
            entry["searchParam"] = [
                {"name": p, "type": SEARCH_TYPES[p]}
                for p in ("_id", "_lastUpdated", *params)
                if not (p == "_lastUpdated" and p in params)
            ]
        entry["interaction"] = [{"code": code} for code in interactions]
        resources.append({k: v for k, v in entry.items() if v is not None})
    implementation: dict[str, Any] = {"description": "DICOM/PACS report gateway FHIR API (read-only)"}
    if base:
        implementation["url"] = base
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-01",
        "kind": "instance",
        "software": {"name": "gateway", "version": __version__},
        "implementation": implementation,
        "fhirVersion": "4.0.1" if fhir.version == "R4" else "5.0.0",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Search result parameters: _count, _offset, _sort ("
                + ", ".join(SORTS)
                + "), _summary (true, text, data, count), _elements, _total (none, estimate, accurate)"
                + ", _include, _revinclude; POST [type]/_search; XML is answered 406.",
                "security": {
                    "cors": False,
                    # No restful-security-service code names a static bearer token, so none is claimed.
                    "service": [{"text": "Bearer token (RFC 6750): the site's static API token"}],
                    "description": "Authorization: Bearer <token> on every request but /metadata",
                },
                "resource": resources,
            }
        ],
    }


def build_fhir_routes(sessions: sessionmaker[Session], settings: Any, token: str) -> list[BaseRoute]:
    """The ``/fhir`` mount and the ``/images/{sop_instance_uid}.{png|jpeg}`` route.

    ``settings`` is the gateway :class:`~gateway.settings.Settings`; its ``fhir`` and ``http`` sections are
    used.
    """
    fhir: FhirSettings = settings.fhir
    # The one pixel limit (imaging.max_pixels), checked before /images decodes anything.
    max_pixels: int | None = getattr(getattr(settings, "imaging", None), "max_pixels", None)
    public_base: str | None = getattr(getattr(settings, "http", None), "public_base_url", None)
    dicomweb = getattr(settings, "dicomweb", None)
    signer = LinkSigner(token, int(getattr(dicomweb, "signed_url_lifetime", 300)))

    def links_for(request: Request) -> Links:
        """Links for this response, built now from the current public base (gateway.fhir.links); HTML links
        are signed for the client that asked."""
        client = str(getattr(request.state, "client", None) or "fhir")
        return Links(_root(request, public_base), signer, client)

    def metadata(request: Request) -> Response:
        return FhirResponse(capability_statement(fhir, _base(request, public_base)))

    def _check_type(rtype: str) -> None:
        if rtype not in PARAMS:
            raise NotFound(f"resource type {rtype!r} is not served here")

    def endpoint(request: Request, rid: str) -> dict[str, Any]:
        if rid != ids.dicomweb_endpoint_id():
            raise NotFound(f"Endpoint/{rid} not found")
        return dicomweb_endpoint(_root(request, public_base), fhir.version)

    def read_audit_event(rid: str) -> Response:
        if not rid.isascii() or not rid.isdigit() or len(rid) > 12:
            raise NotFound(f"AuditEvent/{rid[:64]} not found")
        with sessions() as session:
            row = session.get(AuditEvent, int(rid))
            if row is None:
                raise NotFound(f"AuditEvent/{rid} not found")
            return FhirResponse(audit_event_resource(row, fhir.version))

    def search_audit_events(request: Request, items: list[tuple[str, str]]) -> Response:
        allowed = {"patient", "agent", "date", "_count", "_offset", "_format"}
        names = {k for k, _ in items}
        if names - allowed:
            raise InvalidSearch(f"AuditEvent search takes {sorted(allowed)}")
        q = dict(items)
        count = min(parse_uint("_count", q.get("_count", str(fhir.page_size))), fhir.max_page_size)
        offset = parse_uint("_offset", q.get("_offset", "0"))
        since = before = None
        for name, raw in items:
            if name == "date":
                r = parse_date(raw)
                if r.prefix in ("ge", "gt", "sa"):
                    since = r.start if r.prefix == "ge" else r.end
                elif r.prefix in ("le", "lt", "eb"):
                    before = r.end if r.prefix == "le" else r.start
                elif r.prefix == "eq":
                    since, before = r.start, r.end
                else:
                    raise InvalidSearch("AuditEvent date takes eq, ge, gt, le, lt")
        patient = q.get("patient")
        if patient and not patient.startswith("Patient/"):
            patient = f"Patient/{patient}"
        with sessions() as session:
            rows = search_audit(
                session,
                patient=patient,
                agent=q.get("agent"),
                since=since,
                before=before,
                count=count + 1,
                offset=offset,
            )
            bodies = [audit_event_resource(r, fhir.version) for r in rows[:count]]
        base = _base(request, public_base)
        links = [{"relation": "self", "url": f"{base}/AuditEvent?" + urlencode(items)}]
        if len(rows) > count:
            kept = [(k, v) for k, v in items if k not in ("_count", "_offset")]
            nxt = urlencode([*kept, ("_count", str(count)), ("_offset", str(offset + count))])
            links.append({"relation": "next", "url": f"{base}/AuditEvent?{nxt}"})
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "link": links}
        if bodies:
            bundle["entry"] = [
                {"fullUrl": f"{base}/AuditEvent/{b['id']}", "resource": b, "search": {"mode": "match"}}
                for b in bodies
            ]
        return FhirResponse(bundle)

    def read_resource(request: Request) -> Response:
        rtype, rid = request.path_params["rtype"], request.path_params["rid"]
        if rtype == "AuditEvent":
            return read_audit_event(rid)
        _check_type(rtype)
        if rtype == "Endpoint":
            return FhirResponse(endpoint(request, rid), headers={"ETag": 'W/"1"'})
        if rid == "_history":
            return history_of_type(request, rtype)
        options = _read_options(rtype, request)
        with sessions() as session:
            row = read(session, rtype, rid)
        if row is None:
            raise NotFound(f"{rtype}/{rid} not found")
        _not_modified(request, row)
        if rtype == "Binary" and _wants_native(request, str(row.body.get("contentType", ""))):
            return Response(base64.b64decode(row.body.get("data", "")), media_type=row.body["contentType"])
        return _resource_response(row, options, links_for(request))

    def vread(request: Request) -> Response:
        rtype, rid, vid = request.path_params["rtype"], request.path_params["rid"], request.path_params["vid"]
        _check_type(rtype)
        version = parse_uint("version", str(vid))
        if rtype == "Endpoint":
            if version != 1:
                raise NotFound(f"{rtype}/{rid}/_history/{vid} not found")
            return FhirResponse(endpoint(request, rid), headers={"ETag": 'W/"1"'})
        with sessions() as session:
            row = read(session, rtype, rid, version)
        if row is None:
            raise NotFound(f"{rtype}/{rid}/_history/{vid} not found")
        return _resource_response(row, links=links_for(request))

    def history_instance(request: Request) -> Response:
        rtype, rid = request.path_params["rtype"], request.path_params["rid"]
        _check_type(rtype)
        if rtype == "Endpoint":
            base = _base(request, public_base)
            body = endpoint(request, rid)
            return FhirResponse(
                {
                    "resourceType": "Bundle",
                    "type": "history",
                    "total": 1,
                    "link": [{"relation": "self", "url": f"{base}/Endpoint/{rid}/_history"}],
                    "entry": [
                        {
                            "fullUrl": f"{base}/Endpoint/{rid}",
                            "resource": body,
                            "request": {"method": "PUT", "url": f"Endpoint/{rid}"},
                            "response": {"status": "200 OK"},
                        }
                    ],
                }
            )
        with sessions() as session:
            rows = history(session, rtype, rid)
        if not rows:
            raise NotFound(f"{rtype}/{rid} not found")
        base = _base(request, public_base)
        served = links_for(request)
        return FhirResponse(
            {
                "resourceType": "Bundle",
                "type": "history",
                "total": len(rows),
                "link": [{"relation": "self", "url": f"{base}/{rtype}/{rid}/_history"}],
                "entry": [
                    {
                        "fullUrl": f"{base}/{rtype}/{rid}",
                        "resource": resolve(r.body, served),
                        "request": {
                            "method": "POST" if r.version_id == 1 else "PUT",
                            "url": f"{rtype}/{rid}",
                        },
                        "response": {"status": "201 Created" if r.version_id == 1 else "200 OK"},
                    }
                    for r in rows
                ],
            }
        )

    def search_type(request: Request) -> Response:
        return run_search(request, list(request.query_params.multi_items()))

    def run_search(request: Request, items: list[tuple[str, str]]) -> Response:
        rtype = request.path_params["rtype"]
        if rtype == "AuditEvent":
            return search_audit_events(request, items)
        _check_type(rtype)
        if rtype == "Binary":
            raise InvalidSearch("Binary cannot be searched")
        criteria, paging, options = parse_search(
            rtype, items, default_count=fhir.page_size, max_count=fhir.max_page_size
        )
        base = _base(request, public_base)
        if rtype == "Endpoint":  # the one Endpoint, built for this request
            only = ids.dicomweb_endpoint_id()
            hit = all(only in idset for idset in criteria.ids)
            found: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": int(hit)}
            found["link"] = [{"relation": "self", "url": f"{base}/Endpoint?" + urlencode(items)}]
            if hit and paging.count and not paging.offset:
                found["entry"] = [
                    {
                        "fullUrl": f"{base}/Endpoint/{only}",
                        "resource": endpoint(request, only),
                        "search": {"mode": "match"},
                    }
                ]
            return FhirResponse(found)
        count = 0 if options.summary == "count" else paging.count
        with sessions() as session:
            total, rows = search(
                session,
                rtype,
                criteria,
                count=count + (1 if options.total == "none" else 0),
                offset=paging.offset,
                sort=options.sort,
                total=options.total != "none",
            )
            more = len(rows) > count if total is None else paging.offset + count < total
            rows = rows[:count]
            included = _included(session, rows, options)
        kept = [(k, v) for k, v in items if k not in ("_count", "_offset")]

        def page(offset: int) -> str:
            return f"{base}/{rtype}?" + urlencode(
                [*kept, ("_count", str(paging.count)), ("_offset", str(offset))]
            )

        links = [{"relation": "self", "url": page(paging.offset)}]
        if count and more:
            links.append({"relation": "next", "url": page(paging.offset + count)})
        if paging.offset > 0 and count:
            links.append({"relation": "previous", "url": page(max(0, paging.offset - count))})
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
        if total is not None:
            bundle["total"] = total
        bundle["link"] = links
        served = links_for(request)
        entries = [
            {
                "fullUrl": f"{base}/{rtype}/{r.resource_id}",
                "resource": resolve(subset(r.body, options.summary, options.elements), served),
                "search": {"mode": "match"},
            }
            for r in rows
        ] + [
            {
                "fullUrl": f"{base}/{r.resource_type}/{r.resource_id}",
                "resource": resolve(r.body, served),
                "search": {"mode": "include"},
            }
            for r in included
        ]
        if entries:  # FHIR JSON has no empty arrays
            bundle["entry"] = entries
        return FhirResponse(bundle)

    def history_of_type(request: Request, rtype: str) -> Response:
        unknown = set(request.query_params) - {"_count", "_offset", "_since", "_format"}
        if unknown:
            raise InvalidSearch(f"unsupported history parameter(s) {sorted(k[:64] for k in unknown)}")
        q = request.query_params
        count = min(parse_uint("_count", q.get("_count", str(fhir.page_size))), fhir.max_page_size)
        offset = parse_uint("_offset", q.get("_offset", "0"))
        since = parse_date(q["_since"]).start if "_since" in q else None
        with sessions() as session:
            total, rows = history_type(session, rtype, count=count, offset=offset, since=since)
        base = _base(request, public_base)
        kept = [(k, v) for k, v in q.multi_items() if k not in ("_count", "_offset")]

        def page(at: int) -> str:
            return f"{base}/{rtype}/_history?" + urlencode(
                [*kept, ("_count", str(count)), ("_offset", str(at))]
            )

        links = [{"relation": "self", "url": page(offset)}]
        if count and offset + count < total:
            links.append({"relation": "next", "url": page(offset + count)})
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history", "total": total, "link": links}
        if rows:
            served = links_for(request)
            bundle["entry"] = [_history_entry(base, r, served) for r in rows]
        return FhirResponse(bundle)

    async def search_post(request: Request) -> Response:
        """``POST [type]/_search``: form-encoded parameters (with any in the URL), the same search as GET."""
        raw = await request.body()

        def handle(req: Request) -> Response:
            if not req.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                raise InvalidSearch("POST _search takes application/x-www-form-urlencoded parameters")
            if len(raw) > 64 * 1024:
                raise InvalidSearch("the search body is larger than 64 KiB")
            try:
                form = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_PARAMETERS)
            except (UnicodeDecodeError, ValueError) as exc:
                raise InvalidSearch("the search body is not valid form data") from exc
            return run_search(req, [*req.query_params.multi_items(), *form])

        return await run_in_threadpool(g(token, handle, action="search"), request)

    def not_allowed(request: Request) -> Response:
        parts = [p for p in request.url.path.split("/fhir", 1)[-1].split("/") if p]
        if request.method in ("GET", "HEAD"):
            raise NotFound(f"no such endpoint {request.url.path}")
        allow = "GET, HEAD"
        if len(parts) == 1 and parts[0] in PARAMS:
            allow = "GET, HEAD"
        if len(parts) == 2 and parts[1] == "_search":
            allow = "POST"
        raise MethodNotAllowed(f"{request.method} is not supported; this server is read-only", allow)

    def _included(session: Session, rows: list[FhirResource], options: Options) -> list[FhirResource]:
        refs: list[tuple[str, str]] = []
        for _source, param, target in options.include:
            for row in rows:
                for element in INCLUDES[row.resource_type][param]:
                    value = row.body.get(element)
                    for ref in value if isinstance(value, list) else [value] if value else []:
                        rtype_, _, rid_ = str(ref.get("reference", "")).partition("/")
                        if rid_ and (target is None or target == rtype_):
                            refs.append((rtype_, rid_))
        matched = {(r.resource_type, r.resource_id) for r in rows}
        out = [r for r in read_many(session, [x for x in refs if x not in matched])]
        if options.revinclude:
            out += provenance_of(session, rows)
        seen: set[tuple[str, str]] = set()
        unique = []
        for r in out:
            if (r.resource_type, r.resource_id) not in seen:
                seen.add((r.resource_type, r.resource_id))
                unique.append(r)
        return unique

    def image(request: Request) -> Response:
        from gateway.imaging import ImagingError, encode_image, read_and_render

        name = str(request.path_params["name"])
        uid, _, ext = name.rpartition(".")
        fmt = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg"}.get(ext.lower())
        if fmt is None or not uid or not all(ch.isdigit() or ch == "." for ch in uid):
            raise NotFound(f"no image {name!r}")
        unknown = set(request.query_params) - {"size"}
        if unknown:
            raise InvalidSearch(f"unknown parameter(s) {sorted(unknown)}")
        size_raw = request.query_params.get("size")
        size = fhir.thumbnail_size
        if size_raw is not None:
            size = parse_uint("size", size_raw, largest=4096)
            if size < 16:
                raise InvalidSearch("size must be an integer from 16 to 4096")
        with sessions() as session:
            inst = session.query(Instance).filter(Instance.sop_instance_uid == uid).one_or_none()
        if inst is None:
            raise NotFound(f"no instance {uid}")
        try:
            pixels = (
                read_and_render(inst.path, max_pixels=max_pixels)
                if max_pixels is not None
                else read_and_render(inst.path)
            )
        except ImagingError as exc:
            raise NotFound(f"instance {uid} has no renderable image: {exc}") from exc
        data = encode_image(pixels, "png" if fmt == "png" else "jpeg", max_size=size)
        return Response(data, media_type=f"image/{fmt}", headers={"Cache-Control": "private, max-age=3600"})

    auth = authenticator(settings, token)

    def who(request: Request, action: str | None) -> str:
        """The client id, once the token and its scope for this request are checked."""
        rtype = str(request.path_params.get("rtype") or "ImagingStudy")  # /images: reading the study
        interaction: Interaction = "search" if action in ("search", "history-type") else "read"
        if request.path_params.get("rid") == "_history":
            interaction = "search"
        try:
            principal = auth.authenticate(request.headers.get("authorization"))
            request.state.client = principal.client_id  # known from here on, for the audit record
            auth.require(principal, rtype, interaction)
        except AuthError as exc:
            raise (Unauthorized if exc.status == 401 else Forbidden)(str(exc)) from exc
        return principal.client_id

    def audit(request: Request, action: str, client: str | None, status: int, content: Any) -> None:
        query = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        rtype = request.path_params.get("rtype")
        record_audit(
            sessions,
            client_id=client or "anonymous",
            action=action,
            resource_type=str(rtype) if rtype else None,
            query=query,
            outcome=status,
            content=content,
            durable=fhir.audit_durable,
        )

    def g(_token: str, handler: Handler, *, public: bool = False, action: str | None = None) -> Handler:
        return _guard(who, handler, public=public, action=action, audit=audit)

    fhir_routes: list[BaseRoute] = [
        Route("/metadata", g(token, metadata, public=True), methods=["GET"]),
        Route("/{rtype}/{rid}/_history/{vid}", g(token, vread, action="vread"), methods=["GET"]),
        Route("/{rtype}/{rid}/_history", g(token, history_instance, action="history"), methods=["GET"]),
        Route("/{rtype}/{rid}", g(token, read_resource, action="read"), methods=["GET"]),
        Route("/{rtype}/_search", search_post, methods=["POST"]),
        Route("/{rtype}", g(token, search_type, action="search"), methods=["GET"]),
        Route("/{rest:path}", g(token, not_allowed), methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]
    cors = [
        Middleware(
            CORSMiddleware,
            allow_origins=list(getattr(getattr(settings, "http", None), "cors_origins", []) or []),
            allow_methods=["GET", "HEAD", "POST"],
            allow_headers=["Authorization", "Content-Type", "Accept", "If-None-Match", "If-Modified-Since"],
            expose_headers=["ETag", "Last-Modified", "Location", "Content-Location"],
            max_age=600,
        )
    ]
    return [
        *build_auth_routes(auth, public_base),
        Mount("/fhir", routes=fhir_routes, middleware=cors),
        Route("/images/{name}", g(token, image, action="image"), methods=["GET"]),
    ]


def _wants_native(request: Request, content_type: str) -> bool:
    accept = request.headers.get("accept", "")
    return bool(content_type) and content_type in accept and "fhir+json" not in accept
