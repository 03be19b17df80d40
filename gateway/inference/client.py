"""How a worker reads a report: in process, or through the inference service by URL.

Both implement :class:`ReportReader`; :func:`make_reader` picks one from the settings. Errors are translated
once here: a 503 (service overloaded) is a retryable :class:`~gateway.errors.StageError`, a 422 read error is
a :class:`~gateway.errors.ReadError` (permanent), and a network failure is retryable.
"""

from __future__ import annotations

import base64
from typing import Any, Protocol

import httpx

from gateway.errors import PermanentStageError, ReadError, StageError
from gateway.reading import Document, ReadingSettings, ReadResult

__all__ = ["HttpReader", "LocalReader", "ReportReader", "draft_remote", "make_reader", "result_from_json"]


class ReportReader(Protocol):
    def read(self, data: bytes, filename: str | None) -> ReadResult:
        """Read one document; raises ReadError (permanent) or StageError (retry)."""
        ...


class LocalReader:
    """Reads in this process with the same core as the service (engines built once, recognition batched)."""

    def __init__(self, settings: ReadingSettings) -> None:
        from gateway.inference.reading import ReadingCore

        self._core = ReadingCore(settings, batch=True)

    def read(self, data: bytes, filename: str | None) -> ReadResult:
        return self._core.read(data, filename)

    def close(self) -> None:
        self._core.close()


def result_from_json(payload: dict[str, Any]) -> ReadResult:
    document = Document.model_validate(payload["document"])
    images = {
        name: (str(item["media_type"]), base64.b64decode(item["data"]))
        for name, item in (payload.get("figures") or {}).items()
    }
    return ReadResult(document=document, figure_images=images)


class HttpReader:
    """Reads through the inference service at ``url``. ``transport`` lets tests run without sockets."""

    def __init__(
        self,
        url: str,
        timeout: float = 300.0,
        *,
        engine: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, transport=transport)
        self._engine = engine

    def read(self, data: bytes, filename: str | None) -> ReadResult:
        params = {k: v for k, v in (("filename", filename), ("engine", self._engine)) if v}
        try:
            response = self._client.post("/read", content=data, params=params)
        except httpx.HTTPError as exc:
            raise StageError(f"inference service unreachable: {exc}") from exc
        if response.status_code == 200:
            try:
                return result_from_json(response.json())
            except (ValueError, KeyError, TypeError) as exc:
                raise StageError(f"inference service sent an invalid answer: {exc}") from exc
        detail = _detail(response)
        if response.status_code == 503:
            retry = response.headers.get("Retry-After", "?")
            raise StageError(f"inference service overloaded (retry after {retry} s): {detail}")
        if response.status_code == 422 or detail.startswith("read:"):
            raise ReadError(detail.removeprefix("read:").strip())
        if 400 <= response.status_code < 500:
            raise PermanentStageError(
                f"inference service refused the document ({response.status_code}): {detail}"
            )
        raise StageError(f"inference service failed ({response.status_code}): {detail}")

    def close(self) -> None:
        self._client.close()


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        return str(body.get("detail", body))
    return str(body)


def make_reader(settings: ReadingSettings, inference_url: str | None, timeout: float = 300.0) -> ReportReader:
    """The service's reader when a URL is configured, else the embedded one."""
    if inference_url:
        return HttpReader(inference_url, timeout)
    return LocalReader(settings)


def draft_remote(
    url: str,
    images: list[tuple[str, bytes, str | None]],
    timeout: float = 300.0,
    context: dict[str, object] | None = None,
) -> dict[str, Any]:
    """Draft one study at the service's ``/findings``; ``images`` are (SOP Instance UID, DICOM bytes, view),
    ``context`` the study's age, sex and indication (read by a model trained with context).

    Returns the draft as the stage stores it. A 503 or a network failure is retryable; a 4xx is not.
    """
    body = {
        "studies": [
            {
                "context": context,
                "images": [
                    {
                        "sop_instance_uid": uid,
                        "dicom": base64.b64encode(data).decode("ascii"),
                        "view_position": view,
                    }
                    for uid, data, view in images
                ],
            }
        ]
    }
    try:
        response = httpx.post(f"{url.rstrip('/')}/findings", json=body, timeout=timeout)
    except httpx.HTTPError as exc:
        raise StageError(f"inference service unreachable: {type(exc).__name__}") from exc
    if response.status_code == 503 or response.status_code >= 500:
        raise StageError(f"inference service answered {response.status_code}: {_detail(response)}")
    if response.status_code >= 400:
        raise PermanentStageError(f"inference service refused the study: {_detail(response)}")
    drafts = response.json().get("drafts") or []
    if len(drafts) != 1 or not isinstance(drafts[0], dict):
        raise StageError("inference service returned a malformed draft")
    return dict(drafts[0])
