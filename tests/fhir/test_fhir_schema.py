"""Independent validation: every resource the pipeline and the API emit, in R4 and in R5, against the official
FHIR JSON schema (``fhir_schema``: hl7.org's ``fhir.schema.json`` from npm packages) and against the US Core /
IMR rules a schema cannot express (``fhir_rules``).

The schemas and the rules are checked here to catch what they claim to catch, so that a green run means
something.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fhir_rules import rule_errors
from fhir_schema import Version, assert_schema_valid, resource_types, schema_errors
from fhir_seed import STUDY_UID, TOKEN, publish_input, seed_index
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.testclient import TestClient

from gateway.delivery.fhir_push import transaction
from gateway.delivery.subscriptions import build_subscription_routes, notification
from gateway.fhir.api import build_fhir_routes
from gateway.fhir.endpoint import dicomweb_endpoint
from gateway.fhir.identifiers import identifier_systems
from gateway.fhir.mapping import PublishInput, build_resources
from gateway.fhir.signoff import SignOff
from gateway.fhir.store import save_resources
from gateway.index.models import Subscription
from gateway.settings import Settings

AUTH = {"Authorization": f"Bearer {TOKEN}"}
AUDITOR = {"Authorization": "Bearer auditor-secret"}
VERSIONS: list[Version] = ["R4", "R5"]
BASE = "http://testserver"
DRAFT = {
    "model_name": "cxr-draft",
    "model_version": "0.3",
    "sentences": [{"text": "Small nodule in the right upper lobe.", "sop_instance_uid": f"{STUDY_UID}.2.3"}],
}
SIGNOFF = SignOff(
    ("Roe^Jane",),
    "Example Hospital Radiology",
    dt.datetime(2026, 1, 10, 10, 5, tzinfo=dt.timezone(dt.timedelta(hours=8))),
)


def publication_input(version: Version) -> PublishInput:
    """The sample study as the publish stage hands it over: identifier systems from the site table, a
    sign-off, a machine draft linked to an image."""
    from gateway.align.model import Link

    inp = publish_input(version=version, draft=DRAFT)
    systems = identifier_systems()
    study = dataclasses.replace(
        inp.study,
        patient=dataclasses.replace(
            inp.study.patient, system=systems.patient_system(None, "urn:gateway:patient-id")
        ),
        accession_system=systems.accession_system(None, "urn:gateway:accession"),
    )
    drafted = Link(
        DRAFT["sentences"][0]["text"],
        None,
        f"{STUDY_UID}.2.3",
        f"{STUDY_UID}.2",
        "drafted",
        1.0,
        sentence=0,
        source="draft",
    )
    readers = tuple(
        (name, *found)
        for name in SIGNOFF.interpreters
        if (found := systems.practitioner_identifier(name)) is not None
    )
    return dataclasses.replace(
        inp,
        study=study,
        signoff=SIGNOFF,
        links=(*inp.links, drafted),
        practitioner_identifiers=readers,
    )


def publication(version: Version) -> list[dict[str, Any]]:
    """Everything one publication emits, with the DICOMweb Endpoint the API builds at request time."""
    return [*build_resources(publication_input(version)), dicomweb_endpoint(BASE, version)]


PIPELINE_TYPES = {
    "Patient",
    "ServiceRequest",
    "ImagingStudy",
    "DiagnosticReport",
    "Observation",
    "Provenance",
    "Device",
    "Binary",
    "Organization",
    "Practitioner",
    "Endpoint",
}


# -- the checkers check ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_the_official_schemas_are_the_ones_claimed(version: Version) -> None:
    types = resource_types(version)
    assert ("Media" in types) == (version == "R4")
    assert ("ImagingSelection" in types) == (version == "R5")
    report = next(r for r in publication(version) if r["resourceType"] == "DiagnosticReport")
    broken = {**report, "status": "done", "issued": 20260110, "spurious": 1}
    errors = schema_errors(broken, version)
    assert any("spurious" in e for e in errors) and any("issued" in e for e in errors)
    # The R4 edition enumerates required bindings; the R5 one types codes only (its status is a `code`).
    assert any("status" in e for e in errors) == (version == "R4")
    # A Bundle's entry is checked as the resource it is, not only as one branch of a oneOf.
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": broken}]}
    assert any(e.startswith(f"{version} DiagnosticReport/") for e in schema_errors(bundle, version))


def test_r5_integer64_is_a_string() -> None:
    """R5 writes ``Attachment.size`` (integer64) as a JSON string; R4's ``unsignedInt`` is a number."""
    for version in VERSIONS:
        report = next(r for r in publication(version) if r["resourceType"] == "DiagnosticReport")
        sizes = {type(f["size"]) for f in report["presentedForm"]}
        assert sizes == ({int} if version == "R4" else {str})
        wrong = copy.deepcopy(report)
        for form in wrong["presentedForm"]:
            form["size"] = int(form["size"]) if version == "R5" else str(form["size"])
        assert any("size" in e for e in schema_errors(wrong, version))


