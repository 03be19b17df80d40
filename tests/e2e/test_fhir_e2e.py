"""The whole path: storescu pushes the sample study; an EMR (fhirpy) finds the report and its images.

The sample report says "Se 2 Im 5" (an explicit position) and "图1" (a figure cut from a CT slice, re-windowed
and resized). Both sentences must come back from the FHIR API linked to the right SOP Instance UIDs.
"""

from __future__ import annotations

import json

import pytest
from fhirpy import SyncFHIRClient
from harness import media_uids


@pytest.mark.slow
def test_emr_follows_report_sentences_to_the_right_instances(served) -> None:
    served.storescu(*sorted(served.sample_dir.glob("*.dcm")))
    served.wait_state({"done", "failed"}, timeout=240)
    study = served.study()
    assert study["state"] == "done", (study, served.log.read_text()[-4000:])

    client = SyncFHIRClient(f"{served.base}/fhir", authorization=f"Bearer {served.token}")
    study_uid = served.manifest["study_instance_uid"]
    imaging = (
        client.resources("ImagingStudy").search(identifier=f"urn:dicom:uid|urn:oid:{study_uid}").fetch_all()
    )
    assert len(imaging) == 1
    patient_ref = imaging[0]["subject"]["reference"]

    reports = client.resources("DiagnosticReport").search(patient=patient_ref).fetch_all()
    final = [r for r in reports if r["status"] in ("final", "amended", "corrected")]
    assert len(final) == 1, [r["status"] for r in reports]
    report = final[0]
    assert report["imagingStudy"][0]["reference"] == f"ImagingStudy/{imaging[0]['id']}"
    assert {f["contentType"] for f in report["presentedForm"]} >= {"application/pdf", "text/html"}

    links = served.manifest["links"]
    expected = {"Se 2 Im 5": links["Se 2 Im 5"], "图1": links["figure:1"], "Figure 2": links["figure:2"]}
    checked: dict[str, int] = dict.fromkeys(expected, 0)
    for result in report["result"]:
        observation = client.reference(reference=result["reference"]).to_resource()
        text = observation["valueString"].replace(" ", "")
        cited = [marker for marker in expected if marker.replace(" ", "") in text]
        if len(cited) != 1:
            continue  # sentences citing nothing, or several figures at once, are checked elsewhere
        assert media_uids(client, observation.get("derivedFrom", [])) == {expected[cited[0]]}, observation[
            "valueString"
        ]
        checked[cited[0]] += 1
    assert checked["Se 2 Im 5"] >= 1 and checked["图1"] >= 1, checked

    # No token, no data; the capability statement is public.
    import httpx

    assert httpx.get(f"{served.base}/fhir/DiagnosticReport").status_code == 401
    assert httpx.get(f"{served.base}/fhir/metadata").status_code == 200


def test_align_command_prints_the_links(served) -> None:
    served.wait_state({"done"})
    study_uid = served.manifest["study_instance_uid"]
    links = json.loads(served.gateway("align", study_uid, "--json"))
    required = {"text", "image_ref", "sop_instance_uid", "series_instance_uid", "method", "confidence"}
    assert links and all(required <= set(link) for link in links)
    by_ref = {link["image_ref"]: link for link in links if link["method"] in ("explicit", "figure")}
    assert by_ref["Se 2 Im 5"]["sop_instance_uid"] == served.manifest["links"]["Se 2 Im 5"]
    assert by_ref["图1"]["sop_instance_uid"] == served.manifest["links"]["figure:1"]
