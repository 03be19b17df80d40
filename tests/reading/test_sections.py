from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.reading import detect_section, detect_status
from gateway.reading.mappings import load_figure_refs, load_sections


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("检查所见：", "findings"),
        ("影像所见", "findings"),
        ("影像表现:", "findings"),
        ("诊断意见：", "impression"),
        ("印象", "impression"),
        ("结论：", "impression"),
        ("FINDINGS", "findings"),
        ("Impression:", "impression"),
        ("TECHNIQUE:", "technique"),
        ("COMPARISON", "comparison"),
        ("Indication:", "indication"),
        ("CLINICAL HISTORY:", "history"),
        ("F I N D I N G S", "findings"),
    ],
)
def test_headings(text: str, key: str) -> None:
    found = detect_section(text)
    assert found is not None
    assert found[0] == key
    assert found[1] == len(text)


def test_inline_heading_reports_its_length() -> None:
    text = "印象：右肺结节"
    assert detect_section(text) == ("impression", 3)


def test_a_sentence_is_not_a_heading() -> None:
    assert detect_section("Impression of the liver is normal.") is None
    assert detect_section("右肺上叶见结节") is None


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("XX医院 初步报告", "preliminary"),
        ("PRELIMINARY REPORT", "preliminary"),
        ("ADDENDUM: new comparison", "amended"),
        ("AMENDED", "amended"),
        ("CORRECTED REPORT", "corrected"),
        ("FINAL REPORT", "final"),
        ("final diagnosis pending", None),
        ("no status here", None),
    ],
)
def test_status(text: str, status: str | None) -> None:
    assert detect_status(text) == status


def test_mappings_are_validated(tmp_path: Path) -> None:
    bad = tmp_path / "sections.yaml"
    bad.write_text("source: x\nedition: '1'\nsections: {bogus: [X]}\nstatus: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="bogus"):
        load_sections(bad)
    refs = tmp_path / "refs.yaml"
    text = "source: x\nedition: '1'\npatterns: [{name: a, kind: figure, regex: 'fig('}]\n"
    refs.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid regex"):
        load_figure_refs(refs)


def test_shipped_mappings_load() -> None:
    assert "findings" in load_sections().sections
    assert load_figure_refs().patterns


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("影像所见 / FINDINGS", "findings"),
        ("诊断意见 / IMPRESSION", "impression"),
        ("IMPRESSION | 诊断意见：", "impression"),
        ("影像所见 / IMPRESSION", None),
        ("FINDINGS / the lungs are clear", None),
    ],
)
def test_bilingual_headings(text: str, key: str | None) -> None:
    found = detect_section(text)
    assert (found[0] if found else None) == key


def test_sign_off_line_opens_the_signature_section() -> None:
    found = detect_section("报告医师 Reporting radiologist: Example^Reader    审核 Verified: 2024-03-15")
    assert found is not None and found[0] == "signature"
