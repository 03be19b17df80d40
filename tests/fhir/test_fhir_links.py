"""Links in served resources are built at request time from the current public base URL
(``gateway.fhir.links``): stored resources hold no host name, and HTML links are signed for the client."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from fhir_seed import STUDY_UID, TOKEN, publish_input
from starlette.applications import Starlette
from starlette.testclient import TestClient

from gateway.auth.links import LinkSigner
from gateway.fhir import ids
from gateway.fhir.api import build_fhir_routes
from gateway.fhir.links import Links, resolve
from gateway.fhir.mapping import build_resources
from gateway.settings import Settings

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _client(published: dict[str, Any], tmp_path: Path, base: str | None) -> TestClient:
    settings = Settings.load(None, data_dir=tmp_path / "data")
    settings = settings.model_copy(
        update={"http": settings.http.model_copy(update={"public_base_url": base})}
    )
    return TestClient(Starlette(routes=build_fhir_routes(published["sessions"], settings, TOKEN)))


def _by_type(resources: list[dict[str, Any]], rtype: str) -> dict[str, Any]:
    return next(r for r in resources if r["resourceType"] == rtype)


def _html(report: dict[str, Any]) -> tuple[dict[str, Any], str]:
    form = next(f for f in report["presentedForm"] if f["contentType"] == "text/html")
    return form, base64.b64decode(form["data"]).decode("utf-8")


def _links(text: str) -> list[str]:
    return [m.replace("&amp;", "&") for m in re.findall(r'(?:href|src)="([^"]+)"', text)]


def test_stored_resources_name_no_host() -> None:
    resources = build_resources(publish_input())
    media = _by_type(resources, "Media")
    assert media["content"]["url"].startswith("dicomweb/studies/")
    report = _by_type(resources, "DiagnosticReport")
    pdf = next(f for f in report["presentedForm"] if f["contentType"] == "application/pdf")
    assert pdf["url"].startswith("fhir/Binary/")
    _, text = _html(report)
    assert "://" not in text and "testserver" not in text
    assert 'class="imr-thumbnail" src="dicomweb/studies/' in text


def test_resolve_is_pure_and_signs_html_links() -> None:
    resources = build_resources(publish_input())
    report = _by_type(resources, "DiagnosticReport")
    signer = LinkSigner(TOKEN, 120)
    served = resolve(report, Links("https://gw.example/pacs", signer, "emr-1"))
    assert served is not report and report == _by_type(build_resources(publish_input()), "DiagnosticReport")
    form, text = _html(served)
    raw = base64.b64decode(form["data"])
    assert form["size"] == len(raw)
    assert form["hash"] == base64.b64encode(hashlib.sha1(raw).digest()).decode()
    urls = _links(text)
    assert urls and all(u.startswith("https://gw.example/pacs/dicomweb/studies/") for u in urls)
    for url in urls:
        parts = urlsplit(url)
        path = parts.path.removeprefix("/pacs")
        params = dict(parse_qsl(parts.query))
        assert signer.check(path, params) == "emr-1"
        # the signature names this path only
        other = path.replace("/thumbnail", "/rendered") if path.endswith("/thumbnail") else path + "/x"
        assert signer.check(other, params) is None
    pdf = next(f for f in served["presentedForm"] if f["contentType"] == "application/pdf")
    assert pdf["url"].startswith("https://gw.example/pacs/fhir/Binary/")
    # A resource without links is served as it is.
    patient = _by_type(resources, "Patient")
    assert resolve(patient, Links("https://gw.example")) is patient


def test_links_published_before_are_moved_to_the_current_base() -> None:
    media = {
        "resourceType": "Media",
        "content": {"contentType": "image/png", "url": f"http://127.0.0.1:8080/images/{STUDY_UID}.2.5.png"},
    }
    out = resolve(media, Links("https://gw.example"))
    assert out["content"]["url"] == f"https://gw.example/images/{STUDY_UID}.2.5.png"
    foreign = {"resourceType": "Media", "content": {"url": "https://elsewhere.example/pic.png"}}
    assert resolve(foreign, Links("https://gw.example")) is foreign


@pytest.mark.parametrize("index_url", ["sqlite"], indirect=True)
def test_links_follow_the_public_base_url_changed_after_publication(
    published: dict[str, Any], tmp_path: Path
) -> None:
    media_id = _by_type(published["resources"], "Media")["id"]
    report_id = _by_type(published["resources"], "DiagnosticReport")["id"]
    for base in ("https://first.example", "https://second.example/gw"):
        client = _client(published, tmp_path, base)
        media = client.get(f"/fhir/Media/{media_id}", headers=AUTH).json()
        assert media["content"]["url"] == (
            f"{base}/dicomweb/studies/{STUDY_UID}/series/{STUDY_UID}.2/instances/{STUDY_UID}.2.5/rendered"
        )
        report = client.get(f"/fhir/DiagnosticReport/{report_id}", headers=AUTH).json()
        _, text = _html(report)
        urls = _links(text)
        assert urls and all(u.startswith(f"{base}/dicomweb/") and "sig=" in u for u in urls)
        assert all(dict(parse_qsl(urlsplit(u).query))["client"] == "static-api-token" for u in urls)
        # search, vread, instance and type history: the same links
        bundle = client.get("/fhir/Media", headers=AUTH).json()
        found = [e["resource"] for e in bundle["entry"]]
        assert found and all(m["content"]["url"].startswith(f"{base}/dicomweb/") for m in found)
        vread = client.get(f"/fhir/Media/{media_id}/_history/1", headers=AUTH).json()
        assert vread["content"]["url"] == media["content"]["url"]
        history = client.get(f"/fhir/Media/{media_id}/_history", headers=AUTH).json()
        assert history["entry"][0]["resource"]["content"]["url"] == media["content"]["url"]
        type_history = client.get("/fhir/Media/_history", headers=AUTH).json()
        assert all(
            e["resource"]["content"]["url"].startswith(f"{base}/dicomweb/") for e in type_history["entry"]
        )
        found = client.get("/fhir/DiagnosticReport", params={"_id": report_id}, headers=AUTH).json()
        _, text = _html(found["entry"][0]["resource"])
        assert all(u.startswith(f"{base}/dicomweb/") for u in _links(text))


@pytest.mark.parametrize("index_url", ["sqlite"], indirect=True)
def test_without_a_public_base_the_request_base_is_used(published: dict[str, Any], tmp_path: Path) -> None:
    media_id = _by_type(published["resources"], "Media")["id"]
    media = _client(published, tmp_path, None).get(f"/fhir/Media/{media_id}", headers=AUTH).json()
    assert media["content"]["url"].startswith("http://testserver/dicomweb/studies/")


def test_r5_selection_names_the_dicomweb_endpoint() -> None:
    resources = build_resources(publish_input(version="R5"))
    selection = _by_type(resources, "ImagingSelection")
    assert selection["endpoint"] == [{"reference": f"Endpoint/{ids.dicomweb_endpoint_id()}"}]
    from gateway.fhir.validate import validate_resource

    for resource in resources:
        validate_resource(resource, "R5")
