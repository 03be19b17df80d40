"""Correction after recognition: units, punctuation, low-confidence lexicon terms, what is never touched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from report_fixtures import FakeEngine, png_bytes

from gateway.errors import ConfigError
from gateway.reading import ReadingSettings, read_bytes
from gateway.reading.correction import correct_line, edit_distance, normalise
from gateway.reading.engines.base import OcrLine
from gateway.reading.mappings import load_lexicon

LOW, HIGH, THRESHOLD = 0.6, 0.98, 0.9


def fixed(text: str, confidence: float = LOW) -> str:
    return correct_line(text, confidence, THRESHOLD)[0]


@pytest.mark.parametrize(
    ("read", "meant"),
    [
        ("右肺上叶尖段见一磨玻漓结节", "右肺上叶尖段见一磨玻璃结节"),
        ("纵隔内未见明显肿大淋巴培", "纵隔内未见明显肿大淋巴结"),
        ("A small pleural efusion", "A small pleural effusion"),
        ("a spicualted nodule", "a spiculated nodule"),
        ("MEDIASTINAI nodes", "MEDIASTINAL nodes"),
        ("Consolidatoin of the lingula", "Consolidation of the lingula"),
    ],
)
def test_low_confidence_words_near_one_term_are_restored(read: str, meant: str) -> None:
    text, changes = correct_line(read, LOW, THRESHOLD)
    assert text == meant
    (change,) = [c for c in changes if c.kind == "lexicon"]
    assert change.original in read and change.corrected in meant
    assert "confidence 0.60 below 0.90" in change.reason


def test_confident_lines_keep_their_words() -> None:
    assert fixed("右肺上叶尖段见一磨玻漓结节", HIGH) == "右肺上叶尖段见一磨玻漓结节"
    assert fixed("A small pleural efusion", HIGH) == "A small pleural efusion"


@pytest.mark.parametrize(
    "correct",
    [
        "输尿管结石",  # a rare term one character from no 4-character term in the lexicon
        "左肺中叶未见异常",  # no such lobe, but laterality and level words are never edited
        "右肺下叶见结节",  # a term differing from 右肺上叶 only in 下/上
        "nodular opacity",  # listed under `keep`
        "hypoechoic focus",  # a real word near no term
        "the pleurae",  # one edit from both pleura and pleural: no way to choose
        "lower lobe",  # never_change words
        "Se 3 Im 45 and (3:45)",
    ],
)
def test_correct_rare_words_are_not_corrected(correct: str) -> None:
    text, changes = correct_line(correct, LOW, THRESHOLD)
    assert text == correct
    assert [c for c in changes if c.kind == "lexicon"] == []


@pytest.mark.parametrize(
    ("read", "meant"),
    [
        ("大小约8MMx6MM", "大小约8mm×6mm"),
        ("1.2 x 0.9 cm", "1.2 × 0.9 cm"),
        ("12 mm X 9 mm", "12 mm × 9 mm"),
        ("约12㎜", "约12mm"),
        ("1O mm", "10 mm"),
        ("ＣＴ值４５", "CT值45"),
        ("大小约8mm,边界清楚", "大小约8mm，边界清楚"),
        ("pleural effusion，small", "pleural effusion,small"),
        ("见图1 及S e 3 I m 4 5。", "见图1 及Se3Im45。"),
        ("right upper 1obe. Mi1d changes", "right upper lobe. Mild changes"),
        ("A smal1 lesion 1ikely a cyst", "A small lesion likely a cyst"),
        ("n0dule", "nodule"),
    ],
)
def test_units_and_punctuation_are_normalised(read: str, meant: str) -> None:
    text, changes = normalise(read)
    assert text == meant
    assert changes and all(c.reason for c in changes)
    assert {c.kind for c in changes} <= {"unit", "punctuation", "spacing", "character"}


@pytest.mark.parametrize(
    "same",
    ["Se 3 Im 45", "(7:50)", "IMG 12", "Box 3", "series 4, image 112", "x-ray", "T1 T2 a b c", "a b c"],
)
def test_normalising_leaves_other_text_alone(same: str) -> None:
    assert normalise(same) == (same, [])


def test_edit_distance_stops_at_the_limit() -> None:
    assert edit_distance("effusion", "efusion", 1) == 1
    assert edit_distance("nodule", "nodular", 1) == 2
    assert edit_distance("a", "abcdef", 2) == 3


def test_a_bad_lexicon_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "lexicon.yaml"
    bad.write_text("source: x\nedition: y\nnever_change: {}\nterms: {organs: {en: [liver]}}\n", "utf-8")
    with pytest.raises(ConfigError, match="unknown lexicon groups"):
        load_lexicon(bad)


def test_reader_records_every_correction(fake_engine: Callable[[list[OcrLine]], FakeEngine]) -> None:
    import numpy as np

    engine = fake_engine(
        [
            OcrLine("右肺上叶见一磨玻漓结节，大小约8MMx6MM。", (10, 10, 300, 30), 0.7),
            OcrLine("There is a small pleural efusion.", (10, 50, 300, 70), 0.97),
        ]
    )
    image = np.full((120, 400, 3), 255, np.uint8)
    doc = read_bytes(png_bytes(image), settings=ReadingSettings(), engine=engine).document
    assert "磨玻璃结节" in doc.text and "8mm×6mm" in doc.text
    assert "efusion" in doc.text  # a confident line keeps its words
    kinds = sorted((c.kind, c.original, c.corrected) for c in doc.corrections)
    assert ("lexicon", "磨玻漓结节", "磨玻璃结节") in kinds
    assert ("unit", "mmx", "mm×") in kinds
    assert all(c.page == 1 and c.reason for c in doc.corrections)
    off = read_bytes(png_bytes(image), settings=ReadingSettings(correct=False), engine=engine).document
    assert off.corrections == [] and "磨玻漓结节" in off.text
