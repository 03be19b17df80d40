"""The gateway's HTTP application, built only from its constructor arguments.

``/healthz`` says the process is alive; ``/readyz`` says the index answers and the data directory is
writable; ``/metrics`` is Prometheus text. Other routes (the FHIR API) are passed in and guard themselves
with the bearer token.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway import __version__
from gateway.http.auth import token_matches
from gateway.metrics import Metrics
from gateway.settings import Settings

log = logging.getLogger(__name__)


def build_app(
    settings: Settings,
    sessions: sessionmaker[Session],
    metrics: Metrics,
    token: str,
    *,
    extra_routes: Sequence[BaseRoute] = (),
    checks: Sequence[Callable[[], str | None]] = (),
) -> Starlette:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def readyz(request: Request) -> Response:
        problems: list[str] = []
        try:
            with sessions() as session:
                session.execute(text("SELECT 1"))
        except Exception as exc:
            problems.append(f"index: {type(exc).__name__}")
        if not os.access(settings.data_dir, os.W_OK):
            problems.append("data directory not writable")
        for check in checks:
            problem = check()
            if problem:
                problems.append(problem)
        if problems:
            return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics_endpoint(request: Request) -> Response:
        if not token_matches(request.headers.get("authorization"), token):
            return JSONResponse(
                {"error": "bearer token required"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        *extra_routes,
    ]
    return Starlette(routes=routes)
