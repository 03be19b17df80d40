"""FHIR search latency with many DiagnosticReports in the index (SQLite and PostgreSQL), and the query plans.

Fills an empty index with N published reports (each: DiagnosticReport, one Observation, one Provenance,
its Study and one of N/5 patients) through Core bulk inserts with the same search columns the publish stage
writes, then times searches through the real ASGI app (Starlette TestClient: routing, auth, audit record,
SQL, JSON) and prints p50/p95 per kind, and whether each kind's SQL plan uses an index.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/fhir_search.py --n 100000 --backend sqlite postgresql
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, text
from starlette.applications import Starlette
from starlette.testclient import TestClient

from benchmarks._common import postgres_database
from gateway.fhir import ids
from gateway.fhir.api import build_fhir_routes
from gateway.fhir.search import parse_search
from gateway.fhir.store import identifier_tokens, search_columns, search_query
from gateway.index.db import open_index
from gateway.index.models import FhirIdentifier, FhirResource, Patient, Study
from gateway.settings import Settings

TOKEN = "bench-token"
LOINC = "http://loinc.org"
T0 = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def _bodies(i: int, patients: int) -> list[dict[str, Any]]:
    uid = f"1.2.826.0.1.3680043.10.4242.{i}"
    pid = ids.patient_id(f"P{i % patients}", "")
    rid, oid = ids.report_id(uid), ids.observation_id(uid, "report", 0, 0)
    when = (T0 + dt.timedelta(hours=7 * i)).isoformat()
    report = {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "meta": {"versionId": "1"},
        "identifier": [{"system": "urn:gateway:accession", "value": f"ACC{i}"}],
        "status": "final",
        "category": [{"coding": [{"system": LOINC, "code": "LP29684-5"}]}],
        "code": {"coding": [{"system": LOINC, "code": "18748-4"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "issued": when,
        "result": [{"reference": f"Observation/{oid}"}],
        "conclusion": "No acute abnormality." * 3,
    }
    obs = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [{"coding": [{"system": "x", "code": "imaging"}]}],
        "code": {"coding": [{"system": LOINC, "code": "59776-5"}], "text": "Finding"},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "valueString": "A 9 mm nodule in the right upper lobe.",
    }
    prov = {
        "resourceType": "Provenance",
        "id": ids.provenance_id(f"DiagnosticReport/{rid}"),
        "target": [{"reference": f"DiagnosticReport/{rid}"}, {"reference": f"Observation/{oid}"}],
        "recorded": when,
        "agent": [{"who": {"reference": "Device/x"}}],
    }
    return [report, obs, prov]


def fill(sessions: Any, n: int) -> None:
    patients = max(1, n // 5)
    with sessions.begin() as session:
        session.execute(
            insert(Patient),
            [{"patient_id": f"P{i}", "issuer": "", "name": f"Person^{i}"} for i in range(patients)],
        )
    first_patient = sessions().scalar(text("SELECT min(id) FROM patients"))
    batch = 5000
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        with sessions.begin() as session:
            session.execute(
                insert(Study),
                [
                    {
                        "study_instance_uid": f"1.2.826.0.1.3680043.10.4242.{i}",
                        "patient_fk": first_patient + i % patients,
                        "state": "done",
                        "version": 1,
                    }
                    for i in range(start, stop)
                ],
            )
            fk = {
                uid: sid
                for sid, uid in session.execute(
                    text(
                        "SELECT id, study_instance_uid FROM studies"
                        " WHERE id >= (SELECT max(id) FROM studies) - :k"
                    ),
                    {"k": stop - start},
                )
            }
            rows = []
            for i in range(start, stop):
                study_fk = fk[f"1.2.826.0.1.3680043.10.4242.{i}"]
                for body in _bodies(i, patients):
                    rows.append(
                        {
                            "resource_type": body["resourceType"],
                            "resource_id": body["id"],
                            "version_id": 1,
                            "is_current": True,
                            "study_fk": study_fk,
                            "last_updated": now + dt.timedelta(seconds=i),
                            "body": body,
                            **search_columns(body),
                        }
                    )
            last = session.scalar(text("SELECT coalesce(max(id), 0) FROM fhir_resources"))
            session.execute(insert(FhirResource), rows)
            new = session.execute(
                text("SELECT id, identifiers FROM fhir_resources WHERE id > :last"), {"last": last}
            ).all()
            tokens = [
                {"resource_fk": pk, "system": system, "value": value}
                for pk, identifiers in new
                for system, value in identifier_tokens(identifiers)
            ]
            if tokens:
                session.execute(insert(FhirIdentifier), tokens)


QUERIES = {
    "patient": lambda i, p: f"DiagnosticReport?patient=Patient/{ids.patient_id(f'P{i % p}', '')}",
    "identifier": lambda i, p: f"DiagnosticReport?identifier=urn:gateway:accession|ACC{i}",
    "date range": lambda i, p: (
        f"DiagnosticReport?date=ge{(T0 + dt.timedelta(hours=7 * i)).date()}"
        f"&date=lt{(T0 + dt.timedelta(hours=7 * i + 48)).date()}"
    ),
    "_include=DiagnosticReport:result": lambda i, p: (
        f"DiagnosticReport?patient=Patient/{ids.patient_id(f'P{i % p}', '')}&_include=DiagnosticReport:result"
    ),
    "_revinclude=Provenance:target": lambda i, p: (
        f"DiagnosticReport?patient=Patient/{ids.patient_id(f'P{i % p}', '')}&_revinclude=Provenance:target"
    ),
}


def plan(sessions: Any, url: str, query: str) -> str:
    rtype, _, qs = query.partition("?")
    from urllib.parse import parse_qsl

    criteria, _paging, _options = parse_search(rtype, parse_qsl(qs), default_count=20, max_count=200)
    stmt = search_query(rtype, criteria)
    with sessions() as session:
        compiled = stmt.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
        prefix = "EXPLAIN QUERY PLAN " if url.startswith("sqlite") else "EXPLAIN "
        lines = session.execute(text(prefix + str(compiled))).all()
    return " | ".join(str(r[-1]) for r in lines)


def uses_index(url: str, plan_text: str) -> bool:
    if url.startswith("sqlite"):
        return "USING INDEX" in plan_text or "USING COVERING INDEX" in plan_text
    return "Index Scan" in plan_text or "Bitmap Index Scan" in plan_text or "Index Only Scan" in plan_text


@contextlib.contextmanager
def backend(name: str) -> Iterator[str]:
    if name == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.sqlite3"
    else:
        with postgres_database("gateway_bench_fhir_search") as db:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}"


def measure(url: str, n: int, repeats: int) -> None:
    """Time each kind of search against the filled index at ``url`` and print the table."""
    sessions = open_index(url)
    with tempfile.TemporaryDirectory() as data:
        settings = Settings.load(None, data_dir=Path(data))
        app = Starlette(routes=build_fhir_routes(sessions, settings, TOKEN))
        auth = {"Authorization": f"Bearer {TOKEN}"}
        patients = max(1, n // 5)
        # CPU ms: the process's CPU time per request (all threads). Waiting for a busy machine's cores does
        # not inflate it the way it inflates the wall-clock p95.
        print(f"{'search':36} {'p50 ms':>8} {'p95 ms':>8} {'CPU p50':>8}  index used (SQL plan)")
        # One event loop for all requests, as a server has (without ``with``, TestClient starts a thread
        # and a loop per request, about 1-2 ms that no server spends).
        with TestClient(app) as client:
            for kind, make in QUERIES.items():
                times, cpu = [], []
                for k in range(repeats):
                    i = (k * 7919) % n
                    t, c = time.perf_counter(), time.process_time()
                    res = client.get(f"/fhir/{make(i, patients)}", headers=auth)
                    times.append((time.perf_counter() - t) * 1000)
                    cpu.append((time.process_time() - c) * 1000)
                    assert res.status_code == 200, res.text[:300]
                    assert res.json().get("total", 0) >= 1, (kind, res.text[:300])
                p95 = statistics.quantiles(times, n=20)[18]
                p = plan(sessions, url, make(1, patients))
                print(
                    f"{kind:36} {statistics.median(times):8.1f} {p95:8.1f} {statistics.median(cpu):8.1f}"
                    f"  {uses_index(url, p)}: {p[:160]}"
                )
    sessions.kw["bind"].dispose()


def run(name: str, n: int, repeats: int) -> None:
    with backend(name) as url:
        sessions = open_index(url)
        t = time.perf_counter()
        fill(sessions, n)
        with sessions.begin() as session:
            session.execute(text("ANALYZE"))
        sessions.kw["bind"].dispose()
        print(f"\n[{name}] {n} reports ({3 * n} resources) loaded in {time.perf_counter() - t:.1f} s")
        measure(url, n, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="DiagnosticReports in the index")
    ap.add_argument("--repeats", type=int, default=100, help="requests per search kind")
    ap.add_argument(
        "--backend", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"]
    )
    ap.add_argument("--url", help="measure an index an earlier run filled with --n reports (no fill, kept)")
    args = ap.parse_args()
    if args.url:
        print(f"\n[{args.url}] {args.n} reports")
        measure(args.url, args.n, args.repeats)
        return
    for name in args.backend:
        run(name, args.n, args.repeats)


if __name__ == "__main__":
    main()
