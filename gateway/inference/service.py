"""The inference service: read documents over HTTP (starlette), with a bounded queue and metrics.

``POST /read?filename=NAME&engine=NAME`` with the document as the raw body answers
``{"document": {...}, "figures": {artifact: {"media_type": ..., "data": base64}}}``. A read error is a 422
with ``{"error": "read", "detail": ...}``; when the queue is full the answer is 503 with ``Retry-After``.
``/healthz`` (alive), ``/readyz`` (engine loaded), ``/metrics`` (Prometheus, the app's own registry).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.errors import ConfigError, NotConfigured, ReadError
from gateway.findings.settings import FindingsSettings
from gateway.reading import ReadingSettings, ReadResult

log = logging.getLogger(__name__)

ReadFn = Callable[[bytes, str | None, str | None], ReadResult]


class Metrics:
    """The service's metrics, on a registry of its own (never the global one)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.reads = Counter("gateway_reads", "documents read, by outcome", ["outcome"], registry=registry)
        self.rejected = Counter(
            "gateway_read_rejected", "requests refused with 503 (queue full)", registry=registry
        )
        self.seconds = Histogram(
            "gateway_read_seconds",
            "time to read one document",
            registry=registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
        )
        self.queued = Gauge(
            "gateway_read_queue", "documents accepted and not yet answered", registry=registry
        )
        self.batch_crops = Histogram(
            "gateway_recognition_batch_crops",
            "crops per recognition run",
            registry=registry,
            buckets=(1, 4, 8, 16, 32, 64, 128, 256),
        )
        self.batch_requests = Histogram(
            "gateway_recognition_batch_requests",
            "requests sharing one recognition run",
            registry=registry,
            buckets=(1, 2, 3, 4, 8, 16),
        )

    def on_batch(self, requests: int, crops: int) -> None:
        self.batch_requests.observe(requests)
        self.batch_crops.observe(crops)


def result_to_json(result: ReadResult) -> dict[str, Any]:
    """The wire form: the document, and the figure bytes base64-encoded under their own key."""
    return {
        "document": result.document.model_dump(mode="json"),
        "figures": {
            name: {"media_type": media, "data": base64.b64encode(data).decode("ascii")}
            for name, (media, data) in result.figure_images.items()
        },
    }


def build_app(
    read: ReadFn,
    *,
    metrics: Metrics | None = None,
    ready: Callable[[], bool] = lambda: True,
    device: Callable[[], str] = lambda: "cpu",
    max_queue: int = 8,
    workers: int = 1,
    max_body_bytes: int = 200 * 1024**2,
    retry_after_s: int = 5,
    extra_routes: Sequence[BaseRoute] | None = None,
    on_shutdown: Callable[[], None] | None = None,
) -> Starlette:
    """The service app, built only from its arguments.

    ``read`` does the work (in a pool of ``workers`` threads); at most ``max_queue`` documents are accepted at
    once (running plus waiting) and the rest get 503. ``extra_routes`` are mounted beside the reading routes.
    """
    metrics = metrics or Metrics(CollectorRegistry())
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="read")
    lock = threading.Lock()
    state = {"accepted": 0}

    def admit() -> bool:
        with lock:
            if state["accepted"] >= max_queue:
                return False
            state["accepted"] += 1
            metrics.queued.set(state["accepted"])
            return True

    def release() -> None:
        with lock:
            state["accepted"] -= 1
            metrics.queued.set(state["accepted"])

    async def read_document(request: Request) -> Response:
        length = int(request.headers.get("content-length") or 0)
        if length > max_body_bytes:
            return JSONResponse(
                {"error": "too-large", "detail": f"over {max_body_bytes} bytes"}, status_code=413
            )
        if not admit():
            metrics.rejected.inc()
            return JSONResponse(
                {"error": "overloaded", "detail": "the reading queue is full"},
                status_code=503,
                headers={"Retry-After": str(retry_after_s)},
            )
        try:
            body = await request.body()
            filename = request.query_params.get("filename")
            engine = request.query_params.get("engine")
            started = time.perf_counter()
            loop = asyncio.get_running_loop()
            try:
                result = await loop.run_in_executor(pool, read, body, filename, engine)
            except ReadError as exc:
                metrics.reads.labels("read-error").inc()
                return JSONResponse({"error": "read", "detail": str(exc)}, status_code=422)
            except (NotConfigured, ConfigError) as exc:
                metrics.reads.labels("config-error").inc()
                return JSONResponse({"error": "config", "detail": str(exc)}, status_code=400)
            except Exception:
                log.exception("reading %s failed", filename)
                metrics.reads.labels("failed").inc()
                return JSONResponse({"error": "internal", "detail": "reading failed"}, status_code=500)
            metrics.seconds.observe(time.perf_counter() - started)
            metrics.reads.labels("ok").inc()
            return JSONResponse(result_to_json(result))
        finally:
            release()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ok = ready()
        return JSONResponse({"ready": ok, "device": device()}, status_code=200 if ok else 503)

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            if on_shutdown is not None:
                on_shutdown()

    routes: list[BaseRoute] = [
        Route("/read", read_document, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        *(extra_routes or []),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def build_service_app(settings: ReadingSettings, **kwargs: Any) -> Starlette:
    """The production wiring: one :class:`ReadingCore` with batching, warmed up in the background."""
    from gateway.inference.reading import ReadingCore

    metrics = Metrics(CollectorRegistry())
    core = ReadingCore(settings, batch=True, on_batch=metrics.on_batch)
    loaded = threading.Event()

    def warm() -> None:
        try:
            core.engine()
        except Exception:
            log.exception("loading OCR engine %s failed", settings.engine)
            return
        loaded.set()

    threading.Thread(target=warm, name="engine-warmup", daemon=True).start()
    return build_app(
        core.read,
        metrics=metrics,
        ready=loaded.is_set,
        device=lambda: core.device,
        on_shutdown=core.close,
        **kwargs,
    )


def serve(
    settings: ReadingSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8090,
    findings: FindingsSettings | None = None,
) -> None:
    """Run the service: report reading, and findings generation when a checkpoint is configured."""
    import uvicorn

    from gateway.findings.service import load_drafter
    from gateway.inference.findings import FindingsBatcher, findings_routes

    drafter = load_drafter(findings) if findings is not None else None
    batcher = FindingsBatcher(drafter, max_batch=findings.batch_size) if drafter and findings else None
    app = build_service_app(
        settings,
        max_body_bytes=settings.max_input_bytes,
        workers=settings.service_workers,
        max_queue=settings.service_max_queue,
        extra_routes=findings_routes(batcher, max_body_bytes=settings.max_input_bytes),
    )
    try:
        uvicorn.run(app, host=host, port=port)
    finally:
        if batcher is not None:
            batcher.close()
