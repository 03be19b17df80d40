"""Chinese report text: one token per character, sentences on "。", labelled the same after cleaning."""

from __future__ import annotations

from gateway.findings.chexpert import labeller
from gateway.findings.text import TextRules, Vocabulary, clean_r2gen, split_sentences

REPORT = "双肺纹理清晰，未见实变。心影增大。右侧少量胸腔积液。"


def test_chinese_is_tokenised_by_character_and_split_on_full_stops() -> None:
    cleaned = clean_r2gen(REPORT)
    assert cleaned.split()[:6] == ["双", "肺", "纹", "理", "清", "晰"]
    assert split_sentences(cleaned) == ["双肺纹理清晰，未见实变", "心影增大", "右侧少量胸腔积液"]
    vocab = Vocabulary.build([cleaned] * 3, 3)
    assert "积" in vocab.tokens and len(vocab) < 40  # characters, not clauses
    # English is untouched
    assert clean_r2gen("The heart is enlarged. No effusion.") == "the heart is enlarged . no effusion ."
    assert TextRules.for_protocol("seed").clean("心影增大。").split() == ["心", "影", "增", "大", "."]


def test_the_labeller_reads_cleaned_chinese_as_it_reads_the_report() -> None:
    lab = labeller()
    assert lab.label_report(clean_r2gen(REPORT)) == lab.label_report(REPORT)
    assert lab.label_report(REPORT)["Cardiomegaly"] == "present"
