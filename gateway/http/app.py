"""The gateway's HTTP application, built only from its constructor arguments.

``/healthz`` says the process is alive; ``/readyz`` says the index answers (a read that takes no write
lock), the data directory is writable and its free space is above ``dicom.min_free_bytes`` (below it every
C-STORE gets 0xA700); ``/metrics`` is Prometheus text. Other routes (the FHIR API) are passed in and guard
themselves with the bearer token.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway import __version__
from gateway.http.auth import token_matches
from gateway.index.db import BUSY_TIMEOUT, READ_ONLY
from gateway.metrics import Metrics
from gateway.settings import Settings

log = logging.getLogger(__name__)


def _space_problem(settings: Settings) -> str | None:
    """What the SCP's capacity check would say about the store now (it refuses C-STOREs with 0xA700)."""
    store = settings.store_dir if settings.store_dir.exists() else settings.data_dir
    try:
        stat = os.statvfs(store)
    except OSError as exc:
        return f"store: {exc.strerror}"
    free = stat.f_bavail * stat.f_frsize
    if free < settings.dicom.min_free_bytes:
        return f"only {free} bytes free in the store, below the reserve of {settings.dicom.min_free_bytes}"
    return None


def build_app(
    settings: Settings,
    sessions: sessionmaker[Session],
    metrics: Metrics,
    token: str,
    *,
    extra_routes: Sequence[BaseRoute] = (),
    checks: Sequence[Callable[[], str | None]] = (),
) -> Starlette:
    bind = sessions.kw.get("bind")
    reads = (
        sessionmaker(bind.execution_options(**{READ_ONLY: True, BUSY_TIMEOUT: 2.0}))
        if isinstance(bind, Engine)
        else sessions
    )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def readyz(request: Request) -> Response:
        problems: list[str] = []
        try:
            # A read that takes no write lock: a long pipeline write must not make the probe hang.
            with reads() as session:
                session.execute(text("SELECT 1"))
        except Exception as exc:
            problems.append(f"index: {type(exc).__name__}")
        if not os.access(settings.data_dir, os.W_OK):
            problems.append("data directory not writable")
        problem = _space_problem(settings)
        if problem:
            problems.append(problem)
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
