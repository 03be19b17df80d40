"""Findings generation in the inference service.

``POST /findings`` takes studies as JSON (each image a DICOM file, base64, and optionally the study's clinical
``context``: age, sex, indication) and returns one draft per study.
Requests that arrive together are drafted in one model call: a collector thread waits up to
``batch_wait_s`` for more studies (at most ``max_batch`` of them) before it runs the model, so concurrent
workers share the GPU. With no checkpoint configured the service answers with the "no findings model
configured" status and no text.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import queue
import tempfile
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.findings.service import NOT_CONFIGURED, ClinicalContext, Draft, FindingsDrafter, StudyImage
from gateway.store.uids import validate_uid

log = logging.getLogger(__name__)


def draft_to_json(draft: Draft) -> dict[str, Any]:
    content: dict[str, Any] = {
        "status": "preliminary",
        "machine_written": True,
        "model_name": draft.model_name,
        "model_version": draft.model_version,
        "sentences": [{"text": s.text, "sop_instance_uid": s.sop_instance_uid} for s in draft.sentences],
    }
    if draft.context is not None:
        content["context"] = draft.context.to_json()  # what the model read: age, sex, indication
    return content


@dataclass
class _Job:
    studies: list[list[StudyImage]]
    contexts: list[ClinicalContext | None]
    done: Future[list[Draft]]


class FindingsBatcher:
    """Collects studies from concurrent requests and drafts them in as few model calls as it can."""

    def __init__(self, drafter: FindingsDrafter, *, max_batch: int = 8, batch_wait_s: float = 0.02) -> None:
        self._drafter = drafter
        self._max_batch = max_batch
        self._wait = batch_wait_s
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self.batches: list[int] = []  # studies per model call, for tests and metrics
        self._thread = threading.Thread(target=self._run, name="findings-batcher", daemon=True)
        self._thread.start()

    def submit(
        self, studies: list[list[StudyImage]], contexts: list[ClinicalContext | None] | None = None
    ) -> Future[list[Draft]]:
        job = _Job(studies, contexts or [None] * len(studies), Future())
        self._jobs.put(job)
        return job.done

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            jobs = [first]
            size = len(first.studies)
            while size < self._max_batch:
                try:
                    more = self._jobs.get(timeout=self._wait)
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)
                    break
                jobs.append(more)
                size += len(more.studies)
            studies = [s for job in jobs for s in job.studies]
            contexts = [c for job in jobs for c in job.contexts]
            self.batches.append(len(studies))
            try:
                drafts = self._drafter.draft_studies(studies, contexts)
            except Exception as exc:
                for job in jobs:
                    job.done.set_exception(exc)
                continue
            start = 0
            for job in jobs:
                job.done.set_result(drafts[start : start + len(job.studies)])
                start += len(job.studies)


def _decode_studies(
    payload: Any, folder: Path
) -> tuple[list[list[StudyImage]], list[ClinicalContext | None]]:
    """Write each posted image to ``folder`` and describe it, with each study's context (None when not sent);
    raise ValueError on a malformed request."""
    if not isinstance(payload, dict) or not isinstance(payload.get("studies"), list):
        raise ValueError('expected {"studies": [{"images": [...], "context": {...}}, ...]}')
    studies: list[list[StudyImage]] = []
    contexts: list[ClinicalContext | None] = []
    for s, study in enumerate(payload["studies"]):
        images = study.get("images") if isinstance(study, dict) else None
        if not isinstance(images, list):
            raise ValueError(f"study {s}: expected a list of images")
        out = []
        for i, image in enumerate(images):
            if not isinstance(image, dict):
                raise ValueError(f"study {s} image {i}: expected an object")
            uid = validate_uid(image.get("sop_instance_uid"), what="sop_instance_uid")
            try:
                data = base64.b64decode(str(image.get("dicom", "")), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError(f"study {s} image {i}: dicom is not base64") from exc
            path = folder / f"{s}-{i}.dcm"
            path.write_bytes(data)
            view = image.get("view_position")
            out.append(StudyImage(uid, path, str(view) if view else None))
        studies.append(out)
        context = study.get("context")
        if context is not None and not isinstance(context, dict):
            raise ValueError(f"study {s}: context must be an object (age, sex, indication)")
        contexts.append(ClinicalContext.from_mapping(context) if context is not None else None)
    return studies, contexts


def findings_routes(
    batcher: FindingsBatcher | None, *, max_body_bytes: int = 200 * 1024**2
) -> list[BaseRoute]:
    """``POST /findings``; ``batcher`` None means no model is configured."""

    async def findings(request: Request) -> Response:
        if int(request.headers.get("content-length") or 0) > max_body_bytes:
            return JSONResponse(
                {"error": "too-large", "detail": f"over {max_body_bytes} bytes"}, status_code=413
            )
        try:
            payload = await request.json()
        except ValueError:
            return JSONResponse({"error": "bad-request", "detail": "body is not JSON"}, status_code=400)
        with tempfile.TemporaryDirectory(prefix="findings-") as tmp:
            try:
                studies, contexts = _decode_studies(payload, Path(tmp))
            except Exception as exc:
                return JSONResponse({"error": "bad-request", "detail": str(exc)}, status_code=400)
            if batcher is None:
                return JSONResponse(
                    {"drafts": [{"status": NOT_CONFIGURED, "sentences": []} for _ in studies]}
                )
            try:
                drafts = await asyncio.wrap_future(batcher.submit(studies, contexts))
            except Exception as exc:
                log.exception("drafting findings failed")
                return JSONResponse(
                    {"error": "draft", "detail": f"{type(exc).__name__}: {exc}"}, status_code=422
                )
        return JSONResponse({"drafts": [draft_to_json(d) for d in drafts]})

    return [Route("/findings", findings, methods=["POST"])]
