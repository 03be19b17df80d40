"""The sample study through ``gateway serve``: an EMR (fhirpy) finds the report's nodule as a coded
Observation (SNOMED CT 786838002) with its size in mm, its body site (right upper lobe, 42400003) and the
images its sentences cite ("图1", "Se 2 Im 5"), and the follow-up recommendation (3 months).

The sample report states the nodule over three sentences in two languages (site in one, size in another);
the publication merges them into one Observation.
"""

from __future__ import annotations

import pytest
from fhirpy import SyncFHIRClient
from harness import media_uids

SNOMED = "http://snomed.info/sct"


@pytest.mark.slow
def test_emr_finds_the_nodule_coded_measured_and_linked(served) -> None:
    served.storescu(*sorted(served.sample_dir.glob("*.dcm")))
    served.wait_state({"done", "failed"}, timeout=240)
    study = served.study()
    assert study["state"] == "done", (study, served.log.read_text()[-4000:])

    client = SyncFHIRClient(f"{served.base}/fhir", authorization=f"Bearer {served.token}")
    study_uid = served.manifest["study_instance_uid"]
    [imaging] = (
        client.resources("ImagingStudy").search(identifier=f"urn:dicom:uid|urn:oid:{study_uid}").fetch_all()
    )
    patient = imaging["subject"]["reference"]

    nodules = client.resources("Observation").search(patient=patient, code=f"{SNOMED}|786838002").fetch_all()
    present = [
        o
        for o in nodules
        if o["valueCodeableConcept"]["coding"][0]
        == {"system": SNOMED, "code": "52101004", "display": "Present"}
    ]
    measured = [o for o in present if o.get("component")]
    assert len(measured) == 1, [o.get("bodySite") for o in nodules]
    nodule = measured[0]
    assert nodule["status"] == "preliminary"  # machine-extracted, not reviewed
    sizes = [c["valueQuantity"] for c in nodule["component"] if "valueQuantity" in c]
    assert [(q["value"], q["code"], q["system"]) for q in sizes] == [
        (14.0, "mm", "http://unitsofmeasure.org"),
        (11.0, "mm", "http://unitsofmeasure.org"),
    ]
    assert {c["code"] for c in nodule["bodySite"]["coding"]} == {"42400003"}  # upper lobe of right lung
    links = served.manifest["links"]
    assert media_uids(client, nodule["derivedFrom"]) >= {links["Se 2 Im 5"], links["figure:1"]}

    # The report leads to it: result → the sentence Observation → hasMember.
    [report] = [
        r
        for r in client.resources("DiagnosticReport").search(patient=patient).fetch_all()
        if r["status"] == "final"
    ]
    members = set()
    for ref in report["result"]:
        sentence = client.reference(reference=ref["reference"]).to_resource()
        members |= {m["reference"] for m in sentence.get("hasMember", [])}
    assert f"Observation/{nodule['id']}" in members

    # The mediastinal lymph nodes are stated absent; the impression's recommendation carries its interval.
    absent = client.resources("Observation").search(patient=patient, code=f"{SNOMED}|30746006").fetch_all()
    assert absent and all(o["valueCodeableConcept"]["coding"][0]["code"] == "2667000" for o in absent)
    recommendations = (
        client.resources("Observation").search(patient=patient, code="http://loinc.org|18783-1").fetch_all()
    )
    intervals = [c["valueQuantity"] for r in recommendations for c in r["component"] if "valueQuantity" in c]
    assert [(q["value"], q["code"]) for q in intervals] == [(3.0, "mo")]
    # One recommendation for the Chinese and the English advice, about the nodule.
    [recommendation] = recommendations
    assert [f["reference"] for f in recommendation["focus"]] == [f"Observation/{nodule['id']}"]
