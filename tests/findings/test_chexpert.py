"""The CheXpert rule labeller: its mapping, its rules, its F1, and its accuracy on hand-labelled sentences."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.errors import ConfigError
from gateway.findings.chexpert import (
    OBSERVATIONS,
    Labeller,
    clinical_f1,
    labeller,
    load_mapping,
    read_validation_set,
    validate,
)
from gateway.mappings import mapping_path

SENTENCES = Path(__file__).parent / "data" / "chexpert_sentences.tsv"


def test_mapping_validates_and_names_its_source() -> None:
    mapping = load_mapping()
    assert mapping.source and mapping.edition
    assert set(mapping.observations) | {"No Finding"} == set(OBSERVATIONS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["observations"].pop("Edema"), "missing"),
        (lambda d: d["observations"].update({"Emphysema": {"en": ["x"], "zh": ["y"]}}), "unknown"),
        (lambda d: d["observations"]["Edema"].update({"zh": []}), "Chinese"),
        (lambda d: d["negation"]["pre"]["en"].append("(unclosed"), "invalid regex"),
        (lambda d: d["normal"].append({"absent": ["Heart Failure"], "en": ["x"]}), "unknown observations"),
        (lambda d: d.pop("source"), "source"),
    ],
)
def test_bad_mapping_is_refused(tmp_path: Path, change: object, message: str) -> None:
    data = yaml.safe_load(mapping_path("chexpert.yaml").read_text(encoding="utf-8"))
    change(data)  # type: ignore[operator]
    path = tmp_path / "chexpert.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_mapping(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a negation covers a list, and stops at "but"
        (
            "No effusion or pneumothorax but there is consolidation.",
            {"Pleural Effusion": "absent", "Pneumothorax": "absent", "Consolidation": "present"},
        ),
        # uncertainty wins over the negation word inside "cannot be excluded"
        ("Pneumonia cannot be excluded.", {"Pneumonia": "uncertain"}),
        # a pseudo-negation does not negate
        ("No change in the left pleural effusion.", {"Pleural Effusion": "present"}),
        # a post-negation reaches back
        ("The pneumothorax has resolved.", {"Pneumothorax": "absent"}),
        # pericardial effusion is not a pleural effusion
        ("Small pericardial effusion.", {}),
        # the Chinese comma ends a negation's scope, the enumeration comma does not
        ("未见气胸，右侧胸腔积液。", {"Pneumothorax": "absent", "Pleural Effusion": "present"}),
        (
            "未见实变、胸腔积液或气胸。",
            {"Consolidation": "absent", "Pleural Effusion": "absent", "Pneumothorax": "absent"},
        ),
        ("右下肺斑片影，考虑炎症。", {"Lung Opacity": "present", "Pneumonia": "uncertain"}),
        ("心影不大。双肋膈角锐利。", {"Cardiomegaly": "absent", "Pleural Effusion": "absent"}),
        # a decimal point does not end a sentence
        ("There is a 1.5 cm nodule, no effusion.", {"Lung Lesion": "present", "Pleural Effusion": "absent"}),
        # r2gen-cleaned text (lower case, " . " between sentences) labels the same
        ("the heart is enlarged . no pneumothorax .", {"Cardiomegaly": "present", "Pneumothorax": "absent"}),
    ],
)
def test_rules(text: str, expected: dict[str, str]) -> None:
    assert labeller().label_text(text) == expected


def test_no_finding_follows_chexpert() -> None:
    lab = labeller()
    assert lab.label_report("The lungs are clear. Heart size is normal.")["No Finding"] == "present"
    # support devices do not make a study abnormal; an uncertain pathology does
    assert lab.label_report("Endotracheal tube in place. Lungs are clear.")["No Finding"] == "present"
    assert lab.label_report("Possible small left effusion.")["No Finding"] == "absent"
    assert lab.label_report("心肺未见异常。")["No Finding"] == "present"


def test_clinical_f1_by_hand() -> None:
    refs = [
        "the heart is enlarged . small pleural effusion .",
        "the lungs are clear .",
        "right pneumothorax .",
    ]
    hyps = ["the heart is enlarged . no effusion .", "the lungs are clear .", "the lungs are clear ."]
    scores = clinical_f1(refs, hyps)
    # present labels: refs {card, eff}, {nf}, {ptx}; hyps {card}, {nf}, {nf}
    # card tp1; eff fn1; nf tp1 fp1; ptx fn1 → micro P 2/3, R 2/4 → F1 4/7
    assert scores.micro_f1 == pytest.approx(4 / 7)
    assert scores.per_observation["Cardiomegaly"][2] == 1.0
    assert scores.per_observation["Pleural Effusion"][:3] == (0.0, 0.0, 0.0)
    assert scores.observations_scored == 4
    assert scores.macro_f1 == pytest.approx((1.0 + 0.0 + 2 / 3 + 0.0) / 4)
    assert clinical_f1(refs, refs).micro_f1 == 1.0
    with pytest.raises(ValueError):
        clinical_f1(refs, hyps[:2])


def test_validation_set_is_large_varied_and_well_formed() -> None:
    rows = read_validation_set(SENTENCES)
    assert len(rows) >= 300
    assert sum(r.lang == "zh" for r in rows) >= 120 and sum(r.lang == "en" for r in rows) >= 150
    assert len({r.text for r in rows}) == len(rows)
    statuses = {s for r in rows for s in r.labels.values()}
    assert statuses == {"present", "absent", "uncertain"}
    assert {o for r in rows for o in r.labels} == set(OBSERVATIONS)


@pytest.mark.parametrize("parity", [0, 1], ids=["tuning-rows", "held-out-rows"])
def test_labeller_accuracy_on_hand_labelled_sentences(parity: int) -> None:
    """Even lines were used to adjust the lexicon; odd lines were not, and must score as well."""
    rows = [r for r in read_validation_set(SENTENCES) if r.line % 2 == parity]
    table, wrong = validate(rows)
    assert len(wrong) / len(rows) < 0.06
    for status in ("present", "absent", "uncertain"):
        tp = sum(table[o][status][0] for o in OBSERVATIONS)
        fp = sum(table[o][status][1] for o in OBSERVATIONS)
        fn = sum(table[o][status][2] for o in OBSERVATIONS)
        assert tp / (tp + fp) > 0.9 and tp / (tp + fn) > 0.9, status


def test_a_sentence_set_with_a_bad_label_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.tsv"
    path.write_text("en\teffusion+\tSmall effusion.\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown label"):
        read_validation_set(path)


def test_labeller_is_data_driven(tmp_path: Path) -> None:
    data = yaml.safe_load(mapping_path("chexpert.yaml").read_text(encoding="utf-8"))
    data["observations"]["Edema"]["en"].append("wet lungs?")
    path = tmp_path / "chexpert.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert Labeller(load_mapping(path)).label_text("No wet lung.") == {"Edema": "absent"}
    assert "Edema" not in labeller().label_text("No wet lung.")