def test_the_rule_checker_finds_what_it_claims() -> None:
    resources = publication("R4")
    assert rule_errors(resources, "R4", signed=True) == []

    def broken(rtype: str, change: Any) -> list[str]:
        copies = copy.deepcopy(resources)
        target = next(r for r in copies if r["resourceType"] == rtype)
        change(target)
        return rule_errors(copies, "R4", signed=True)

    assert any("performer" in e for e in broken("DiagnosticReport", lambda r: r.pop("performer")))
    assert any(
        "resultsInterpreter" in e for e in broken("DiagnosticReport", lambda r: r.pop("resultsInterpreter"))
    )
    assert any("text/html" in e for e in broken("DiagnosticReport", lambda r: r["presentedForm"].pop()))
    assert any(
        "repeats element ids" in e
        for e in broken(
            "DiagnosticReport",
            lambda r: r["text"].update(
                div='<div xmlns="http://www.w3.org/1999/xhtml"><p id="a">x</p><p id="a">y</p></div>'
            ),
        )
    )
    assert any("empty JSON" in e for e in broken("Patient", lambda r: r.update(address=[])))
    assert any("system" in e for e in broken("Patient", lambda r: r["identifier"][0].pop("system")))
    assert any("onBehalfOf" in e for e in broken("Provenance", lambda r: r["agent"][0].pop("onBehalfOf")))
    assert any("endpoint" in e for e in broken("ImagingStudy", lambda r: r.pop("endpoint")))
    assert any(
        "does not resolve" in e
        for e in broken("Observation", lambda r: r.update(subject={"reference": "Patient/x"}))
    )


# -- what the pipeline emits ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_every_published_resource_passes_the_official_schema(version: Version) -> None:
    resources = publication(version)
    types = {r["resourceType"] for r in resources}
    assert PIPELINE_TYPES | {"Media" if version == "R4" else "ImagingSelection"} <= types
    errors = [e for r in resources for e in schema_errors(r, version)]
    assert errors == []


@pytest.mark.parametrize("version", VERSIONS)
def test_every_published_resource_keeps_the_us_core_and_imr_rules(version: Version) -> None:
    assert rule_errors(publication(version), version, signed=True) == []


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("decision", ["approved", "rejected"])
def test_a_reviewed_draft_passes_the_official_schema(version: Version, decision: str) -> None:
    """The review page turns the machine draft final (or cancelled) with the reader as Practitioner."""
    from gateway.fhir.mapping.review import DraftReviewData, apply_draft_review

    inp = publication_input(version)
    review = DraftReviewData(
        decision,  # type: ignore[arg-type]
        "jroe",
        "Jane Roe",
        dt.datetime(2026, 1, 11, 9, 0, tzinfo=dt.UTC),
        ("Small nodule in the right upper lobe.", "No effusion."),
    )
    resources = apply_draft_review(build_resources(inp), review, inp)
    assert "Practitioner" in {r["resourceType"] for r in resources}
    errors = [e for r in resources for e in schema_errors(r, version)]
    assert errors == []
    assert rule_errors([*resources, dicomweb_endpoint(BASE, version)], version) == []


@pytest.mark.parametrize("version", VERSIONS)
def test_rad141_transaction_bundle_passes_the_official_schema(version: Version) -> None:
    bundle = transaction(publication(version), f"{BASE}/fhir", "m-1")
    assert_schema_valid(bundle, version)
    assert rule_errors([e["resource"] for e in bundle["entry"]], version, signed=True) == []


