"""The findings export takes a draft a reader approved only while that approval is the newest decision."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from gateway.findings.export import approved_by_reader
from gateway.index.models import DraftReview, Patient, Study
from gateway.ui.accounts import add_user


def test_a_withdrawn_or_later_rejected_approval_is_not_exported(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        patient = Patient(patient_id="P1", issuer="")
        session.add(patient)
        session.flush()
        study = Study(study_instance_uid="1.2.3", patient_fk=patient.id, state="done", version=1)
        session.add(study)
        session.flush()
        user = add_user(session, "r1", "a long password", role="reader")
        study_fk = study.id

    def decide(decision: str, sentences: list[str]) -> None:
        with sessions.begin() as session:
            session.add(
                DraftReview(
                    study_fk=study_fk, study_version=1, decision=decision, sentences=sentences, user_fk=user
                )
            )

    with sessions() as session:
        assert approved_by_reader(session, study_fk) is None
    decide("approved", ["Heart normal.", "Lungs clear."])
    with sessions() as session:
        assert approved_by_reader(session, study_fk) == ("Heart normal. Lungs clear.", "approved")
    decide("withdrawn", ["Heart normal.", "Lungs clear."])
    with sessions() as session:
        assert approved_by_reader(session, study_fk) is None
    decide("approved", ["Heart normal."])
    decide("saved", ["Heart normal?"])
    with sessions() as session:
        assert approved_by_reader(session, study_fk) is None
