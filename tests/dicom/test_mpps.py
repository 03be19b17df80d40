"""MPPS SCP over real associations (pynetdicom as the modality), and completion on evidence."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.dicom.completion import Completion, Step, decide, record_quiet
from gateway.dicom.mpps import SOP_CLASS as MPPS
from gateway.index.models import Job, Mpps, Study
from gateway.pipeline import jobs


def _step(study_uid: str, status: str, refs: list[str] = (), reason: str | None = None) -> Dataset:  # type: ignore[assignment]
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    sched = Dataset()
    sched.StudyInstanceUID = study_uid
    ds.ScheduledStepAttributesSequence = Sequence([sched])
    if refs:
        series = Dataset()
        series.SeriesInstanceUID = generate_uid()
        items = []
        for uid in refs:
            item = Dataset()
            item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
            item.ReferencedSOPInstanceUID = uid
            items.append(item)
        series.ReferencedImageSequence = Sequence(items)
        ds.PerformedSeriesSequence = Sequence([series])
    if reason:
        code = Dataset()
        code.CodeValue = "110514"
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = reason
        ds.PerformedProcedureStepDiscontinuationReasonCodeSequence = Sequence([code])
    return ds


def _assoc(port: int) -> Any:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(MPPS)
    for sop_class in ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.88.59"):
        ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="GATEWAY")
    assert assoc.is_established
    return assoc


def _study(sessions: sessionmaker[Session], uid: str) -> Study:
    with sessions() as session:
        return session.scalars(select(Study).where(Study.study_instance_uid == uid)).one()


def test_decide_rules() -> None:
    a, b = "1.1", "1.2"
    assert decide(frozenset({a}), [Step("COMPLETED", frozenset({a, b}))], []) is None
    done = decide(frozenset({a, b}), [Step("COMPLETED", frozenset({a, b}))], [])
    assert done is not None and done.state == "stable" and "2/2" in done.reason
    assert decide(frozenset({a}), [Step("IN PROGRESS", frozenset({a}))], []) is None
    report = decide(frozenset({a, b}), [], [frozenset({a})])
    assert report is not None and report.reason.startswith("report arrived")
    assert decide(frozenset({a}), [], [frozenset()]) is None  # no explicit references: the timer decides
    failed = decide(frozenset(), [Step("DISCONTINUED", frozenset(), "Patient refused")], [])
    assert (
        failed is not None
        and failed.state == "failed"
        and failed.reason == "MPPS DISCONTINUED: Patient refused"
    )


def test_mpps_completes_study_before_the_timer(
    start_scp: Callable[..., Any], make_instance: Callable[..., Dataset]
) -> None:
    scp = start_scp(stable_age=3600)
    sessions = scp.mpps.sessions
    study_uid = generate_uid()
    images = [make_instance("ct", study_uid=study_uid, instance_number=n) for n in (1, 2, 3)]
    mpps_uid = generate_uid()
    assoc = _assoc(scp.port)
    status, _ = assoc.send_n_create(_step(study_uid, "IN PROGRESS"), MPPS, mpps_uid)
    assert status.Status == 0x0000
    status, _ = assoc.send_n_create(_step(study_uid, "IN PROGRESS"), MPPS, mpps_uid)
    assert status.Status == 0x0111  # duplicate instance
    for ds in images[:2]:
        assert assoc.send_c_store(ds).Status == 0
    refs = [str(ds.SOPInstanceUID) for ds in images]
    status, _ = assoc.send_n_set(_step(study_uid, "COMPLETED", refs), MPPS, mpps_uid)
    assert status.Status == 0x0000
    status, _ = assoc.send_n_set(_step(study_uid, "DISCONTINUED"), MPPS, mpps_uid)
    assert status.Status == 0xC310  # a completed step may no longer be updated
    status, _ = assoc.send_n_set(_step(study_uid, "COMPLETED"), MPPS, generate_uid())
    assert status.Status == 0x0112  # no such instance

    completion = Completion(sessions)
    assert completion.promote("extract") == []  # 2 of 3 referenced instances: keep waiting
    assert _study(sessions, study_uid).state == "receiving"
    assert assoc.send_c_store(images[2]).Status == 0
    assoc.release()
    [(study_fk, _)] = completion.promote("extract")
    study = _study(sessions, study_uid)
    assert study.state == "stable" and study.version == 1
    assert study.state_reason == "MPPS COMPLETED: 3/3 referenced instances arrived"
    with sessions() as session:
        assert [j.stage for j in session.scalars(select(Job).where(Job.study_fk == study_fk))] == ["extract"]
        assert session.scalars(select(Mpps)).one().status == "COMPLETED"


def test_discontinued_fails_with_reason(
    start_scp: Callable[..., Any], make_instance: Callable[..., Dataset]
) -> None:
    scp = start_scp(stable_age=3600)
    sessions = scp.mpps.sessions
    study_uid = generate_uid()
    mpps_uid = generate_uid()
    assoc = _assoc(scp.port)
    assert assoc.send_n_create(_step(study_uid, "IN PROGRESS"), MPPS, mpps_uid)[0].Status == 0
    assert assoc.send_c_store(make_instance("ct", study_uid=study_uid)).Status == 0
    assert (
        assoc.send_n_set(_step(study_uid, "DISCONTINUED", reason="Patient refused"), MPPS, mpps_uid)[0].Status
        == 0
    )
    assoc.release()
    Completion(sessions).promote("extract")
    study = _study(sessions, study_uid)
    assert (study.state, study.state_reason) == ("failed", "MPPS DISCONTINUED: Patient refused")


def test_report_references_complete_the_study(
    start_scp: Callable[..., Any], make_instance: Callable[..., Dataset]
) -> None:
    scp = start_scp(stable_age=3600)
    sessions = scp.mpps.sessions
    study_uid = generate_uid()
    kos = make_instance("kos", study_uid=study_uid)
    referenced = kos.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    image = make_instance(
        "ct",
        study_uid=study_uid,
        series_uid=referenced.SeriesInstanceUID,
        sop_uid=referenced.ReferencedSOPSequence[0].ReferencedSOPInstanceUID,
    )
    assoc = _assoc(scp.port)
    assert assoc.send_c_store(kos).Status == 0
    completion = Completion(sessions)
    assert completion.promote("extract") == []  # the referenced image has not arrived
    assert assoc.send_c_store(image).Status == 0
    assoc.release()
    completion.promote("extract")
    assert _study(sessions, study_uid).state_reason == "report arrived: 1/1 referenced instances present"


def test_quiet_timer_reason(start_scp: Callable[..., Any], make_instance: Callable[..., Dataset]) -> None:
    scp = start_scp(stable_age=0.2)
    sessions = scp.mpps.sessions
    study_uid = generate_uid()
    assoc = _assoc(scp.port)
    assert assoc.send_c_store(make_instance("ct", study_uid=study_uid)).Status == 0
    assoc.release()
    time.sleep(0.3)
    assert Completion(sessions).promote("extract") == []
    quiet = jobs.promote_stable(sessions, 0.2, "extract")
    record_quiet(sessions, quiet, 0.2)
    assert _study(sessions, study_uid).state_reason == "quiet timer: no instance for 0.2 s"
