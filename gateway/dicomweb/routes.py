"""The ``/dicomweb`` mount: QIDO-RS, WADO-RS (with rendered and thumbnail) and STOW-RS (PS3.18).

Every route goes through :class:`~gateway.dicomweb.access.Access` (bearer token or signed link) and one
error boundary that turns failures into a status and a JSON ``{"error": ...}``. CORS headers are added for
the configured origins only.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router

from gateway.dicom.ingest import Ingest
from gateway.dicomweb import qido, stow, wado
from gateway.dicomweb.access import Access
from gateway.dicomweb.multipart import MultipartError, Part, content_type_params, decode, encode
from gateway.index.models import Instance, Series, Study

log = logging.getLogger(__name__)
DICOM_JSON = "application/dicom+json"
SIGNATURE_PARAMS = ("exp", "client", "sig")


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode(),
        status_code=status,
        media_type=DICOM_JSON,
        headers=headers,
    )


def _multipart(parts: list[Part], inner: str, syntax: str | None = None) -> Response:
    body, boundary = encode(parts)
    ctype = f'multipart/related; type="{inner}"; boundary={boundary}'
    if syntax:
        ctype += f"; transfer-syntax={syntax}"
    return Response(body, headers={"Content-Type": ctype})


def _params(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items() if k not in SIGNATURE_PARAMS}


class Dicomweb:
    """Handlers over one index, one store (through ``Ingest``) and one access policy."""

    def __init__(
        self, sessions: sessionmaker[Session], settings: Any, access: Access, ingest: Ingest | None
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.access = access
        self.ingest = ingest

    # -- helpers ---------------------------------------------------------------------------------------------
    def base(self, request: Request) -> str:
        public = self.settings.http.public_base_url
        if public:
            return str(public).rstrip("/") + "/dicomweb"
        # Without a configured public URL, the address this socket serves on: some clients send a Host
        # header without the port.
        server = request.scope.get("server") or ("127.0.0.1", self.settings.http_port)
        return f"{request.url.scheme}://{server[0]}:{server[1]}/dicomweb"

    def retrieve_url(self, request: Request) -> Callable[..., str]:
        base = self.base(request)

        def url(study: str, series: str | None = None, sop: str | None = None) -> str:
            out = f"{base}/studies/{study}"
            if series:
                out += f"/series/{series}"
            if sop:
                out += f"/instances/{sop}"
            return out

        return url

    def instances(self, study: str, series: str | None = None, sop: str | None = None) -> list[Instance]:
        stmt = (
            select(Instance)
            .join(Series, Instance.series_fk == Series.id)
            .join(Study, Instance.study_fk == Study.id)
            .where(Study.study_instance_uid == study)
            .order_by(Series.series_number, Instance.instance_number, Instance.id)
        )
        if series is not None:
            stmt = stmt.where(Series.series_instance_uid == series)
        if sop is not None:
            stmt = stmt.where(Instance.sop_instance_uid == sop)
        with self.sessions() as session:
            rows = list(session.scalars(stmt))
        if not rows:
            raise HttpError(404, "no such " + ("instance" if sop else "series" if series else "study"))
        return rows

    def guard(self, handler: Callable[[Request], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            try:
                principal = self.access.request(
                    request.url.path, request.headers.get("authorization"), dict(request.query_params)
                )
                if principal is None:
                    raise HttpError(401, "a bearer token or a valid signed link is required")
                if inspect.iscoroutinefunction(handler):
                    return cast(Response, await handler(request))
                return await run_in_threadpool(handler, request)
            except HttpError as exc:
                headers = {"WWW-Authenticate": 'Bearer realm="gateway"'} if exc.status == 401 else None
                return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)
            except (qido.QueryError, wado.BadParameter) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            except wado.NotAcceptable as exc:
                return JSONResponse({"error": str(exc)}, status_code=406)
            except KeyError as exc:
                return JSONResponse(
                    {"error": f"not found: {exc.args[0] if exc.args else ''}"}, status_code=404
                )
            except Exception:
                log.exception("DICOMweb request %s failed", request.url.path)
                return JSONResponse({"error": "internal error"}, status_code=500)

        return wrapped

    # -- QIDO-RS ---------------------------------------------------------------------------------------------
    def search(self, level: str) -> Callable[[Request], Response]:
        def handler(request: Request) -> Response:
            wado.json_only(request.headers.get("accept", ""))
            items = [(k, v) for k, v in request.query_params.multi_items() if k not in SIGNATURE_PARAMS]
            query = qido.parse_query(items, level)
            study = request.path_params.get("study")
            series = request.path_params.get("series")
            url = self.retrieve_url(request)
            with self.sessions() as session:
                if level == "study":
                    found = qido.search_studies(session, query, url)
                elif level == "series":
                    found = qido.search_series(session, query, url, study)
                else:
                    found = qido.search_instances(session, query, url, study, series)
            return _json(found)

        return handler

    # -- WADO-RS ---------------------------------------------------------------------------------------------
    def retrieve(self, request: Request) -> Response:
        p = request.path_params
        rows = self.instances(p["study"], p.get("series"), p.get("sop"))
        accepted = wado.accepted_syntaxes(request.headers.get("accept", ""))
        parts: list[Part] = []
        syntaxes = set()
        for inst in rows:
            target = wado.choose_syntax(inst.transfer_syntax_uid, accepted)
            syntaxes.add(target)
            parts.append(
                Part(
                    f"application/dicom; transfer-syntax={target}",
                    wado.instance_bytes(inst.path, inst.transfer_syntax_uid, target),
                )
            )
        return _multipart(parts, "application/dicom", next(iter(syntaxes)) if len(syntaxes) == 1 else None)

    def metadata(self, request: Request) -> Response:
        wado.json_only(request.headers.get("accept", ""))
        p = request.path_params
        rows = self.instances(p["study"], p.get("series"), p.get("sop"))
        url = self.retrieve_url(request)
        out = []
        with self.sessions() as session:
            series_uids = {
                sid: uid
                for sid, uid in session.execute(
                    select(Series.id, Series.series_instance_uid).where(
                        Series.id.in_({r.series_fk for r in rows})
                    )
                ).tuples()
            }
        for inst in rows:
            base = url(p["study"], series_uids[inst.series_fk], inst.sop_instance_uid)
            out.append(wado.metadata(inst.path, functools.partial("{}/bulkdata/{}".format, base)))
        return _json(out)

    def bulkdata(self, request: Request) -> Response:
        p = request.path_params
        inst = self.instances(p["study"], p["series"], p["sop"])[0]
        data = wado.bulk_value(inst.path, p["tag"])
        if "multipart/related" in request.headers.get("accept", "multipart/related"):
            return _multipart([Part("application/octet-stream", data)], "application/octet-stream")
        # A single-part answer honours one byte range (RFC 9110 14), so a client can fetch a large value in
        # pieces or resume.
        headers = {"Accept-Ranges": "bytes"}
        try:
            span = wado.byte_range(request.headers.get("range"), len(data))
        except wado.RangeNotSatisfiable as exc:
            return Response(status_code=416, headers={**headers, "Content-Range": str(exc)})
        if span is None:
            return Response(data, media_type="application/octet-stream", headers=headers)
        first, last = span
        headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
        return Response(
            data[first : last + 1], status_code=206, media_type="application/octet-stream", headers=headers
        )

    def frames(self, request: Request) -> Response:
        p = request.path_params
        inst = self.instances(p["study"], p["series"], p["sop"])[0]
        data = wado.frame_bytes(inst.path, p["frames"])
        return _multipart([Part("application/octet-stream", d) for d in data], "application/octet-stream")

    def rendered_view(self, *, thumbnail: bool) -> Callable[[Request], Response]:
        def handler(request: Request) -> Response:
            p = request.path_params
            dw = self.settings.dicomweb
            options = wado.render_options(
                _params(request), request.headers.get("accept", ""), dw.default_quality
            )
            rows = self.instances(p["study"], p.get("series"), p.get("sop"))
            inst = rows[len(rows) // 2] if p.get("sop") is None else rows[0]
            frame = 1
            if "frames" in p:
                numbers = [x for x in p["frames"].split(",") if x.strip()]
                if not numbers or not numbers[0].isdigit():
                    raise wado.BadParameter("frame numbers are positive integers")
                frame = int(numbers[0])
            size = dw.thumbnail_size if thumbnail else None
            data = wado.rendered(
                inst.path, options, frame=frame, max_size=size, max_pixels=self.settings.imaging.max_pixels
            )
            return Response(
                data, media_type=options.media_type, headers={"Cache-Control": "private, max-age=300"}
            )

        return handler

    # -- STOW-RS ---------------------------------------------------------------------------------------------
    async def stow_rs(self, request: Request) -> Response:
        if self.ingest is None:
            raise HttpError(503, "this process does not store instances (no ingest configured)")
        limit = self.settings.dicomweb.max_stow_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise HttpError(413, f"request body over max_stow_bytes {limit}")
        chunks: list[bytes] = []
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise HttpError(413, f"request body over max_stow_bytes {limit}")
            chunks.append(chunk)
        media, params = content_type_params(request.headers.get("content-type", ""))
        if media == "multipart/related" and params.get("type", "").lower() in (
            "application/dicom+json",
            "application/dicom+xml",
        ):
            raise HttpError(
                415,
                "STOW-RS of metadata with bulk data is not supported; send Part 10 instances "
                '(multipart/related; type="application/dicom")',
            )
        try:
            parts = decode(b"".join(chunks), request.headers.get("content-type", ""))
        except MultipartError as exc:
            raise HttpError(415, str(exc)) from exc
        study = request.path_params.get("study")
        ingest = self.ingest
        outcomes = []
        for part in parts:
            if not part.content_type.lower().startswith("application/dicom"):
                outcomes.append(
                    stow.StowOutcome(
                        "", "", "", "", stow.CANNOT_UNDERSTAND, f"part of type {part.content_type}"
                    )
                )
                continue
            outcomes.append(await run_in_threadpool(stow.store_part, ingest, part.data, study))
        status, body = stow.response_body(outcomes, self.retrieve_url(request))
        warnings = [f'299 gateway "{o.sop_instance_uid}: {o.reason[:200]}"' for o in outcomes if o.failure]
        response = _json(body, status)
        for w in warnings:
            response.headers.append("Warning", w.encode("ascii", "replace").decode())
        return response


def build_dicomweb_routes(
    sessions: sessionmaker[Session], settings: Any, access: Access, ingest: Ingest | None
) -> list[BaseRoute]:
    dw = Dicomweb(sessions, settings, access, ingest)
    g = dw.guard
    inst = "/studies/{study}/series/{series}/instances/{sop}"
    routes: list[BaseRoute] = [
        Route("/studies", g(dw.search("study")), methods=["GET"]),
        Route("/studies", g(dw.stow_rs), methods=["POST"]),
        Route("/series", g(dw.search("series")), methods=["GET"]),
        Route("/instances", g(dw.search("instance")), methods=["GET"]),
        Route("/studies/{study}", g(dw.retrieve), methods=["GET"]),
        Route("/studies/{study}", g(dw.stow_rs), methods=["POST"]),
        Route("/studies/{study}/metadata", g(dw.metadata), methods=["GET"]),
        Route("/studies/{study}/rendered", g(dw.rendered_view(thumbnail=False)), methods=["GET"]),
        Route("/studies/{study}/thumbnail", g(dw.rendered_view(thumbnail=True)), methods=["GET"]),
        Route("/studies/{study}/series", g(dw.search("series")), methods=["GET"]),
        Route("/studies/{study}/instances", g(dw.search("instance")), methods=["GET"]),
        Route("/studies/{study}/series/{series}", g(dw.retrieve), methods=["GET"]),
        Route("/studies/{study}/series/{series}/metadata", g(dw.metadata), methods=["GET"]),
        Route(
            "/studies/{study}/series/{series}/rendered", g(dw.rendered_view(thumbnail=False)), methods=["GET"]
        ),
        Route(
            "/studies/{study}/series/{series}/thumbnail", g(dw.rendered_view(thumbnail=True)), methods=["GET"]
        ),
        Route("/studies/{study}/series/{series}/instances", g(dw.search("instance")), methods=["GET"]),
        Route(inst, g(dw.retrieve), methods=["GET"]),
        Route(inst + "/metadata", g(dw.metadata), methods=["GET"]),
        Route(inst + "/rendered", g(dw.rendered_view(thumbnail=False)), methods=["GET"]),
        Route(inst + "/thumbnail", g(dw.rendered_view(thumbnail=True)), methods=["GET"]),
        Route(inst + "/frames/{frames}", g(dw.frames), methods=["GET"]),
        Route(inst + "/frames/{frames}/rendered", g(dw.rendered_view(thumbnail=False)), methods=["GET"]),
        Route(inst + "/frames/{frames}/thumbnail", g(dw.rendered_view(thumbnail=True)), methods=["GET"]),
        Route(inst + "/bulkdata/{tag}", g(dw.bulkdata), methods=["GET"]),
    ]
    app = CORSMiddleware(
        Router(routes),
        allow_origins=list(settings.dicomweb.cors_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Accept", "Content-Type"],
        expose_headers=["Content-Type", "Content-Length", "Warning"],
    )
    return [Mount("/dicomweb", app=app)]
