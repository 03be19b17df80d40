"""The archive export: fixed patient splits, the FINDINGS target, reviewed drafts, de-identification."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from gateway.findings.export import (
    deidentify_text,
    findings_text,
    patient_key,
    patient_split,
    reviewed_findings,
)
from gateway.index.models import Document


def test_patient_split_is_fixed_and_near_its_ratios() -> None:
    keys = [patient_key("HOSP", f"P{i}") for i in range(3000)]
    first = [patient_split(k) for k in keys]
    assert first == [patient_split(k) for k in reversed(keys)][::-1]  # order and growth do not matter
    counts = Counter(first)
    assert abs(counts["train"] / 3000 - 0.7) < 0.03 and abs(counts["test"] / 3000 - 0.2) < 0.03
    assert [patient_split(k, salt="other") for k in keys] != first
    assert patient_key("A", "1") != patient_key("", "A1")


def test_findings_text_takes_the_findings_body_only() -> None:
    document = {
        "paragraphs": [
            {"section": "findings", "heading": True, "text": "影像所见"},
            {"section": "findings", "text": "双肺纹理清晰。"},
            {"section": "findings", "role": "caption", "text": "图1 胸片"},
            {"section": "findings", "text": "心影不大。"},
            {"section": "impression", "text": "心肺未见异常。"},
        ]
    }
    assert findings_text(document) == "双肺纹理清晰。心影不大。"
    assert findings_text({"paragraphs": [{"section": "impression", "text": "x"}]}) == ""


def _doc(i: int, kind: str, content: dict[str, object]) -> Document:
    return Document(id=i, kind=kind, content=content, created_at=dt.datetime(2026, 1, i, tzinfo=dt.UTC))


def test_reviewed_findings_newest_approved_or_corrected() -> None:
    docs = [
        _doc(1, "draft", {"status": "preliminary", "sentences": [{"text": "machine text"}]}),
        _doc(2, "draft-review", {"status": "approved", "text": "The lungs are clear."}),
        _doc(3, "draft-review", {"status": "corrected", "sentences": [{"text": "右侧少量胸腔积液"}]}),
        _doc(4, "draft-review", {"status": "rejected", "text": "ignored"}),
    ]
    assert reviewed_findings(docs) == ("右侧少量胸腔积液。", "corrected")
    assert reviewed_findings(docs[:2]) == ("The lungs are clear.", "approved")
    assert reviewed_findings(docs[:1]) is None  # a machine draft is never a target


def test_deidentify_text() -> None:
    text = (
        "Patient: Zhang Wei (MRN 00123456), accession ACC998877, seen 2024-03-05 and on 05/03/2024, "
        "March 5, 2024. UID 1.2.840.113619.2.55.3. 患者：王芳，2024年3月5日复查。The lungs are normal."
    )
    out = deidentify_text(text, names=["Zhang^Wei", "王芳"], ids=["00123456", "ACC998877"])
    for secret in ("Zhang", "Wei", "00123456", "ACC998877", "2024", "05/03", "March 5", "1.2.840", "王芳"):
        assert secret not in out, secret
    assert "The lungs are normal." in out and "复查" in out  # clinical text survives
    # a short name does not eat words that contain it
    assert deidentify_text("Li Na: normal limits.", names=["Li^Na"]) == "XXXX: normal limits."
