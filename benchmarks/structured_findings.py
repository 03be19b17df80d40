"""Precision and recall of the structured-findings extractor per field, on a generated, labelled set.

Not a test. Run ``python benchmarks/structured_findings.py [--seed 0] [--n 480] [--show-errors]``.

The set is written by this file's own templates and vocabulary (sentence frames, site, size and cue
wordings chosen here, not read from ``mappings/structured_findings.yaml``), deterministic by seed, plus the
hand-written sentences of ``benchmarks/data/structured_findings_handwritten.jsonl``. Every sentence carries
its gold findings (kind, site, laterality, size in mm, presence, uncertainty) and its recommendation
(action and interval). Variations: ``positive`` (site + size forms + descriptors), ``negation`` (pre, post,
lists, scope across "，"/"but"), ``uncertain``, ``recommendation``, ``distractor`` (slice thickness,
comparison dates, "no change", normal statements, image numbers) and ``handwritten``.

Scoring, per sentence: predicted and gold findings are paired by kind in order. *finding*: P/R of kinds.
*site*, *laterality*, *size*: a predicted value is right when its pair's gold value equals it; P over
predicted values, R over gold values. *negation* and *uncertainty*: P/R of the "absent" and "uncertain"
labels over findings. *recommendation*: right when action and interval (value and UCUM unit) both match.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HANDWRITTEN = ROOT / "benchmarks" / "data" / "structured_findings_handwritten.jsonl"
FIELDS = ("finding", "site", "laterality", "size", "negation", "uncertainty", "recommendation")

# -- vocabulary of the generator (its own wording) -----------------------------------------------------------

#: gold site key → (laterality, Chinese phrasings, English phrasings)
LUNG_SITES: dict[str, tuple[str | None, list[str], list[str]]] = {
    "right_upper_lobe": (
        "right",
        ["右肺上叶", "右上叶", "右肺上叶尖段", "右肺上叶后段", "右肺上叶前段"],
        [
            "right upper lobe",
            "RUL",
            "apical segment of the right upper lobe",
            "right upper lobe posterior segment",
        ],
    ),
    "right_middle_lobe": (
        "right",
        ["右肺中叶", "右中叶", "右肺中叶内侧段", "右肺中叶外侧段"],
        ["right middle lobe", "RML", "lateral segment of the right middle lobe", "middle lobe"],
    ),
    "right_lower_lobe": (
        "right",
        ["右肺下叶", "右肺下叶背段", "右下肺", "右肺下叶后基底段"],
        [
            "right lower lobe",
            "RLL",
            "superior segment of the right lower lobe",
            "right lower lobe posterior basal segment",
        ],
    ),
    "left_upper_lobe": (
        "left",
        ["左肺上叶", "左肺上叶舌段", "左上叶", "左肺上叶尖后段"],
        ["left upper lobe", "LUL", "lingula", "apicoposterior segment of the left upper lobe"],
    ),
    "left_lower_lobe": (
        "left",
        ["左肺下叶", "左肺下叶背段", "左下肺", "左肺下叶外基底段"],
        [
            "left lower lobe",
            "LLL",
            "left lower lobe superior segment",
            "lateral basal segment of the left lower lobe",
        ],
    ),
    "right_lung": ("right", ["右肺"], ["right lung"]),
    "left_lung": ("left", ["左肺"], ["left lung"]),
}
LUNG_FINDINGS: dict[str, tuple[list[str], list[str]]] = {
    "nodule": (
        ["结节", "小结节", "结节影", "实性结节", "磨玻璃结节"],
        ["nodule", "pulmonary nodule", "solid nodule", "nodular opacity", "small nodule"],
    ),
    "mass": (["肿块", "肿块影", "软组织肿块"], ["mass", "soft-tissue mass", "mass lesion"]),
    "ground_glass_opacity": (
        ["磨玻璃影", "磨玻璃密度影", "磨玻璃样影"],
        ["ground-glass opacity", "ground glass opacity", "GGO"],
    ),
    "consolidation": (
        ["实变影", "片状实变"],
        ["consolidation", "patchy consolidation", "airspace consolidation"],
    ),
    "atelectasis": (["肺不张", "盘状肺不张"], ["atelectasis", "subsegmental atelectasis"]),
}
MEASURABLE = ("nodule", "mass", "ground_glass_opacity")
DESCRIPTORS_ZH = ["", "", "边缘毛刺", "分叶状", "边界欠清", "其内见钙化", "边缘光整"]
DESCRIPTORS_EN = ["", "", "spiculated", "lobulated", "calcified", "well-circumscribed", "ill-defined"]
SIDES_ZH = {"right": ["右侧", "右"], "left": ["左侧", "左"], "bilateral": ["双侧", "两侧"]}
SIDES_EN = {"right": ["right", "right-sided"], "left": ["left", "left-sided"], "bilateral": ["bilateral"]}
AMOUNT_ZH = ["", "少量", "中等量", "大量", "少许"]
AMOUNT_EN = ["", "small ", "moderate ", "large ", "trace "]


def _size(rng: random.Random, lang: str) -> tuple[str, tuple[float, ...]]:
    """A size phrase in one of many forms, and its dimensions in mm."""
    a = rng.randint(4, 38)
    b = rng.randint(3, a)
    c = rng.randint(3, b)
    ca, cb = a / 10, b / 10
    forms_zh = [
        (f"{a}mm×{b}mm", (a, b)),
        (f"{a} mm × {b} mm", (a, b)),
        (f"{ca:.1f}×{cb:.1f}cm", (a, b)),
        (f"{ca:.1f} cm × {cb:.1f} cm", (a, b)),
        (f"{a}x{b}mm", (a, b)),
        (f"{a}*{b}mm", (a, b)),
        (f"{a}mm", (a,)),
        (f"{ca:.1f}cm", (a,)),
        (f"{a}毫米", (a,)),
        (f"{ca:.1f}厘米×{cb:.1f}厘米", (a, b)),
        (f"{a}×{b}×{c}mm", (a, b, c)),
        (f"{ca:.1f}公分", (a,)),
        (f"{a}ｍｍ×{b}ｍｍ", (a, b)),
    ]
    forms_en = [
        (f"{a} mm x {b} mm", (a, b)),
        (f"{a} x {b} mm", (a, b)),
        (f"{ca:.1f} x {cb:.1f} cm", (a, b)),
        (f"{ca:.1f} cm x {cb:.1f} cm", (a, b)),
        (f"{a}x{b}mm", (a, b)),
        (f"{a} by {b} mm", (a, b)),
        (f"{a} mm", (a,)),
        (f"{ca:.1f} cm", (a,)),
        (f"{a} × {b} × {c} mm", (a, b, c)),
        (f"{ca:.1f} × {cb:.1f} cm", (a, b)),
    ]
    text, dims = rng.choice(forms_zh if lang == "zh" else forms_en)
    return text, tuple(float(d) for d in dims)


@dataclass
class Item:
    text: str
    lang: str
    variation: str
    findings: list[dict[str, Any]] = field(default_factory=list)
    recommendation: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "lang": self.lang,
            "variation": self.variation,
            "findings": self.findings,
            "recommendation": self.recommendation,
        }


def _gold(
    kind: str,
    site: str | None,
    side: str | None,
    size: Sequence[float] | None = None,
    presence: str = "present",
    uncertain: bool = False,
) -> dict[str, Any]:
    return {
        "finding": kind,
        "site": site,
        "laterality": side,
        "size": list(size) if size else None,
        "presence": presence,
        "uncertain": uncertain,
    }


def _lung(rng: random.Random, lang: str, lobes_only: bool = False) -> tuple[str, str, str | None]:
    keys = [k for k in LUNG_SITES if not lobes_only or "lobe" in k]
    key = rng.choice(keys)
    side, zh, en = LUNG_SITES[key]
    return key, rng.choice(zh if lang == "zh" else en), side


def _finding(rng: random.Random, lang: str, kinds: Sequence[str] = tuple(LUNG_FINDINGS)) -> tuple[str, str]:
    kind = rng.choice(list(kinds))
    zh, en = LUNG_FINDINGS[kind]
    return kind, rng.choice(zh if lang == "zh" else en)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def positive(rng: random.Random, lang: str) -> Item:
    key, site, side = _lung(rng, lang)
    kind, word = _finding(rng, lang, MEASURABLE)
    size_text, dims = _size(rng, lang)
    if lang == "zh":
        desc = rng.choice(DESCRIPTORS_ZH)
        d = f"，{desc}" if desc else ""
        frames = [
            f"{site}见一{word}，大小约{size_text}{d}。",
            f"{site}可见{word}{d}，直径约{size_text}。",
            f"{word}位于{site}，大小{size_text}{d}。",
            f"于{site}见{word}{d}，最大截面约{size_text}。",
            f"{site}{word}，约{size_text}{d}。",
            f"{site}示{word}（{size_text}）{d}。",
            f"{site}另见{word}一枚，大小约{size_text}。",
        ]
    else:
        desc = rng.choice(DESCRIPTORS_EN)
        d = f"{desc} " if desc else ""
        frames = [
            f"A {size_text} {d}{word} is seen in the {site}.",
            f"There is a {d}{word} in the {site} measuring {size_text}.",
            f"{_cap(site)} {d}{word} measuring {size_text}.",
            f"{_cap(word)} in the {site}, {size_text}.",
            f"Noted is a {size_text} {d}{word} within the {site}.",
            f"The {site} contains a {d}{word} of approximately {size_text}.",
            f"In the {site} there is a {d}{word}, about {size_text} in size.",
        ]
    return Item(rng.choice(frames), lang, "positive", [_gold(kind, key, side, dims)])


def effusion(rng: random.Random, lang: str) -> Item:
    side = rng.choice(["right", "left", "bilateral"])
    if lang == "zh":
        amount = rng.choice(AMOUNT_ZH)
        frames = [
            f"{rng.choice(SIDES_ZH[side])}{amount}胸腔积液。",
            f"{rng.choice(SIDES_ZH[side])}胸腔见{amount}积液。",
        ]
    else:
        amount = rng.choice(AMOUNT_EN)
        frames = [
            f"{_cap(amount)}{rng.choice(SIDES_EN[side])} pleural effusion.",
            f"There is a {amount}{rng.choice(SIDES_EN[side])} pleural effusion.",
        ]
    return Item(rng.choice(frames), lang, "positive", [_gold("pleural_effusion", "pleural_cavity", side)])


def lymph(rng: random.Random, lang: str) -> Item:
    a = rng.randint(8, 32)
    size_text = rng.choice([f"{a}mm", f"{a} mm", f"{a / 10:.1f}cm", f"{a / 10:.1f} cm"])
    if lang == "zh":
        frames = [
            (f"纵隔内见肿大淋巴结，短径约{size_text}。", "mediastinum", None),
            (f"右肺门淋巴结肿大，约{size_text}。", "hilum", "right"),
            (f"左侧腋窝见增大淋巴结，大小约{size_text}。", "axilla", "left"),
        ]
    else:
        frames = [
            (f"An enlarged mediastinal lymph node measures {size_text} in short axis.", "mediastinum", None),
            (f"Right hilar lymphadenopathy measuring {size_text}.", "hilum", "right"),
            (f"There is an enlarged left axillary lymph node of {size_text}.", "axilla", "left"),
        ]
    text, site, side = rng.choice(frames)
    return Item(text, lang, "positive", [_gold("lymphadenopathy", site, side, (float(a),))])


NEG_ZH = {
    "pleural_effusion": ["胸腔积液"],
    "pneumothorax": ["气胸"],
    "consolidation": ["实变影", "实变"],
    "lymphadenopathy": ["肿大淋巴结"],
    "nodule": ["结节", "结节影"],
    "mass": ["肿块", "占位性病变"],
}
NEG_EN = {
    "pleural_effusion": ["pleural effusion", "effusion"],
    "pneumothorax": ["pneumothorax"],
    "consolidation": ["consolidation", "focal consolidation"],
    "lymphadenopathy": ["lymphadenopathy", "enlarged lymph nodes"],
    "nodule": ["nodule", "suspicious nodule"],
    "mass": ["mass"],
}
DEFAULT_SITE = {"pleural_effusion": "pleural_cavity", "pneumothorax": "pleural_cavity"}


def negation(rng: random.Random, lang: str) -> Item:
    kinds = rng.sample(sorted(NEG_ZH), 3)
    table = NEG_ZH if lang == "zh" else NEG_EN
    words = [rng.choice(table[k]) for k in kinds]
    style = rng.randrange(7)
    golds = [_gold(k, DEFAULT_SITE.get(k), None, presence="absent") for k in kinds]
    if lang == "zh":
        if style == 0:
            return Item(f"未见{words[0]}。", lang, "negation", golds[:1])
        if style == 1:
            return Item(f"未见明显{words[0]}及{words[1]}。", lang, "negation", golds[:2])
        if style == 2:
            return Item(f"无{words[0]}、{words[1]}或{words[2]}。", lang, "negation", golds)
        if style == 3:  # scope ends at "，": a finding after it is present
            key, site, side = _lung(rng, lang, lobes_only=True)
            kind, word = _finding(rng, lang, MEASURABLE)
            size_text, dims = _size(rng, lang)
            g = golds[0] if kinds[0] != kind else _gold(kind, DEFAULT_SITE.get(kind), None, presence="absent")
            return Item(
                f"未见{words[0]}，{site}见{word}，大小约{size_text}。",
                lang,
                "negation",
                [g, _gold(kind, key, side, dims)],
            )
        if style == 4:
            return Item(
                "纵隔淋巴结未见肿大。",
                lang,
                "negation",
                [_gold("lymphadenopathy", "mediastinum", None, presence="absent")],
            )
        if style == 5:
            side = rng.choice(["right", "left", "bilateral"])
            return Item(
                f"{rng.choice(SIDES_ZH[side])}胸腔未见积液。",
                lang,
                "negation",
                [_gold("pleural_effusion", "pleural_cavity", side, presence="absent")],
            )
        key, site, side = _lung(rng, lang, lobes_only=True)
        return Item(
            f"原{site}{LUNG_FINDINGS['consolidation'][0][1]}已吸收。",
            lang,
            "negation",
            [_gold("consolidation", key, side, presence="absent")],
        )
    if style == 0:
        return Item(f"No {words[0]}.", lang, "negation", golds[:1])
    if style == 1:
        return Item(f"No {words[0]}, {words[1]} or {words[2]}.", lang, "negation", golds)
    if style == 2:
        return Item(f"There is no evidence of {words[0]} or {words[1]}.", lang, "negation", golds[:2])
    if style == 3:
        key, site, side = _lung(rng, lang, lobes_only=True)
        kind, word = _finding(rng, lang, MEASURABLE)
        size_text, dims = _size(rng, lang)
        g = golds[0] if kinds[0] != kind else _gold(kind, DEFAULT_SITE.get(kind), None, presence="absent")
        frame = rng.choice(
            [
                f"No {words[0]}, but a {size_text} {word} is present in the {site}.",
                f"No {words[0]}; {site} {word} measuring {size_text}.",
            ]
        )
        return Item(frame, lang, "negation", [g, _gold(kind, key, side, dims)])
    if style == 4:
        return Item(
            "Mediastinal lymph nodes are not enlarged.",
            lang,
            "negation",
            [_gold("lymphadenopathy", "mediastinum", None, presence="absent")],
        )
    if style == 5:
        return Item(f"{_cap(words[0])} is not seen.", lang, "negation", golds[:1])
    key, site, side = _lung(rng, lang, lobes_only=True)
    return Item(
        f"The previously seen consolidation in the {site} has resolved.",
        lang,
        "negation",
        [_gold("consolidation", key, side, presence="absent")],
    )


def uncertain(rng: random.Random, lang: str) -> Item:
    key, site, side = _lung(rng, lang)
    kind, word = _finding(rng, lang, ("consolidation", "atelectasis", "nodule", "mass"))
    if lang == "zh":
        frames = [
            f"{site}斑片影，考虑{word}可能。",
            f"{site}可疑{word}。",
            f"{site}{word}，不除外恶性。",
            f"{site}疑似{word}。",
            f"{site}似见{word}。",
            f"{site}{word}待排。",
        ]
        text = rng.choice(frames)
        hedged = "不除外恶性" not in text
    else:
        frames = [
            f"Possible {word} in the {site}.",
            f"Findings suspicious for {word} in the {site}.",
            f"{_cap(word)} in the {site} cannot be excluded.",
            f"Likely {word} in the {site}.",
            f"Questionable {word} at the {site}.",
            f"Opacity in the {site}, probably {word}.",
        ]
        text = rng.choice(frames)
        hedged = True
    return Item(text, lang, "uncertain", [_gold(kind, key, side, uncertain=hedged)])


def recommendation(rng: random.Random, lang: str) -> Item:
    n = rng.choice([1, 2, 3, 6, 12])
    if lang == "zh":
        frames: list[tuple[str, dict[str, Any] | None]] = [
            (f"建议{n}个月后复查胸部CT。", {"action": "follow_up", "interval": [n, "mo"]}),
            (f"建议{n}个月后复查。", {"action": "follow_up", "interval": [n, "mo"]}),
            (f"{n}个月后复查CT。", {"action": "follow_up", "interval": [n, "mo"]}),
            ("建议定期随访。", {"action": "follow_up", "interval": None}),
            ("建议半年后复查。", {"action": "follow_up", "interval": [6, "mo"]}),
            ("建议穿刺活检。", {"action": "biopsy", "interval": None}),
            (f"建议抗炎治疗后{n}周复查。", {"action": "follow_up", "interval": [n, "wk"]}),
            ("建议年度低剂量CT随访。", {"action": "follow_up", "interval": [1, "a"]}),
        ]
    else:
        frames = [
            (f"Follow-up CT in {n} months is recommended.", {"action": "follow_up", "interval": [n, "mo"]}),
            (f"Recommend follow-up chest CT in {n} months.", {"action": "follow_up", "interval": [n, "mo"]}),
            (f"A {n}-month follow-up CT is advised.", {"action": "follow_up", "interval": [n, "mo"]}),
            (f"Suggest repeat imaging in {n} weeks.", {"action": "follow_up", "interval": [n, "wk"]}),
            ("Annual low-dose CT follow-up is recommended.", {"action": "follow_up", "interval": [1, "a"]}),
            ("Tissue sampling (biopsy) is recommended.", {"action": "biopsy", "interval": None}),
            ("Routine follow-up is advised.", {"action": "follow_up", "interval": None}),
        ]
    text, rec = rng.choice(frames)
    findings: list[dict[str, Any]] = []
    if rng.random() < 0.5:  # an impression naming the finding first
        key, site, side = _lung(rng, lang, lobes_only=True)
        kind, word = _finding(rng, lang, ("nodule", "mass", "ground_glass_opacity"))
        text = (
            f"{site}{word}，{text}" if lang == "zh" else f"{_cap(site)} {word}; {text[:1].lower()}{text[1:]}"
        )
        findings = [_gold(kind, key, side)]
    return Item(text, lang, "recommendation", findings, rec)


DISTRACTORS: list[tuple[str, str, list[dict[str, Any]], dict[str, Any] | None]] = [
    ("层厚5mm重建，肺窗观察。", "zh", [], None),
    ("心影大小正常，主动脉未见增宽。", "zh", [], None),
    ("气管居中，双肺纹理清晰。", "zh", [], None),
    ("胸廓对称，骨质未见异常。", "zh", [], None),
    ("复查示右肺上叶结节较前缩小。", "zh", [_gold("nodule", "right_upper_lobe", "right")], None),
    ("与3个月前CT比较，左肺下叶结节未见明显变化。", "zh", [_gold("nodule", "left_lower_lobe", "left")], None),
    ("右肺中叶结节较前无变化。", "zh", [_gold("nodule", "right_middle_lobe", "right")], None),
    ("Se 3 Im 45 示纵隔窗。", "zh", [], None),
    ("The heart size is normal.", "en", [], None),
    ("Comparison is made with the CT of 3 months ago.", "en", [], None),
    ("Images were reconstructed at 1.25 mm slice thickness.", "en", [], None),
    ("The trachea is midline and the bony thorax is intact.", "en", [], None),
    ("No change in the left upper lobe nodule.", "en", [_gold("nodule", "left_upper_lobe", "left")], None),
    (
        "The right lower lobe nodule is unchanged from the prior study.",
        "en",
        [_gold("nodule", "right_lower_lobe", "right")],
        None,
    ),
    ("Series 2 image 40 shows the apex.", "en", [], None),
]


def generate(seed: int = 0, n: int = 480) -> list[Item]:
    """``n`` sentences, half Chinese and half English, in fixed proportions of the variations."""
    rng = random.Random(seed)
    makers = [
        (positive, 0.30),
        (effusion, 0.05),
        (lymph, 0.05),
        (negation, 0.25),
        (uncertain, 0.15),
        (recommendation, 0.15),
    ]
    items: list[Item] = []
    for maker, share in makers:
        for i in range(round(n * share)):
            items.append(maker(rng, "zh" if i % 2 == 0 else "en"))
    for text, lang, golds, rec in DISTRACTORS:
        items.append(Item(text, lang, "distractor", [dict(g) for g in golds], rec))
    return items


def handwritten(path: Path = HANDWRITTEN) -> list[Item]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        row = json.loads(line)
        findings = [
            _gold(
                f["finding"],
                f.get("site"),
                f.get("laterality"),
                f.get("size"),
                f.get("presence", "present"),
                bool(f.get("uncertain", False)),
            )
            for f in row["findings"]
        ]
        out.append(
            Item(row["text"], row.get("lang", "zh"), "handwritten", findings, row.get("recommendation"))
        )
    return out


# -- scoring ---------------------------------------------------------------------------------------------


@dataclass
class Counts:
    tp: int = 0
    predicted: int = 0
    gold: int = 0

    def p(self) -> float:
        return self.tp / self.predicted if self.predicted else 1.0

    def r(self) -> float:
        return self.tp / self.gold if self.gold else 1.0


def _predicted(text: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    from gateway.structure import extract

    e = extract(text)
    findings = [
        {
            "finding": f.kind,
            "site": f.site.key if f.site else None,
            "laterality": f.laterality,
            "size": list(f.size.dims_mm) if f.size else None,
            "presence": f.presence,
            "uncertain": f.uncertain,
        }
        for f in e.findings
    ]
    rec = None
    if e.recommendation is not None:
        r = e.recommendation
        rec = {"action": r.action, "interval": [r.interval.value, r.interval.unit] if r.interval else None}
    return findings, rec


def _pairs(
    pred: list[dict[str, Any]], gold: list[dict[str, Any]]
) -> list[tuple[dict[str, Any] | None, dict[str, Any] | None]]:
    left = list(gold)
    out: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = []
    for p in pred:
        match = next((g for g in left if g["finding"] == p["finding"]), None)
        if match is not None:
            left.remove(match)
        out.append((p, match))
    out.extend((None, g) for g in left)
    return out


def _same_interval(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return float(a[0]) == float(b[0]) and a[1] == b[1]


def score(items: Sequence[Item]) -> tuple[dict[str, dict[str, Counts]], list[tuple[Item, str]]]:
    """Counts per variation (and ``all``) and field, and the sentences with an error in some field."""
    table: dict[str, dict[str, Counts]] = defaultdict(lambda: {f: Counts() for f in FIELDS})
    errors: list[tuple[Item, str]] = []
    for item in items:
        pred, rec = _predicted(item.text)
        wrong: set[str] = set()
        for bucket in (table[item.variation], table["all"], table[item.lang]):
            for p, g in _pairs(pred, item.findings):
                c = bucket["finding"]
                c.predicted += p is not None
                c.gold += g is not None
                c.tp += p is not None and g is not None
                for name in ("site", "laterality", "size"):
                    c = bucket[name]
                    pv = p[name] if p else None
                    gv = g[name] if g else None
                    c.predicted += pv is not None
                    c.gold += gv is not None
                    c.tp += pv is not None and pv == gv
                for name, key, value in (
                    ("negation", "presence", "absent"),
                    ("uncertainty", "uncertain", True),
                ):
                    c = bucket[name]
                    pv = bool(p and p[key] == value)
                    gv = bool(g and g[key] == value)
                    c.predicted += pv
                    c.gold += gv
                    c.tp += pv and gv
            c = bucket["recommendation"]
            c.predicted += rec is not None
            c.gold += item.recommendation is not None
            if rec is not None and item.recommendation is not None:
                c.tp += rec["action"] == item.recommendation["action"] and _same_interval(
                    rec["interval"], item.recommendation.get("interval")
                )
        for p, g in _pairs(pred, item.findings):
            if p is None or g is None:
                wrong.add("finding")
                continue
            for name in ("site", "laterality", "size", "presence", "uncertain"):
                if p[name] != g[name]:
                    wrong.add(f"{name}: {p[name]!r} ≠ {g[name]!r}")
        if (rec is None) != (item.recommendation is None) or (
            rec is not None
            and item.recommendation is not None
            and (
                rec["action"] != item.recommendation["action"]
                or not _same_interval(rec["interval"], item.recommendation.get("interval"))
            )
        ):
            wrong.add(f"recommendation: {rec!r} ≠ {item.recommendation!r}")
        if wrong:
            errors.append((item, "; ".join(sorted(wrong)) + f" | predicted {pred}"))
    return dict(table), errors


def format_table(table: dict[str, dict[str, Counts]], sizes: dict[str, int]) -> str:
    order = [
        "all",
        "zh",
        "en",
        "positive",
        "negation",
        "uncertain",
        "recommendation",
        "distractor",
        "handwritten",
    ]
    head = "| set (n) | " + " | ".join(FIELDS) + " |"
    lines = [head, "|" + "---|" * (len(FIELDS) + 1)]
    for name in [o for o in order if o in table]:
        cells = []
        for f in FIELDS:
            c = table[name][f]
            cells.append(f"{c.p():.2f} / {c.r():.2f} ({c.gold})" if c.gold or c.predicted else "–")
        lines.append(f"| {name} ({sizes.get(name, 0)}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=480, help="generated sentences (distractors come on top)")
    parser.add_argument("--show-errors", action="store_true")
    parser.add_argument("--dump", type=Path, help="write the labelled set as JSON lines")
    args = parser.parse_args(argv)
    items = generate(args.seed, args.n) + handwritten()
    if args.dump:
        args.dump.write_text(
            "".join(json.dumps(i.as_json(), ensure_ascii=False) + "\n" for i in items), "utf-8"
        )
    table, errors = score(items)
    sizes: dict[str, int] = defaultdict(int)
    for item in items:
        sizes["all"] += 1
        sizes[item.variation] += 1
        sizes[item.lang] += 1
    print(f"structured findings: {len(items)} sentences (seed {args.seed}); P / R (gold count) per field")
    print(format_table(table, sizes))
    if args.show_errors:
        for item, why in errors:
            print(f"- [{item.variation}] {item.text}\n    {why}")
    print(f"{len(errors)} sentences with at least one error")
    return 0


if __name__ == "__main__":
    sys.exit(main())
