"""DICOMweb with ``dicomweb-client`` (a client nobody here wrote) against a real ``gateway serve``.

The sample study arrives by STOW-RS only, and must then run the pipeline as a C-STORE'd study does.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from requests.exceptions import HTTPError

pytestmark = pytest.mark.slow


def _client(served: Any, token: str | None = None) -> DICOMwebClient:
    headers = {"Authorization": f"Bearer {token or served.token}"}
    return DICOMwebClient(url=f"{served.base}/dicomweb", headers=headers)


@pytest.fixture(scope="module")
def stowed(web_served: Any) -> Any:
    files = sorted(web_served.sample_dir.glob("*.dcm"))
    datasets = [pydicom.dcmread(f) for f in files]
    response = _client(web_served).store_instances(datasets)
    return files, response


def test_stow_stores_every_instance_and_runs_the_pipeline(web_served: Any, stowed: Any) -> None:
    files, response = stowed
    refs = response.ReferencedSOPSequence
    assert len(refs) == len(files)
    assert "FailedSOPSequence" not in response
    expected = {pydicom.dcmread(f).SOPInstanceUID for f in files}
    assert {r.ReferencedSOPInstanceUID for r in refs} == expected
    assert all(r.RetrieveURL.startswith(f"{web_served.base}/dicomweb/studies/") for r in refs)
    # Same durability path as C-STORE: the index knows every instance when the response arrives.
    assert web_served.study()["instances"] == len(files)
    seen = web_served.wait_state({"done", "failed"}, timeout=240)
    assert web_served.study()["state"] == "done", (seen, web_served.log.read_text()[-3000:])
    fhir = httpx.get(
        f"{web_served.base}/fhir/DiagnosticReport",
        headers={"Authorization": f"Bearer {web_served.token}"},
    ).json()
    assert fhir["total"] >= 1
    # An EMR finds the study's DICOMweb endpoint in FHIR and a viewer opens the study there.
    headers = {"Authorization": f"Bearer {web_served.token}"}
    study_uid = web_served.manifest["study_instance_uid"]
    imaging = httpx.get(
        f"{web_served.base}/fhir/ImagingStudy",
        params={"identifier": f"urn:dicom:uid|urn:oid:{study_uid}"},
        headers=headers,
    ).json()["entry"][0]["resource"]
    endpoint = httpx.get(
        f"{web_served.base}/fhir/{imaging['endpoint'][0]['reference']}", headers=headers
    ).json()
    assert endpoint["connectionType"]["code"] == "dicom-wado-rs"
    viewer = DICOMwebClient(url=endpoint["address"], headers=headers)
    assert len(viewer.search_for_series(study_uid)) == 5


def test_stow_applies_the_duplicate_policy_per_instance(web_served: Any, stowed: Any) -> None:
    files, _ = stowed
    same = pydicom.dcmread(files[0])
    changed = pydicom.dcmread(files[1])
    changed.SeriesDescription = "altered copy"
    with pytest.raises(HTTPError) as err:  # 409: every part failed
        _client(web_served).store_instances([changed])
    assert err.value.response.status_code == 409
    body = err.value.response.json()
    assert body["00081198"]["Value"][0]["00081197"]["Value"] == [0x0111]
    assert "already stored" in err.value.response.headers["Warning"]
    ok = _client(web_served).store_instances([same])  # identical bytes: accepted, nothing changes
    assert len(ok.ReferencedSOPSequence) == 1


def test_qido_searches_studies_series_instances(web_served: Any, stowed: Any) -> None:
    client = _client(web_served)
    manifest = web_served.manifest
    studies = client.search_for_studies(search_filters={"PatientID": "DEMO-0001"})
    assert len(studies) == 1
    study = pydicom.Dataset.from_json(studies[0])
    assert study.StudyInstanceUID == manifest["study_instance_uid"]
    assert study.AccessionNumber == manifest["accession_number"]
    assert set(study.ModalitiesInStudy) >= {"CT", "DX"}
    assert client.search_for_studies(search_filters={"PatientID": "NOBODY"}) == []
    assert len(client.search_for_studies(search_filters={"PatientName": "demo*"})) == 1
    assert len(client.search_for_studies(search_filters={"StudyDate": "20240101-20241231"})) == 1
    assert client.search_for_studies(search_filters={"StudyDate": "20250101-"}) == []
    with_counts = client.search_for_studies(fields=["NumberOfStudyRelatedInstances"])
    assert with_counts[0]["00201208"]["Value"] == [len(manifest["files"])]
    assert "00201208" not in studies[0]  # optional attributes only on includefield

    series = client.search_for_series(manifest["study_instance_uid"])
    assert sorted(s["00200011"]["Value"][0] for s in series) == [2, 3, 4, 90, 91]
    ct = client.search_for_series(manifest["study_instance_uid"], search_filters={"Modality": "CT"})
    assert len(ct) == 2
    lung = next(f for f in manifest["files"] if f["series_number"] == 2)["series_instance_uid"]
    instances = client.search_for_instances(manifest["study_instance_uid"], lung, limit=5, offset=5)
    assert [i["00200013"]["Value"][0] for i in instances] == [6, 7, 8, 9, 10]


def test_retrieve_instance_is_byte_exact(web_served: Any, stowed: Any) -> None:
    files, _ = stowed
    client = _client(web_served)
    for path in (files[0], web_served.sample_dir / "DOC_S90_report.dcm"):
        original = path.read_bytes()
        ds = pydicom.dcmread(path)
        url = (
            f"{web_served.base}/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}"
        )
        raw = client._http_get(
            url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
        )
        parts = list(client._decode_multipart_message(raw, stream=False))
        assert parts == [original]
        got = client.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        assert got.SOPInstanceUID == ds.SOPInstanceUID


def test_retrieve_transcodes_when_asked(web_served: Any, stowed: Any) -> None:
    files, _ = stowed
    ds = pydicom.dcmread(files[0])
    got = _client(web_served).retrieve_instance(
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        ds.SOPInstanceUID,
        media_types=(("application/dicom", "1.2.840.10008.1.2.5"),),
    )
    assert got.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"  # RLE Lossless
    assert (got.pixel_array == ds.pixel_array).all()


def test_metadata_frames_and_bulkdata(web_served: Any, stowed: Any) -> None:
    files, _ = stowed
    ds = pydicom.dcmread(files[0])
    client = _client(web_served)
    meta = client.retrieve_instance_metadata(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert meta["00080018"]["Value"] == [ds.SOPInstanceUID]
    uri = meta["7FE00010"]["BulkDataURI"]
    assert uri.endswith("/bulkdata/7FE00010")
    bulk = client.retrieve_bulkdata(uri)
    assert bulk == [ds.PixelData]
    frames = client.retrieve_instance_frames(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, frame_numbers=[1]
    )
    assert frames == [ds.pixel_array.tobytes()]
    series_meta = client.retrieve_series_metadata(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    assert len(series_meta) == 12


def test_rendered_frames_and_thumbnails(web_served: Any, stowed: Any) -> None:
    files, _ = stowed
    ds = pydicom.dcmread(files[0])
    client = _client(web_served)
    jpeg = client.retrieve_instance_frames_rendered(
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        ds.SOPInstanceUID,
        frame_numbers=[1],
        media_types=("image/jpeg",),
        params={"window": "-600,1500,linear", "viewport": "64,64", "quality": "80"},
    )
    img = Image.open(io.BytesIO(jpeg))
    assert img.format == "JPEG" and img.size == (64, 64)
    png = client.retrieve_instance_rendered(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, media_types=("image/png",)
    )
    assert Image.open(io.BytesIO(png)).size == (ds.Columns, ds.Rows)
    lung = client.retrieve_instance_rendered(
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        ds.SOPInstanceUID,
        media_types=("image/png",),
        params={"window": "40,400"},
    )
    assert lung != png  # the window parameter changes the picture
    base = f"{web_served.base}/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    thumb = httpx.get(
        f"{base}/instances/{ds.SOPInstanceUID}/thumbnail",
        headers={"Authorization": f"Bearer {web_served.token}", "Accept": "image/png"},
    )
    assert thumb.status_code == 200 and max(Image.open(io.BytesIO(thumb.content)).size) <= 128
    bad = httpx.get(
        f"{base}/instances/{ds.SOPInstanceUID}/rendered?window=40",
        headers={"Authorization": f"Bearer {web_served.token}"},
    )
    assert bad.status_code == 400


def test_auth_signed_links_and_cors(web_served: Any, stowed: Any) -> None:
    from gateway.dicomweb.access import Access

    files, _ = stowed
    ds = pydicom.dcmread(files[0])
    path = (
        f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/rendered"
    )
    assert httpx.get(web_served.base + path).status_code == 401
    assert httpx.get(web_served.base + path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    access = Access(web_served.token, signed_url_lifetime=60)
    assert httpx.get(web_served.base + access.sign(path, "ui:test")).status_code == 200
    expired = access.sign(path, "ui:test", now=0)
    assert httpx.get(web_served.base + expired).status_code == 401
    other = access.sign(path.replace("/rendered", "/thumbnail"), "ui:test")
    assert httpx.get(web_served.base + path + "?" + other.split("?", 1)[1]).status_code == 401
    forged = access.sign(path, "ui:test").replace("client=ui%3Atest", "client=ui%3Aother")
    assert httpx.get(web_served.base + forged).status_code == 401

    preflight = httpx.options(
        f"{web_served.base}/dicomweb/studies",
        headers={
            "Origin": "https://viewer.example.org",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://viewer.example.org"
    stranger = httpx.options(
        f"{web_served.base}/dicomweb/studies",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in stranger.headers


def test_bad_stow_bodies_are_refused_clearly(web_served: Any, stowed: Any) -> None:
    headers = {"Authorization": f"Bearer {web_served.token}"}
    url = f"{web_served.base}/dicomweb/studies"
    r = httpx.post(url, content=b"junk", headers={**headers, "Content-Type": "application/dicom"})
    assert r.status_code == 415
    body = b"--b\r\nContent-Type: application/dicom\r\n\r\nnot dicom\r\n--b--\r\n"
    r = httpx.post(
        url,
        content=body,
        headers={**headers, "Content-Type": 'multipart/related; type="application/dicom"; boundary=b'},
    )
    assert r.status_code == 409
    assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
    before = {p.name for p in Path(web_served.data_dir, "instances").rglob("*.dcm")}
    assert before  # nothing was lost or added by the refused parts


def test_byte_ranges_dicom_xml_and_stow_metadata_are_answered_clearly(web_served: Any, stowed: Any) -> None:
    """Byte ranges on bulk data (206/416); DICOM XML asked for metadata or QIDO → 406; STOW of JSON metadata
    with bulk data → 415 with what to send instead."""
    files, _ = stowed
    ds = pydicom.dcmread(files[0])
    auth = {"Authorization": f"Bearer {web_served.token}"}
    base = f"{web_served.base}/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    bulk = f"{base}/instances/{ds.SOPInstanceUID}/bulkdata/7FE00010"
    whole = httpx.get(bulk, headers={**auth, "Accept": "application/octet-stream"})
    assert whole.status_code == 200 and whole.content == ds.PixelData
    assert whole.headers["accept-ranges"] == "bytes"
    part = httpx.get(bulk, headers={**auth, "Accept": "application/octet-stream", "Range": "bytes=10-109"})
    assert part.status_code == 206 and part.content == ds.PixelData[10:110]
    assert part.headers["content-range"] == f"bytes 10-109/{len(ds.PixelData)}"
    tail = httpx.get(bulk, headers={**auth, "Accept": "application/octet-stream", "Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == ds.PixelData[-16:]
    beyond = httpx.get(
        bulk, headers={**auth, "Accept": "application/octet-stream", "Range": f"bytes={len(ds.PixelData)}-"}
    )
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(ds.PixelData)}"

    xml = {**auth, "Accept": "application/dicom+xml"}
    for url in (f"{base}/metadata", f"{web_served.base}/dicomweb/studies"):
        r = httpx.get(url, headers=xml)
        assert r.status_code == 406 and "dicom+xml is not supported" in r.json()["error"]

    stow = httpx.post(
        f"{web_served.base}/dicomweb/studies",
        content=b"--b\r\nContent-Type: application/dicom+json\r\n\r\n[]\r\n--b--\r\n",
        headers={**auth, "Content-Type": 'multipart/related; type="application/dicom+json"; boundary=b'},
    )
    assert stow.status_code == 415 and "Part 10" in stow.json()["error"]
