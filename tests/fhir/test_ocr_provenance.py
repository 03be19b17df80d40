"""The OCR model set a report was read with reaches FHIR: the Provenance's OCR Device names it."""

from __future__ import annotations

from typing import Any

import pytest
from fhir_seed import document, publish_input

from gateway.fhir.mapping import build_resources
from gateway.fhir.validate import validate_resource
from gateway.reading import ReadingSettings
from gateway.reading.engines.rapidocr import RapidOcrEngine


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_the_ocr_device_names_the_model_set(version: str) -> None:
    engine = RapidOcrEngine(ReadingSettings(ocr_threads=1))
    doc = document()
    doc["engine"] = {"name": engine.name, "version": engine.version, "models": engine.models}
    resources = build_resources(publish_input(doc, version=version))
    devices = [
        r for r in resources if r["resourceType"] == "Device" and r["version"][0]["value"] == engine.version
    ]
    assert len(devices) == 1
    validate_resource(devices[0], version)
    assert "PP-OCRv" in devices[0]["version"][0]["value"] and ".onnx" in devices[0]["version"][0]["value"]
    device_ref = f"Device/{devices[0]['id']}"

    def agents(p: dict[str, Any]) -> list[str]:
        return [a["who"]["reference"] for a in p.get("agent", [])]

    assert any(device_ref in agents(p) for p in resources if p["resourceType"] == "Provenance")
