"""The rule extractor on sentences of each kind it must get right (the benchmark measures the rest)."""

from __future__ import annotations

import pytest

from gateway.structure import Finding, extract, normalise


def _one(text: str, kind: str | None = None) -> Finding:
    found = [f for f in extract(text).findings if kind is None or f.kind == kind]
    assert len(found) == 1, (text, found)
    return found[0]


@pytest.mark.parametrize(
    ("text", "dims"),
    [
        ("右肺上叶见结节，大小约12mm×9mm。", (12.0, 9.0)),
        ("右肺上叶结节，1.2 × 0.9 cm。", (12.0, 9.0)),
        ("右肺上叶结节，约12mm。", (12.0,)),
        ("右肺上叶结节12x9mm。", (12.0, 9.0)),
        ("右肺上叶结节，直径1.2cm。", (12.0,)),
        ("右肺上叶结节，大小约1.2厘米×0.9厘米。", (12.0, 9.0)),
        ("A 12 by 9 mm nodule in the right upper lobe.", (12.0, 9.0)),
        ("Right upper lobe nodule measuring 1.2 x 0.9 x 0.8 cm.", (12.0, 9.0, 8.0)),
        ("右肺上叶结节，大小约１２ｍｍ×９ｍｍ。", (12.0, 9.0)),  # full-width digits and units
    ],
)
def test_sizes_in_every_form_are_millimetres(text: str, dims: tuple[float, ...]) -> None:
    finding = _one(text, "nodule")
    assert finding.size is not None and finding.size.dims_mm == dims


def test_approximate_and_range_sizes() -> None:
    assert _one("右肺结节，约8mm。").size.approximate  # type: ignore[union-attr]
    ranged = _one("双肺多发结节，大小约3-5mm。").size
    assert ranged is not None and ranged.range and ranged.dims_mm == (5.0,)


def test_slice_thickness_and_image_numbers_are_not_sizes() -> None:
    finding = _one("层厚5mm扫描，右肺中叶见一枚6mm结节（Se 2 Im 5）。")
    assert finding.size is not None and finding.size.dims_mm == (6.0,)
    assert extract("Images were reconstructed at 1.25 mm slice thickness.").findings == ()


def test_site_laterality_and_segment() -> None:
    zh = _one("右肺上叶尖段见一结节。")
    assert zh.site is not None and (zh.site.key, zh.site.laterality, zh.site.segment) == (
        "right_upper_lobe",
        "right",
        "尖段",
    )
    assert zh.site.code == "42400003"
    en = _one("A nodule in the apical segment of the right upper lobe.")
    assert en.site is not None and (en.site.key, en.site.segment) == ("right_upper_lobe", "apical segment")
    effusion = _one("双侧少量胸腔积液。")
    assert effusion.site is not None and (effusion.site.key, effusion.laterality) == (
        "pleural_cavity",
        "bilateral",
    )
    hilar = _one("Left hilar lymphadenopathy.")
    assert hilar.site is not None and (hilar.site.key, hilar.laterality) == ("hilum", "left")


def test_negation_scope_ends_at_the_clause() -> None:
    found = {f.kind: f for f in extract("未见淋巴结肿大，右肺结节。").findings}
    assert found["lymphadenopathy"].presence == "absent"
    assert found["nodule"].presence == "present"
    assert found["nodule"].site is not None and found["nodule"].site.key == "right_lung"
    found = {
        f.kind: f for f in extract("No pleural effusion, but a 5 mm nodule is seen in the RUL.").findings
    }
    assert (found["pleural_effusion"].presence, found["nodule"].presence) == ("absent", "present")


def test_negation_carries_through_a_list() -> None:
    found = extract("No effusion, focal consolidation or pneumothorax.").findings
    assert [(f.kind, f.presence) for f in found] == [
        ("pleural_effusion", "absent"),
        ("consolidation", "absent"),
        ("pneumothorax", "absent"),
    ]
    assert [f.presence for f in extract("无胸腔积液、气胸或实变。").findings] == ["absent"] * 3


def test_post_negation_and_pseudo_negation() -> None:
    assert _one("The previously seen consolidation has resolved.").presence == "absent"
    assert _one("纵隔淋巴结未见肿大。").presence == "absent"
    # "no change" and "未见增大" are about change, not absence.
    assert _one("右肺结节较前无明显变化。").presence == "present"
    assert _one("与3个月前CT比较，右肺结节未见增大。").presence == "present"
    assert _one("No change in the left upper lobe nodule.").presence == "present"


def test_uncertainty_is_clause_bound() -> None:
    assert _one("右肺下叶斑片影，考虑实变可能。").uncertain
    assert _one("Consolidation in the right lower lobe cannot be excluded.").uncertain
    assert _one("Possible small right pneumothorax.").uncertain
    # A hedge about the nature in another clause leaves the finding itself certain.
    assert not _one("右肺上叶结节，考虑良性。").uncertain


def test_descriptors_and_count() -> None:
    f = _one("右肺上叶见两枚结节，边缘毛刺，无钙化。")
    assert f.count == 2
    assert set(f.descriptors) == {"spiculated", "not_calcified"}
    assert _one("Multiple small nodules in both lungs.").count == -1
    assert _one("右肺上叶见3枚结节。").count == 3
    assert _one("右肺上叶见12mm结节。").count is None
    assert _one("A 12 mm nodule in the right upper lobe.").count == 1


@pytest.mark.parametrize(
    ("text", "action", "interval"),
    [
        ("右肺上叶结节，建议 3 个月后复查胸部 CT。", "follow_up", (3.0, "mo")),
        ("Right upper lobe nodule; follow-up chest CT in 3 months is advised.", "follow_up", (3.0, "mo")),
        ("建议半年后复查。", "follow_up", (6.0, "mo")),
        ("A 6-month follow-up CT is advised.", "follow_up", (6.0, "mo")),
        ("建议随访。", "follow_up", None),
        ("建议穿刺活检。", "biopsy", None),
    ],
)
def test_recommendations(text: str, action: str, interval: tuple[float, str] | None) -> None:
    rec = extract(text).recommendation
    assert rec is not None and rec.action == action
    assert (None if rec.interval is None else (rec.interval.value, rec.interval.unit)) == interval


def test_comparisons_are_not_recommendations() -> None:
    assert extract("与3个月前CT比较，右肺结节未见明显变化。").recommendation is None
    assert extract("Compared with the CT of 3 months ago, the nodule is stable.").recommendation is None
    assert extract("复查示右肺上叶结节较前缩小。").recommendation is None


def test_long_input_is_read_up_to_a_limit_and_stays_fast() -> None:
    import time

    started = time.perf_counter()
    found = extract("右肺上叶结节，" * 5000).findings
    assert time.perf_counter() - started < 5.0
    assert 0 < len(found) <= 2000 // len("右肺上叶结节，") + 1


def test_normalise_keeps_offsets() -> None:
    text = "右肺结节（１２ｍｍ），ＲＵＬ"
    assert len(normalise(text)) == len(text)
    finding = _one(text)
    assert text[finding.start : finding.end] == finding.text == "结节"
