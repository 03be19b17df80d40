"""Stage ``draft_findings``: drafts with a configured checkpoint, and never any text without one."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from gateway.dicom.ingest import Ingest
from gateway.findings.synthetic import generate, write_dicom
from gateway.index.models import Study
from gateway.metrics import Metrics
from gateway.pipeline.stage import StageContext
from gateway.pipeline.stages import draft_findings


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint) -> Path:  # type: ignore[no-untyped-def]
    return tiny_checkpoint("cnn-lstm", max_tokens=8)


def _ingest_radiographs(settings, sessions, tmp_path: Path, extra=None) -> tuple[Study, dict[str, str]]:  # type: ignore[no-untyped-def]
    study = generate(1, seed=3)[0]
    ingest = Ingest(settings, sessions, Metrics())
    uids = {}
    for pixels, view in ((study.frontal, "PA"), (study.lateral, "LL")):
        path = tmp_path / f"{view}.dcm"
        uids[view] = write_dicom(
            path,
            pixels,
            view_position=view,
            study_uid="1.2.826.0.1.3680043.10.1",
            patient_id="P",
            extra=extra,
        )
        ds = pydicom.dcmread(path)
        ingest.store(
            path.read_bytes(), ds, transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID), calling_ae="T"
        )
    with sessions() as session:
        return session.query(Study).one(), uids


def test_without_a_checkpoint_no_text_is_produced(settings, sessions, tmp_path: Path) -> None:
    study, _ = _ingest_radiographs(settings, sessions, tmp_path)
    ctx = StageContext(settings, sessions, study_version=1, stage="draft_findings")
    result = draft_findings.run(ctx, study)
    assert result == {"status": "no findings model configured", "sentences": 0}
    (doc,) = ctx.documents(study, stage="draft_findings")
    assert doc.content == {"status": "no findings model configured", "sentences": []}


def test_with_a_checkpoint_sentences_name_their_instance_and_model(
    settings_factory, sessions, checkpoint: Path, tmp_path: Path
) -> None:
    settings = settings_factory(findings={"checkpoint": checkpoint, "beam_size": 2})
    study, uids = _ingest_radiographs(settings, sessions, tmp_path)
    ctx = StageContext(settings, sessions, study_version=1, stage="draft_findings")
    result = draft_findings.run(ctx, study)
    assert result["status"] == "preliminary" and result["sentences"] >= 1
    (doc,) = ctx.documents(study, stage="draft_findings")
    content = doc.content or {}
    assert content["machine_written"] is True and content["status"] == "preliminary"
    assert content["model_name"] and content["model_version"]
    assert all(s["sop_instance_uid"] == uids["PA"] for s in content["sentences"])
    assert any("heart" in s["text"] for s in content["sentences"])
    # Idempotent: a re-run replaces the draft rather than adding one.
    draft_findings.run(ctx, study)
    assert len(ctx.documents(study, stage="draft_findings")) == 1


def test_a_context_model_reads_the_order_reason_age_and_sex(
    settings_factory, sessions, tiny_checkpoint, tmp_path: Path
) -> None:
    checkpoint = tiny_checkpoint("attention", max_tokens=8, context=True)
    settings = settings_factory(findings={"checkpoint": checkpoint, "beam_size": 2})
    header = {
        "PatientSex": "F",
        "PatientBirthDate": "19480301",
        "StudyDate": "20240302",
        "ReasonForTheRequestedProcedure": "Shortness of breath.",
    }
    study, _ = _ingest_radiographs(settings, sessions, tmp_path, header)
    ctx = StageContext(settings, sessions, study_version=1, stage="draft_findings")
    assert draft_findings.run(ctx, study)["status"] == "preliminary"
    (doc,) = ctx.documents(study, stage="draft_findings")
    content = doc.content or {}
    assert content["context"] == {"age": 76, "sex": "F", "indication": "Shortness of breath."}
    assert content["sentences"] and content["status"] == "preliminary" and content["model_version"]
    assert not any(w.startswith(("age:", "sex:")) for s in content["sentences"] for w in s["text"].split())
