from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.uid import JPEG2000Lossless

from gateway.findings.checkpoint import CheckpointError
from gateway.findings.service import Draft, Drafter, StudyImage, load_drafter
from gateway.findings.settings import FindingsSettings
from gateway.findings.synthetic import generate, write_dicom


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint) -> Path:  # type: ignore[no-untyped-def]
    return tiny_checkpoint("attention", max_tokens=10)


def _study(folder: Path, index: int, compressed: bool = False) -> list[StudyImage]:
    study = generate(index + 1, seed=index)[index]
    images = []
    # The lateral comes first, to check that the frontal is found by its ViewPosition.
    for pixels, view in ((study.lateral, "LL"), (study.frontal, "PA")):
        path = folder / f"{index}-{view}.dcm"
        uid = write_dicom(
            path,
            pixels,
            view_position=view,
            study_uid=f"1.2.{index}",
            patient_id="P",
            monochrome1=view == "LL",
            transfer_syntax=JPEG2000Lossless if compressed else None,
        )
        images.append(StudyImage(uid, path, view))
    return images


def test_no_checkpoint_no_drafter() -> None:
    assert load_drafter(FindingsSettings()) is None


def test_a_bad_checkpoint_fails_at_load(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError):
        load_drafter(FindingsSettings(checkpoint=tmp_path))


def test_drafts_are_batched_and_name_the_frontal_instance(checkpoint: Path, tmp_path: Path) -> None:
    drafter = load_drafter(FindingsSettings(checkpoint=checkpoint, beam_size=2, batch_size=2))
    assert isinstance(drafter, Drafter)
    studies = [_study(tmp_path, 0), [], _study(tmp_path, 1, compressed=True), _study(tmp_path, 2)]
    drafts = drafter.draft_studies(studies)
    assert len(drafts) == 4 and drafts[1] == Draft(drafter.model_name, drafter.model_version, [])
    for study, draft in zip(studies, drafts, strict=True):
        assert draft.model_name == "findings-attention" and len(draft.model_version) == 12
        assert all(s.sop_instance_uid == study[1].sop_instance_uid for s in draft.sentences)
        assert all(s.text and "." not in s.text.split() for s in draft.sentences)
    one_by_one = [drafter.draft_studies([s])[0] for s in studies]
    assert one_by_one == drafts
    assert all(d.sentences for i, d in enumerate(drafts) if i != 1)