def test_subscription_notifications_pass_the_r4_schema() -> None:
    """The R4 Subscriptions Backport: handshake, heartbeat and event notifications (history Bundles)."""
    report = next(r for r in publication("R4") if r["resourceType"] == "DiagnosticReport")
    for payload in ("empty", "id-only", "full-resource"):
        sub = Subscription(id="s1", status="active", events=3, payload=payload)
        for kind in ("handshake", "heartbeat", "event-notification"):
            focus = report if kind == "event-notification" else None
            assert_schema_valid(notification(sub, kind, f"{BASE}/fhir", events=3, focus=focus), "R4")


FHIRJS = Path(__file__).resolve().parents[1] / "node" / "fhirjs_validate.mjs"


def fhirjs_errors(resources: list[dict[str, Any]]) -> list[str]:
    """FHIR.js's R4 errors (cardinality, required bindings), one line per error."""
    run = subprocess.run(
        ["node", str(FHIRJS)],
        input=json.dumps(resources),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return [f"{r['resourceType']}/{r['id']} {e}" for r in json.loads(run.stdout) for e in r["errors"]]


def test_fhirjs_finds_nothing_wrong_in_an_r4_publication() -> None:
    resources = publication("R4")
    bundle = transaction(resources, f"{BASE}/fhir", "m-1")
    assert fhirjs_errors([*resources, bundle]) == []
    # ...and it would say so: a wrong code and a missing Observation.code.
    report = next(r for r in resources if r["resourceType"] == "DiagnosticReport")
    observation = next(r for r in resources if r["resourceType"] == "Observation")
    broken = [{**report, "status": "done"}, {k: v for k, v in observation.items() if k != "code"}]
    errors = fhirjs_errors(broken)
    assert any("DiagnosticReport.status" in e for e in errors)
    assert any("Observation.code" in e for e in errors)


# -- what the API emits ------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_sessions(sqlite_index_url: str, engines: Any) -> sessionmaker[Session]:
    sessions: sessionmaker[Session] = engines.open(sqlite_index_url)
    return sessions


def _client(sessions: sessionmaker[Session], tmp_path: Path, version: Version) -> TestClient:
    seed_index(sessions, tmp_path)
    resources = build_resources(publication_input(version))
    with sessions.begin() as session:
        save_resources(session, resources, study_fk=1, now=dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC))
    settings = Settings.load(
        None, data_dir=tmp_path / "data", fhir={"version": version, "audit_token": "auditor-secret"}
    )
    routes = (
        [*build_subscription_routes(sessions, f"{BASE}/fhir", TOKEN, settings)] if version == "R4" else []
    )
    routes += build_fhir_routes(sessions, settings, TOKEN)
    return TestClient(Starlette(routes=routes))


