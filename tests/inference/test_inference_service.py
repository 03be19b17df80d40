from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway.errors import ReadError, StageError
from gateway.inference import HttpReader, LocalReader, make_reader
from gateway.inference.reading import ReadingCore
from gateway.inference.service import Metrics, build_app
from gateway.reading import Document, Engine, ReadingSettings, ReadResult

SETTINGS = ReadingSettings(ocr_threads=2)


def fake_result(text: str = "ok") -> ReadResult:
    doc = Document(source_kind="pdf", engine=Engine(name="fake", version="1"))
    return ReadResult(document=doc, figure_images={"figure-p1-1.png": ("image/png", b"\x89PNG-bytes")})


def test_read_returns_document_and_figures_base64() -> None:
    seen: list[tuple[bytes, str | None, str | None]] = []

    def read(data: bytes, filename: str | None, engine: str | None) -> ReadResult:
        seen.append((data, filename, engine))
        return fake_result()

    with TestClient(build_app(read)) as client:
        response = client.post("/read", content=b"%PDF-1.7 body", params={"filename": "a.pdf", "engine": "x"})
    assert response.status_code == 200
    body = response.json()
    assert body["document"]["schema_version"] == "1.0"
    assert base64.b64decode(body["figures"]["figure-p1-1.png"]["data"]) == b"\x89PNG-bytes"
    assert seen == [(b"%PDF-1.7 body", "a.pdf", "x")]


def test_read_error_is_422() -> None:
    def read(data: bytes, filename: str | None, engine: str | None) -> ReadResult:
        raise ReadError("encrypted PDF")

    with TestClient(build_app(read)) as client:
        response = client.post("/read", content=b"x")
    assert response.status_code == 422
    assert response.json() == {"error": "read", "detail": "encrypted PDF"}


def test_overload_is_503_with_retry_after_and_counted() -> None:
    gate = threading.Event()
    entered = threading.Event()

    def read(data: bytes, filename: str | None, engine: str | None) -> ReadResult:
        entered.set()
        gate.wait(5)
        return fake_result()

    metrics = Metrics(CollectorRegistry())
    app = build_app(read, metrics=metrics, max_queue=1, retry_after_s=7)
    with TestClient(app) as client:
        first: list[int] = []
        t = threading.Thread(target=lambda: first.append(client.post("/read", content=b"a").status_code))
        t.start()
        assert entered.wait(5)
        second = client.post("/read", content=b"b")
        gate.set()
        t.join(5)
        text = client.get("/metrics").text
    assert second.status_code == 503
    assert second.headers["Retry-After"] == "7"
    assert first == [200]
    assert "gateway_read_rejected_total 1.0" in text
    assert 'gateway_reads_total{outcome="ok"} 1.0' in text


def test_health_ready_and_extra_routes() -> None:
    ready = threading.Event()

    async def findings(request: object) -> PlainTextResponse:
        return PlainTextResponse("findings here")

    app = build_app(
        lambda d, f, e: fake_result(),
        ready=ready.is_set,
        device=lambda: "cuda",
        extra_routes=[Route("/findings", findings)],
    )
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
        ready.set()
        assert client.get("/readyz").json() == {"ready": True, "device": "cuda"}
        assert client.get("/findings").text == "findings here"


def test_http_reader_errors_with_mock_transport() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        name = request.url.params.get("filename")
        if name == "busy":
            return httpx.Response(
                503, json={"error": "overloaded", "detail": "full"}, headers={"Retry-After": "5"}
            )
        if name == "bad":
            return httpx.Response(422, json={"error": "read", "detail": "corrupt PDF"})
        return httpx.Response(500, json={"error": "internal", "detail": "boom"})

    reader = HttpReader("http://svc", transport=httpx.MockTransport(handler))
    with pytest.raises(StageError, match="overloaded") as busy:
        reader.read(b"x", "busy")
    assert not isinstance(busy.value, ReadError), "a 503 is retryable"
    with pytest.raises(ReadError, match="corrupt PDF"):
        reader.read(b"x", "bad")
    with pytest.raises(StageError, match="500"):
        reader.read(b"x", "other")


def test_make_reader() -> None:
    assert isinstance(make_reader(SETTINGS, "http://localhost:8090"), HttpReader)
    local = make_reader(SETTINGS, None)
    assert isinstance(local, LocalReader)
    local.close()


def test_local_reader_reads_text_layer(report_pdf: bytes) -> None:
    reader = LocalReader(SETTINGS)
    result = reader.read(report_pdf, "r.pdf")
    reader.close()
    assert result.document.paragraphs[1].figure_refs[0].label == "figure:1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_service() -> Iterator[str]:
    core = ReadingCore(SETTINGS, batch=True)
    app = build_app(core.read, on_shutdown=core.close)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_real_server_round_trip(live_service: str, report_pdf: bytes) -> None:
    reader = HttpReader(live_service, timeout=60)
    result = reader.read(report_pdf, "r.pdf")
    assert [p.section for p in result.document.paragraphs] == ["findings", "findings"]
    with pytest.raises(ReadError, match="unknown document type"):
        reader.read(b"not a document at all", "x.bin")
    assert httpx.get(f"{live_service}/healthz").json() == {"status": "ok"}
    reader.close()
