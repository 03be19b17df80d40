"""Sign-off: resultsInterpreter, performer Organization and issued from the report's own instance (SR
VerifyingObserverSequence, PDF sign-off lines, TimezoneOffsetFromUTC); Provenance agents act on behalf of
the organization."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from fhir_seed import publish_input
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from gateway.fhir.mapping import build_resources
from gateway.fhir.signoff import SignOff, dicom_dt, from_dataset, from_document
from gateway.fhir.validate import validate_resource

CST = dt.timezone(dt.timedelta(hours=8))


def test_verifying_observer_with_timezone_offset() -> None:
    ds = Dataset()
    ds.TimezoneOffsetFromUTC = "+0800"
    observer = Dataset()
    observer.VerifyingObserverName = "Roe^Jane"
    observer.VerifyingOrganization = "Example Hospital Radiology"
    observer.VerificationDateTime = "20260110100500"
    ds.VerifyingObserverSequence = Sequence([observer])
    s = from_dataset(ds, "UTC")
    assert s.interpreters == ("Roe^Jane",) and s.organization == "Example Hospital Radiology"
    assert s.time == dt.datetime(2026, 1, 10, 10, 5, tzinfo=CST)


def test_dt_with_its_own_offset_and_invalid_values() -> None:
    assert dicom_dt("20260110100500-0500", "+0800", "UTC") == dt.datetime(
        2026, 1, 10, 10, 5, tzinfo=dt.timezone(dt.timedelta(hours=-5))
    )
    assert dicom_dt("20261340100500", None, "UTC") is None
    assert dicom_dt("garbage", None, "UTC") is None
    # Without an offset anywhere, the configured zone.
    assert dicom_dt("20260110100500", None, "Asia/Shanghai") == dt.datetime(
        2026, 1, 10, 10, 5, tzinfo=dt.timezone(dt.timedelta(hours=8))
    ).astimezone(dt.timezone(dt.timedelta(hours=8)))


@pytest.mark.parametrize(
    ("line", "names", "when"),
    [
        (
            "报告医师 Reporting radiologist: Example^Reader    审核 Verified: 2024-03-15 11:20",
            ("Example^Reader",),
            dt.datetime(2024, 3, 15, 11, 20, tzinfo=CST),
        ),
        (
            "报告医师：张三  审核医师：李四  2026年1月10日 10:05",
            ("张三", "李四"),
            dt.datetime(2026, 1, 10, 10, 5, tzinfo=CST),
        ),
        (
            "Electronically signed by: Jane Q. Smith, MD on 2026-01-10 10:05",
            ("Jane Q. Smith",),
            dt.datetime(2026, 1, 10, 10, 5, tzinfo=CST),
        ),
    ],
)
def test_signoff_lines(line: str, names: tuple[str, ...], when: dt.datetime) -> None:
    doc = {
        "paragraphs": [
            {"section": "signature", "text": line},
            {"section": "findings", "text": "Radiologist: no"},
        ]
    }
    s = from_document(doc, "UTC", "+0800")
    assert s.interpreters == names and s.time == when


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_report_names_interpreter_performer_and_signoff_time(version: str) -> None:
    signoff = SignOff(
        ("Roe^Jane",), "Example Hospital Radiology", dt.datetime(2026, 1, 10, 10, 5, tzinfo=CST)
    )
    inp = dataclasses.replace(publish_input(version=version), signoff=signoff)
    resources = build_resources(inp)
    for r in resources:
        validate_resource(r, version)
    report = next(r for r in resources if r["resourceType"] == "DiagnosticReport")
    assert report["issued"] == "2026-01-10T10:05:00+08:00"
    [org] = [r for r in resources if r["resourceType"] == "Organization"]
    assert org["name"] == "Example Hospital Radiology"
    assert report["performer"][0]["reference"] == f"Organization/{org['id']}"
    [doctor] = [r for r in resources if r["resourceType"] == "Practitioner"]
    assert doctor["name"][0]["family"] == "Roe" and doctor["name"][0]["given"] == ["Jane"]
    assert report["resultsInterpreter"] == [{"reference": f"Practitioner/{doctor['id']}"}]
    for prov in (r for r in resources if r["resourceType"] == "Provenance"):
        assert all(a["onBehalfOf"] == {"reference": f"Organization/{org['id']}"} for a in prov["agent"])


def test_without_a_signoff_the_configured_organization_performs() -> None:
    inp = dataclasses.replace(publish_input(), organization="Site Radiology")
    resources = build_resources(inp)
    report = next(r for r in resources if r["resourceType"] == "DiagnosticReport")
    assert report["performer"][0]["display"] == "Site Radiology" and "resultsInterpreter" not in report