def _ids(client: TestClient, rtype: str) -> list[str]:
    sep = "&" if "?" in rtype else "?"
    bundle = client.get(f"/fhir/{rtype}{sep}_count=200", headers=AUTH).json()
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_api_answer_passes_the_official_schema(
    sqlite_sessions: sessionmaker[Session], tmp_path: Path, version: Version
) -> None:
    client = _client(sqlite_sessions, tmp_path, version)
    image = "Media" if version == "R4" else "ImagingSelection"
    [report_id] = _ids(client, "DiagnosticReport?status=final")
    [patient_id] = _ids(client, "Patient")
    answers: dict[str, tuple[int, dict[str, Any]]] = {}

    def get(path: str, headers: dict[str, str] = AUTH) -> dict[str, Any]:
        res = client.get(path, headers=headers)
        body: dict[str, Any] = res.json()
        answers[path] = (res.status_code, body)
        return body

    get("/fhir/metadata")
    searches = [
        f"/fhir/DiagnosticReport?patient={patient_id}&_include=DiagnosticReport:result"
        "&_include=DiagnosticReport:subject&_include=DiagnosticReport:imaging-study"
        "&_include=DiagnosticReport:based-on&_include=DiagnosticReport:performer"
        "&_include=DiagnosticReport:results-interpreter&_revinclude=Provenance:target",
        "/fhir/DiagnosticReport?identifier=ACC-42&_sort=-issued&_count=1",
        "/fhir/DiagnosticReport?date=ge2026-01-01&_summary=true",
        "/fhir/DiagnosticReport?_summary=count",
        "/fhir/DiagnosticReport?_elements=status,subject&_total=accurate",
        "/fhir/DiagnosticReport?status=cancelled",
        "/fhir/Observation?patient=" + patient_id + "&category=imaging",
        "/fhir/ImagingStudy?patient=" + patient_id,
        "/fhir/Patient?name=Invented",
        "/fhir/ServiceRequest",
        "/fhir/Provenance",
        f"/fhir/{image}",
        "/fhir/DiagnosticReport/_history",
        f"/fhir/DiagnosticReport/{report_id}/_history",
    ]
    for path in searches:
        get(path)
    for rtype in (
        "Patient",
        "ImagingStudy",
        "ServiceRequest",
        "DiagnosticReport",
        "Observation",
        "Provenance",
        "Device",
        "Organization",
        "Practitioner",
        image,
    ):
        for rid in _ids(client, rtype):
            get(f"/fhir/{rtype}/{rid}")
            get(f"/fhir/{rtype}/{rid}/_history/1")
    get(f"/fhir/DiagnosticReport/{report_id}?_summary=text")
    study = get(f"/fhir/ImagingStudy?patient={patient_id}")["entry"][0]["resource"]
    get(f"/fhir/{study['endpoint'][0]['reference']}")
    binary = next(f["url"] for f in get(f"/fhir/DiagnosticReport/{report_id}")["presentedForm"] if "url" in f)
    get(binary.removeprefix(BASE), headers={**AUTH, "Accept": "application/fhir+json"})
    # OperationOutcomes: unknown parameter, not found, no token, wrong scope, bad integer.
    get("/fhir/DiagnosticReport?foo=1")
    get("/fhir/DiagnosticReport/nope")
    get("/fhir/DiagnosticReport", headers={})
    get(f"/fhir/DiagnosticReport/{report_id}", headers=AUDITOR)
    get("/fhir/DiagnosticReport?_count=１")
    # The audit trail, as the auditor reads it.
    events = get(f"/fhir/AuditEvent?patient={patient_id}", headers=AUDITOR)
    assert events.get("entry")
    get(f"/fhir/AuditEvent/{events['entry'][0]['resource']['id']}", headers=AUDITOR)
    if version == "R4":
        made = client.post(
            "/fhir/Subscription",
            headers=AUTH,
            json={
                "resourceType": "Subscription",
                "status": "requested",
                "reason": "reports for the EMR",
                "criteria": "http://gateway.local/fhir/SubscriptionTopic/diagnosticreport-published",
                "channel": {
                    "type": "rest-hook",
                    "endpoint": "https://emr.example/hook",
                    "payload": "application/fhir+json",
                },
            },
        )
        assert made.status_code == 201, made.text
        answers["POST /fhir/Subscription"] = (201, made.json())
        get(f"/fhir/Subscription/{made.json()['id']}")
        get(f"/fhir/Subscription/{made.json()['id']}/$status")

    kinds = {body["resourceType"] for _, body in answers.values()}
    kinds |= {e["resource"]["resourceType"] for _, b in answers.values() for e in b.get("entry", [])}
    assert {
        "CapabilityStatement",
        "Bundle",
        "OperationOutcome",
        "AuditEvent",
        "Endpoint",
        "Binary",
        image,
        *(PIPELINE_TYPES - {"Binary"}),
    } <= kinds, kinds
    statuses = {code for code, _ in answers.values()}
    assert {200, 400, 401, 403, 404} <= statuses
    errors = [f"{path}: {e}" for path, (_, body) in answers.items() for e in schema_errors(body, version)]
    assert errors == [], "\n".join(errors)
    # The searchset with every _include is one publication's worth: the rules hold over it too.
    full = answers[searches[0]][1]
    included = [e["resource"] for e in full["entry"]]
    assert {"DiagnosticReport", "Observation", "Patient", "ImagingStudy", "Provenance"} <= {
        r["resourceType"] for r in included
    }
    problems = [
        e
        for e in rule_errors(included, version, signed=True)
        if "does not resolve" not in e  # a searchset holds what was asked for, not every target
    ]
    assert problems == []
