"""US Core / IMR rules a JSON schema cannot express: identifier systems from the site table, acquisition
modalities only, procedure code, Observation basedOn and code.text."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from fhir_seed import publish_input, study_data

from gateway.fhir.identifiers import IdentifierSystems, identifier_systems
from gateway.fhir.mapping import PatientData, SeriesData, build_resources
from gateway.fhir.validate import validate_resource


def _one(resources: list[dict[str, Any]], rtype: str) -> dict[str, Any]:
    [res] = [r for r in resources if r["resourceType"] == rtype and r.get("status") != "preliminary"]
    return res


def test_site_table_maps_issuers_to_systems() -> None:
    table = identifier_systems()
    assert table.patient_system("EXAMPLE-HOSPITAL", "urn:x") == "urn:oid:2.16.840.1.113883.3.9999.1.1"
    assert table.patient_system("example-hospital", "urn:x") == "urn:oid:2.16.840.1.113883.3.9999.1.1"
    assert table.patient_system("OTHER", "urn:x") == "urn:x"
    assert table.patient_system(None, "urn:x") == "urn:x"
    assert table.accession_system("EXAMPLE-HOSPITAL", "urn:y") == "urn:oid:2.16.840.1.113883.3.9999.1.2"


def test_site_table_rejects_a_system_that_is_not_a_uri(tmp_path: Path) -> None:
    bad = tmp_path / "systems.yaml"
    bad.write_text('source: s\nedition: e\npatient:\n  H1: "not a uri"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="URI"):
        identifier_systems(bad)
    IdentifierSystems(source="s", edition="e", patient={"H1": "urn:oid:1.2"})


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_identifiers_carry_systems(version: str) -> None:
    study = dataclasses.replace(
        study_data(),
        patient=PatientData("PAT-42", "EXAMPLE-HOSPITAL", "Invented^Person", system="urn:oid:1.2.3"),
        accession_system="urn:oid:1.2.4",
    )
    inp = dataclasses.replace(publish_input(version=version), study=study)
    resources = build_resources(inp)
    [ident] = _one(resources, "Patient")["identifier"]
    assert ident["system"] == "urn:oid:1.2.3" and ident["value"] == "PAT-42"
    assert ident["type"]["coding"][0]["code"] == "MR"
    for rtype in ("ImagingStudy", "ServiceRequest", "DiagnosticReport"):
        acsn = [
            i
            for i in _one(resources, rtype)["identifier"]
            if i.get("type", {}).get("coding", [{}])[0].get("code") == "ACSN"
        ]
        assert acsn == [{"type": acsn[0]["type"], "system": "urn:oid:1.2.4", "value": "ACC-42"}], rtype
    for r in resources:
        validate_resource(r, version)


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_imaging_study_modality_and_procedure(version: str) -> None:
    base = study_data()
    study = dataclasses.replace(
        base,
        series=(
            *base.series,
            SeriesData(f"{base.study_instance_uid}.90", 90, "DOC"),
            SeriesData(f"{base.study_instance_uid}.91", 91, "SR"),
        ),
    )
    inp = dataclasses.replace(publish_input(version=version), study=study)
    imaging = _one(build_resources(inp), "ImagingStudy")
    codes = [m["code"] if version == "R4" else m["coding"][0]["code"] for m in imaging["modality"]]
    assert codes == ["CT"]
    if version == "R4":
        assert imaging["procedureCode"] == [{"text": "CT CHEST"}]
    else:
        assert imaging["procedure"] == [{"concept": {"text": "CT CHEST"}}]
    validate_resource(imaging, version)


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_observations_are_based_on_the_order_with_a_concept_text(version: str) -> None:
    resources = build_resources(publish_input(version=version))
    order = _one(resources, "ServiceRequest")
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    assert observations
    for o in observations:
        assert o["basedOn"] == [{"reference": f"ServiceRequest/{order['id']}"}]
        assert o["code"]["text"] in ("Finding", "Impression")
        assert o["code"]["text"] not in o["valueString"]


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_imaging_study_endpoint_is_dicomweb_built_at_request_time(
    version: str, published: dict[str, Any], tmp_path: Path
) -> None:
    from fhir_seed import TOKEN
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from gateway.fhir.api import build_fhir_routes
    from gateway.settings import Settings

    imaging = _one(build_resources(publish_input(version=version)), "ImagingStudy")
    [ref] = imaging["endpoint"]
    for public in ("https://pacs.example.org/gw", "https://moved.example.org"):
        settings = Settings.load(
            None, data_dir=tmp_path / "data", fhir={"version": version}, http={"public_base_url": public}
        )
        client = TestClient(Starlette(routes=build_fhir_routes(published["sessions"], settings, TOKEN)))
        auth = {"Authorization": f"Bearer {TOKEN}"}
        res = client.get(f"/fhir/{ref['reference']}", headers=auth)
        assert res.status_code == 200
        body = res.json()
        assert body["address"] == f"{public}/dicomweb"
        codes = body["connectionType"] if version == "R4" else body["connectionType"][0]["coding"][0]
        assert codes["code"] == "dicom-wado-rs"
        validate_resource(body, version)
        found = client.get(f"/fhir/Endpoint?_id={ref['reference'].split('/')[1]}", headers=auth).json()
        assert found["total"] == 1 and found["entry"][0]["resource"]["address"] == f"{public}/dicomweb"
        assert client.get(f"/fhir/{ref['reference']}/_history/1", headers=auth).status_code == 200
    assert client.get("/fhir/Endpoint/other", headers=auth).status_code == 404
