"""A publication of a very large report never makes ingest or lease renewals wait.

A report with 20,000 findings was written in one transaction that held SQLite's write lock for minutes:
C-STOREs arriving meanwhile waited and failed, and lease renewals failed. The publication is now staged
in small commits and switched current in one short transaction (gateway.pipeline.stages.publish_write):
while it runs, every C-STORE is answered Success promptly and a lease renewal succeeds at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from pydicom.dataset import Dataset
from sqlalchemy import func, select
from test_index_busy import store

from gateway.index.models import FhirIdentifier, FhirResource, Study
from gateway.pipeline import jobs
from gateway.pipeline.stages.publish_write import save_publication

FINDINGS = 20_000


@pytest.fixture
def index_url(sqlite_index_url: str) -> str:
    """The single write lock that a long transaction holds is SQLite's."""
    return sqlite_index_url


def observations(study_uid: str, n: int, text: str = "finding") -> list[dict[str, Any]]:
    return [
        {
            "resourceType": "Observation",
            "id": f"obs-{k}",
            "status": "final",
            "code": {"text": text},
            "subject": {"reference": "Patient/p1"},
            "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study_uid}.{k}"}],
            "valueString": f"{text} {k}",
        }
        for k in range(n)
    ]


def test_large_publication_leaves_ingest_and_lease_renewal_prompt(
    start_scp: Callable[..., Any], make_instance: Callable[..., Dataset]
) -> None:
    # A C-STORE that waits longer than this for the index is answered 0xA700 instead of Success.
    scp = start_scp(dicom={"index_busy_timeout": 2.0})
    sessions = scp.ingest._sessions
    first = make_instance("ct")
    assert store(scp.port, first)[0] == 0x0000
    with sessions() as session:
        study = session.scalars(select(Study)).one()
    with sessions.begin() as session:
        jobs.enqueue(session, study.id, "publish", study.version)
    claimed = jobs.claim(sessions, "worker-1", scp.settings.pipeline)
    assert claimed is not None

    resources = observations(study.study_instance_uid, FINDINGS)
    failure: list[BaseException] = []

    def publish() -> None:
        try:
            save_publication(sessions, resources, study_fk=study.id, enqueue=lambda session, bodies: 0)
        except BaseException as exc:
            failure.append(exc)

    publisher = threading.Thread(target=publish)
    started = time.monotonic()
    publisher.start()
    stores: list[tuple[int, float]] = []
    renewals: list[float] = []
    while publisher.is_alive() and len(stores) < 40:
        stores.append(store(scp.port, make_instance("ct")))
        t0 = time.monotonic()
        assert jobs.renew(sessions, claimed, "worker-1", 60.0)
        renewals.append(time.monotonic() - t0)
    publisher.join(600)
    took = time.monotonic() - started
    assert not failure, failure
    assert stores, "the publication ended before any C-STORE was sent"
    assert all(status == 0x0000 for status, _ in stores), [hex(s) for s, _ in stores]
    # A renewal waits up to a minute for the lock; it must not wait behind the publication.
    assert max(renewals) < 5.0, (renewals, took)

    with sessions() as session:
        current = session.scalar(
            select(func.count()).select_from(FhirResource).where(FhirResource.is_current.is_(True))
        )
        tokens = session.scalar(select(func.count()).select_from(FhirIdentifier))
    assert current == FINDINGS
    assert tokens == FINDINGS


def test_republication_adds_versions_only_for_changed_content(
    start_scp: Callable[..., Any], make_instance: Callable[..., Dataset]
) -> None:
    scp = start_scp()
    sessions = scp.ingest._sessions
    assert store(scp.port, make_instance("ct"))[0] == 0x0000
    with sessions() as session:
        study = session.scalars(select(Study)).one()
    uid = study.study_instance_uid
    summary, _ = save_publication(sessions, observations(uid, 500), study_fk=study.id, enqueue=lambda s, b: 0)
    assert (summary.created, summary.updated, summary.unchanged) == (500, 0, 0)
    changed = observations(uid, 500)
    changed[7]["valueString"] = "changed"
    seen: list[list[dict[str, Any]]] = []

    def enqueue(session: Any, bodies: list[dict[str, Any]]) -> int:
        seen.append(bodies)
        return 0

    summary, _ = save_publication(sessions, changed, study_fk=study.id, enqueue=enqueue)
    assert (summary.created, summary.updated, summary.unchanged) == (0, 1, 499)
    assert summary.versions["Observation/obs-7"] == 2
    assert seen[0][7]["meta"]["versionId"] == "2" and seen[0][8]["meta"]["versionId"] == "1"
    with sessions() as session:
        rows = session.execute(
            select(FhirResource.version_id, FhirResource.is_current).where(
                FhirResource.resource_id == "obs-7"
            )
        ).all()
    assert sorted(rows) == [(1, False), (2, True)]


def test_rows_staged_by_a_killed_publication_are_removed_by_the_next(
    start_scp: Callable[..., Any], make_instance: Callable[..., Dataset], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.pipeline.stages import publish_write

    scp = start_scp()
    sessions = scp.ingest._sessions
    assert store(scp.port, make_instance("ct"))[0] == 0x0000
    with sessions() as session:
        study = session.scalars(select(Study)).one()
    resources = observations(study.study_instance_uid, 450)

    class Killed(BaseException):
        pass

    def killed(*args: object) -> None:
        raise Killed

    # Killed during the switch, before it could clean up after itself: staged rows stay behind.
    monkeypatch.setattr(publish_write, "_discard", lambda sessions, staged: None)
    with pytest.raises(Killed):
        save_publication(sessions, resources, study_fk=study.id, enqueue=killed)
    with sessions() as session:
        staged = session.scalar(select(func.count()).select_from(FhirResource))
        current = session.scalar(
            select(func.count()).select_from(FhirResource).where(FhirResource.is_current.is_(True))
        )
    assert (staged, current) == (450, 0)  # nothing visible

    monkeypatch.undo()
    summary, _ = save_publication(sessions, resources, study_fk=study.id, enqueue=lambda s, b: 0)
    assert summary.created == 450
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(FhirResource)) == 450
        assert session.scalar(select(func.count()).select_from(FhirIdentifier)) == 450
