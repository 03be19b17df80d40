"""Findings generation in the inference service: batched across requests, and reached by the stage by URL."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
import pytest
import uvicorn

from gateway.dicom.ingest import Ingest
from gateway.errors import PermanentStageError
from gateway.findings.service import NOT_CONFIGURED, FindingsSettings, load_drafter
from gateway.findings.synthetic import generate, write_dicom
from gateway.index.models import Study
from gateway.inference.client import draft_remote
from gateway.inference.findings import FindingsBatcher, findings_routes
from gateway.inference.service import build_app
from gateway.metrics import Metrics
from gateway.pipeline.stage import StageContext
from gateway.pipeline.stages import draft_findings


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint) -> Path:  # type: ignore[no-untyped-def]
    return tiny_checkpoint("cnn-lstm", max_tokens=8)


def _serve(batcher: FindingsBatcher | None) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = build_app(lambda *a: None, extra_routes=findings_routes(batcher))  # type: ignore[arg-type,return-value]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def batcher(checkpoint: Path) -> Iterator[FindingsBatcher]:
    drafter = load_drafter(FindingsSettings(checkpoint=checkpoint, beam_size=2))
    assert drafter is not None
    batcher = FindingsBatcher(drafter, max_batch=8, batch_wait_s=0.2)
    yield batcher
    batcher.close()


@pytest.fixture(scope="module")
def service(batcher: FindingsBatcher) -> Iterator[str]:
    yield from _serve(batcher)


def _images(tmp_path: Path, n: int) -> list[tuple[str, bytes, str | None]]:
    study = generate(n + 1, seed=n)[n]
    out = []
    for pixels, view in ((study.frontal, "PA"), (study.lateral, "LL")):
        path = tmp_path / f"{n}-{view}.dcm"
        uid = write_dicom(
            path, pixels, view_position=view, study_uid=f"1.2.826.0.1.3680043.10.{n}", patient_id="P"
        )
        out.append((uid, path.read_bytes(), view))
    return out


def test_concurrent_requests_are_drafted_together(
    service: str, batcher: FindingsBatcher, tmp_path: Path
) -> None:
    studies = [_images(tmp_path, n) for n in range(4)]
    before = len(batcher.batches)
    with ThreadPoolExecutor(4) as pool:
        drafts = list(pool.map(lambda images: draft_remote(service, images), studies))
    for images, draft in zip(studies, drafts, strict=True):
        assert draft["status"] == "preliminary" and draft["model_name"]
        assert {s["sop_instance_uid"] for s in draft["sentences"]} == {images[0][0]}  # the frontal view
    assert max(batcher.batches[before:]) > 1, batcher.batches[before:]


def test_bad_requests_are_refused(service: str) -> None:
    import httpx

    bad = httpx.post(f"{service}/findings", json={"studies": [{"images": [{"sop_instance_uid": "../x"}]}]})
    assert bad.status_code == 400
    assert httpx.post(f"{service}/findings", content=b"not json").status_code == 400
    with pytest.raises(PermanentStageError, match="sop_instance_uid"):
        draft_remote(service, [("1.2/../3", b"x", None)], timeout=10)


def test_service_without_a_model_writes_no_text(tmp_path: Path) -> None:
    for url in _serve(None):
        draft = draft_remote(url, _images(tmp_path, 0))
        assert draft == {"status": NOT_CONFIGURED, "sentences": []}


def test_stage_drafts_through_the_service(settings_factory, sessions, service: str, tmp_path: Path) -> None:
    settings = settings_factory(pipeline={"inference_url": service})
    ingest = Ingest(settings, sessions, Metrics())
    images = _images(tmp_path, 7)
    for _uid, data, _view in images:
        path = tmp_path / "x.dcm"
        path.write_bytes(data)
        ds = pydicom.dcmread(path)
        ingest.store(data, ds, transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID), calling_ae="T")
    with sessions() as session:
        study = session.query(Study).one()
    ctx = StageContext(settings, sessions, study_version=1, stage="draft_findings")
    assert draft_findings.run(ctx, study)["status"] == "preliminary"
    (doc,) = ctx.documents(study, stage="draft_findings")
    assert doc.content is not None and doc.content["machine_written"] is True
    assert all(s["sop_instance_uid"] == images[0][0] for s in doc.content["sentences"])


def test_service_reads_the_context_a_context_model_needs(tiny_checkpoint, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import httpx

    drafter = load_drafter(FindingsSettings(checkpoint=tiny_checkpoint("cnn-lstm", 6, True), beam_size=2))
    assert drafter is not None and drafter.uses_context
    batcher = FindingsBatcher(drafter, max_batch=4, batch_wait_s=0.05)
    try:
        for url in _serve(batcher):
            context = {"age": 81, "sex": "F", "indication": "Shortness of breath."}
            draft = draft_remote(url, _images(tmp_path, 2), context=context)
            assert draft["status"] == "preliminary" and draft["sentences"]
            assert draft["context"] == context  # what the model read comes back with the draft
            unknown = draft_remote(url, _images(tmp_path, 3))  # none sent: read as unknown, as in training
            assert unknown["context"] == {"age": None, "sex": None, "indication": None}
            bad = httpx.post(f"{url}/findings", json={"studies": [{"images": [], "context": "old"}]})
            assert bad.status_code == 400 and "context" in bad.text
    finally:
        batcher.close()
