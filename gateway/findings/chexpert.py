"""A rule-based labeller for the 14 CheXpert observations, in English and Chinese, and the F1 it yields.

It is the clinical-correctness score that runs offline (CheXbert, RadGraph and GREEN download weights). The
lexicon and the negation and uncertainty triggers are data, ``mappings/chexpert.yaml``; this module only
applies them:

1. the text is NFKC-normalised, lower-cased and cut into sentences (``.`` not between digits, ``。；;!?``);
2. each observation's mention patterns are found; mentions inside an ``ignore`` phrase ("pericardial
   effusion") or strictly inside a longer mention of another observation ("nodular opacity" is a lesion) drop;
3. a mention is *uncertain* when an uncertainty trigger reaches it, else *absent* when a negation trigger
   does, else *present*. A pre-trigger reaches forward, a post-trigger back (at most 40 characters in English,
   8 in Chinese); neither crosses a terminator ("but", "，", "伴"). Triggers inside a pseudo-trigger ("no
   change", "无明显变化") and negations inside an uncertainty phrase ("cannot be excluded") do not count;
4. ``normal`` phrases state observations absent without naming them ("the lungs are clear");
5. per text, an observation is present if any mention is, else uncertain if any is, else absent
   (CheXpert's aggregation); a report's No Finding is present exactly when no pathology other than Support
   Devices is present or uncertain.

Scores treat *present* as the positive class (uncertain counts as not positive), as CheXpert-F1 in report
generation papers does.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.errors import ConfigError
from gateway.mappings import mapping_path

__all__ = [
    "CODES",
    "OBSERVATIONS",
    "PATHOLOGIES",
    "ChexpertMapping",
    "ClinicalScores",
    "Labeller",
    "Status",
    "ValidationRow",
    "clinical_f1",
    "labeller",
    "load_mapping",
    "read_validation_set",
    "validate",
]

Status = Literal["present", "absent", "uncertain"]
OBSERVATIONS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
# CheXpert's No Finding rule looks at these: every observation but No Finding and Support Devices.
PATHOLOGIES = tuple(o for o in OBSERVATIONS if o not in ("No Finding", "Support Devices"))
# Short codes of the validation set (tests/findings/data/chexpert_sentences.tsv).
CODES = dict(
    zip(
        ("nf", "ecm", "card", "les", "opa", "ede", "con", "pna", "ate", "ptx", "eff", "plo", "fx", "dev"),
        OBSERVATIONS,
        strict=True,
    )
)
_RANK: dict[Status, int] = {"absent": 0, "uncertain": 1, "present": 2}
_CJK = re.compile(r"[\u3400-\u9fff]")
_SENTENCE = re.compile(r"(?<!\d)\.(?!\d)|[。；;!?！？\n]")
_POST_GAP = {"en": 40, "zh": 8}


class Lexicon(BaseModel):
    """Regular expressions for English and Chinese text."""

    model_config = ConfigDict(extra="forbid")

    en: list[str] = Field(default_factory=list)
    zh: list[str] = Field(default_factory=list)

    @field_validator("en", "zh")
    @classmethod
    def _compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern.strip():
                raise ValueError("empty pattern")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regex {pattern!r}: {exc}") from exc
        return value

    def patterns(self) -> list[str]:
        return [*self.en, *self.zh]


class NormalRule(Lexicon):
    """Phrases that state observations absent (or No Finding present) without naming them."""

    absent: list[str] = Field(default_factory=list)
    present: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known(self) -> NormalRule:
        unknown = set(self.absent + self.present) - set(OBSERVATIONS)
        if unknown:
            raise ValueError(f"unknown observations {sorted(unknown)}")
        if not self.absent and not self.present:
            raise ValueError("a normal rule needs `absent` or `present`")
        return self


class Triggers(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pre: Lexicon
    post: Lexicon


class ChexpertMapping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1)
    edition: str = Field(min_length=1)
    observations: dict[str, Lexicon]
    ignore: Lexicon = Field(default_factory=Lexicon)
    normal: list[NormalRule] = Field(default_factory=list)
    negation: Triggers
    uncertainty: Triggers
    pseudo: Lexicon = Field(default_factory=Lexicon)
    terminators: Lexicon

    @field_validator("observations")
    @classmethod
    def _observations(cls, value: dict[str, Lexicon]) -> dict[str, Lexicon]:
        expected = set(OBSERVATIONS) - {"No Finding"}
        if set(value) != expected:
            missing, extra = sorted(expected - set(value)), sorted(set(value) - expected)
            raise ValueError(
                f"observations must be CheXpert's 13 besides No Finding; missing {missing}, unknown {extra}"
            )
        for name, lexicon in value.items():
            if not lexicon.en or not lexicon.zh:
                raise ValueError(f"{name} needs English and Chinese mention patterns")
        return value


def load_mapping(path: Path | None = None) -> ChexpertMapping:
    path = path or mapping_path("chexpert.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot load mapping {path}: {exc}") from exc
    try:
        return ChexpertMapping.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid mapping {path}: {exc}") from exc


def _compile(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    """Latin patterns get word boundaries; Chinese ones match anywhere."""
    compiled = []
    for p in patterns:
        if _CJK.search(p) or not re.search(r"[a-z]", p):
            compiled.append(re.compile(p))
        else:
            compiled.append(re.compile(rf"(?<![a-z0-9])(?:{p})(?![a-z0-9])"))
    return compiled


Span = tuple[int, int]


def _find(patterns: Sequence[re.Pattern[str]], text: str) -> list[Span]:
    return [m.span() for p in patterns for m in p.finditer(text) if m.end() > m.start()]


def _overlaps(span: Span, others: Iterable[Span]) -> bool:
    return any(span[0] < o[1] and o[0] < span[1] for o in others)


_CJK_GAP = re.compile(r"(?<=[\u3400-\u9fff]) +(?=[\u3400-\u9fff])")


def normalise(text: str) -> str:
    """NFKC, lower case, and no spaces between Chinese characters (cleaned text is spaced per character)."""
    return _CJK_GAP.sub("", unicodedata.normalize("NFKC", text).lower())


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(normalise(text)) if s.strip()]


def _merge(into: dict[str, Status], name: str, status: Status) -> None:
    if name not in into or _RANK[status] > _RANK[into[name]]:
        into[name] = status


@dataclass(frozen=True, slots=True)
class _Compiled:
    mentions: dict[str, list[re.Pattern[str]]]
    ignore: list[re.Pattern[str]]
    normal: list[tuple[NormalRule, list[re.Pattern[str]]]]
    neg_pre: list[re.Pattern[str]]
    neg_post: list[re.Pattern[str]]
    unc_pre: list[re.Pattern[str]]
    unc_post: list[re.Pattern[str]]
    pseudo: list[re.Pattern[str]]
    terminators: list[re.Pattern[str]]


class Labeller:
    def __init__(self, mapping: ChexpertMapping) -> None:
        self.mapping = mapping
        # English patterns apply to every text, Chinese ones to text with Chinese characters (NFKC makes
        # "，" a plain comma, so a Chinese terminator must not cut an English list).
        self._by_lang = {lang: self._compile_all(mapping, lang) for lang in ("en", "zh")}

    @staticmethod
    def _compile_all(mapping: ChexpertMapping, lang: str) -> _Compiled:
        def pick(lexicon: Lexicon) -> list[re.Pattern[str]]:
            return _compile(lexicon.en + (lexicon.zh if lang == "zh" else []))

        return _Compiled(
            mentions={name: pick(lex) for name, lex in mapping.observations.items()},
            ignore=pick(mapping.ignore),
            normal=[(rule, pick(rule)) for rule in mapping.normal],
            neg_pre=pick(mapping.negation.pre),
            neg_post=pick(mapping.negation.post),
            unc_pre=pick(mapping.uncertainty.pre),
            unc_post=pick(mapping.uncertainty.post),
            pseudo=pick(mapping.pseudo),
            terminators=pick(mapping.terminators),
        )

    def label_sentence(self, sentence: str) -> dict[str, Status]:
        """The observations one sentence speaks of (No Finding only when stated in so many words)."""
        text = normalise(sentence)
        lang = "zh" if _CJK.search(text) else "en"
        c, gap = self._by_lang[lang], _POST_GAP[lang]
        pseudo = _find(c.pseudo, text)
        terminators = _find(c.terminators, text)
        unc_pre = [s for s in _find(c.unc_pre, text) if not _overlaps(s, pseudo)]
        unc_post = [s for s in _find(c.unc_post, text) if not _overlaps(s, pseudo)]
        uncertain_spans = unc_pre + unc_post
        neg_pre = [
            s
            for s in _find(c.neg_pre, text)
            if not _overlaps(s, pseudo) and not _overlaps(s, uncertain_spans)
        ]
        neg_post = [
            s
            for s in _find(c.neg_post, text)
            if not _overlaps(s, pseudo) and not _overlaps(s, uncertain_spans)
        ]

        def blocked(start: int, end: int) -> bool:
            return any(start <= t[0] and t[1] <= end for t in terminators)

        def reaches(mention: Span, pre: list[Span], post: list[Span]) -> bool:
            a, b = mention
            for t in pre:
                if (t[1] <= a and not blocked(t[1], a)) or (a <= t[0] and t[1] <= b):
                    return True
            return any(t[0] >= b and t[0] - b <= gap and not blocked(b, t[0]) for t in post)

        ignored = _find(c.ignore, text)
        found: list[tuple[Span, str]] = []
        for name, patterns in c.mentions.items():
            spans = [
                s for s in _find(patterns, text) if not any(i[0] <= s[0] and s[1] <= i[1] for i in ignored)
            ]
            # one mention per stretch of text: the longest
            spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
            kept: list[Span] = []
            for s in spans:
                if not _overlaps(s, kept):
                    kept.append(s)
            found.extend((s, name) for s in kept)
        mentions = [
            (span, name)
            for span, name in found
            if not any(
                other != name and o[0] <= span[0] and span[1] <= o[1] and (o[1] - o[0]) > (span[1] - span[0])
                for o, other in found
            )
        ]
        labels: dict[str, Status] = {}
        for span, name in mentions:
            if reaches(span, unc_pre, unc_post):
                _merge(labels, name, "uncertain")
            elif reaches(span, neg_pre, neg_post):
                _merge(labels, name, "absent")
            else:
                _merge(labels, name, "present")
        for rule, patterns in c.normal:
            if _find(patterns, text):
                for name in rule.absent:
                    _merge(labels, name, "absent")
                for name in rule.present:
                    _merge(labels, name, "present")
        return labels

    def label_text(self, text: str) -> dict[str, Status]:
        """Every sentence's labels, aggregated (present > uncertain > absent); No Finding as stated."""
        labels: dict[str, Status] = {}
        for sentence in sentences(text):
            for name, status in self.label_sentence(sentence).items():
                _merge(labels, name, status)
        return labels

    def label_report(self, text: str) -> dict[str, Status]:
        """A report's labels; No Finding is present iff no pathology is present or uncertain (CheXpert)."""
        labels = self.label_text(text)
        findings = any(labels.get(p) in ("present", "uncertain") for p in PATHOLOGIES)
        labels["No Finding"] = "absent" if findings else "present"
        return labels


@lru_cache(maxsize=4)
def labeller(path: Path | None = None) -> Labeller:
    return Labeller(load_mapping(path))


# ---------------------------------------------------------------------------------------------- scores


@dataclass(frozen=True, slots=True)
class ClinicalScores:
    """Present-vs-not agreement of generated with reference reports over the 14 observations."""

    micro_f1: float
    macro_f1: float
    per_observation: dict[str, tuple[float, float, float, int]]  # precision, recall, F1, reference positives
    observations_scored: int  # observations positive in a reference or a hypothesis (macro's denominator)


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def clinical_f1(
    references: Sequence[str], hypotheses: Sequence[str], labeller_: Labeller | None = None
) -> ClinicalScores:
    """Micro- and macro-F1 of *present* labels (the CheXpert-F1 of report generation papers).

    Macro-F1 averages over the observations that are positive in at least one reference or hypothesis;
    the rest have no defined F1 and are left out rather than counted as perfect or as zero.
    """
    if len(references) != len(hypotheses):
        raise ValueError("one hypothesis per reference")
    if not references:
        raise ValueError("nothing to score")
    lab = labeller_ or labeller()
    counts = {o: [0, 0, 0] for o in OBSERVATIONS}  # tp, fp, fn
    for ref, hyp in zip(references, hypotheses, strict=True):
        gold, pred = lab.label_report(ref), lab.label_report(hyp)
        for o in OBSERVATIONS:
            is_gold, is_pred = gold.get(o) == "present", pred.get(o) == "present"
            counts[o][0] += is_gold and is_pred
            counts[o][1] += is_pred and not is_gold
            counts[o][2] += is_gold and not is_pred
    per = {}
    for o, (tp, fp, fn) in counts.items():
        p, r, f = _prf(tp, fp, fn)
        per[o] = (p, r, f, tp + fn)
    scored = [o for o, (tp, fp, fn) in counts.items() if tp + fp + fn]
    micro = _prf(*(sum(c[i] for c in counts.values()) for i in range(3)))[2]
    macro = sum(per[o][2] for o in scored) / len(scored) if scored else 0.0
    return ClinicalScores(micro, macro, per, len(scored))


# ------------------------------------------------------------------------------------------ validation


@dataclass(frozen=True, slots=True)
class ValidationRow:
    line: int
    lang: str
    labels: dict[str, Status]
    text: str


_SIGN: dict[str, Status] = {"+": "present", "-": "absent", "?": "uncertain"}


def read_validation_set(path: Path) -> list[ValidationRow]:
    """The hand-labelled sentences: ``lang <TAB> codes <TAB> sentence`` (``eff+ ptx-``; ``.`` for none)."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3 or parts[0] not in ("en", "zh"):
            raise ValueError(f"{path}:{number}: expected `en|zh <TAB> labels <TAB> sentence`")
        labels: dict[str, Status] = {}
        for code in parts[1].split():
            if code == ".":
                continue
            if code[:-1] not in CODES or code[-1] not in _SIGN:
                raise ValueError(f"{path}:{number}: unknown label {code!r}")
            labels[CODES[code[:-1]]] = _SIGN[code[-1]]
        rows.append(ValidationRow(number, parts[0], labels, parts[2]))
    return rows


def validate(
    rows: Sequence[ValidationRow], labeller_: Labeller | None = None
) -> tuple[dict[str, dict[Status, tuple[int, int, int]]], list[tuple[ValidationRow, dict[str, Status]]]]:
    """Per observation and status: (true positives, false positives, false negatives); and the wrong rows."""
    lab = labeller_ or labeller()
    table: dict[str, dict[Status, list[int]]] = {
        o: {s: [0, 0, 0] for s in ("present", "absent", "uncertain")} for o in OBSERVATIONS
    }
    wrong = []
    for row in rows:
        predicted = lab.label_text(row.text)
        if predicted != row.labels:
            wrong.append((row, predicted))
        for o in OBSERVATIONS:
            g, p = row.labels.get(o), predicted.get(o)
            if g is not None and g == p:
                table[o][g][0] += 1
            else:
                if p is not None:
                    table[o][p][1] += 1
                if g is not None:
                    table[o][g][2] += 1
    out = {o: {s: (c[0], c[1], c[2]) for s, c in by.items()} for o, by in table.items()}
    return out, wrong


def format_validation(table: Mapping[str, Mapping[Status, tuple[int, int, int]]]) -> str:
    """A Markdown table: precision / recall (support) per observation and status, and the totals."""

    def cell(tp: int, fp: int, fn: int) -> str:
        if tp + fn == 0 and fp == 0:
            return "–"
        p = f"{tp / (tp + fp):.2f}" if tp + fp else "–"
        r = f"{tp / (tp + fn):.2f}" if tp + fn else "–"
        return f"{p} / {r} ({tp + fn})"

    lines = [
        "| observation | present P / R (n) | absent P / R (n) | uncertain P / R (n) |",
        "|---|---|---|---|",
    ]
    totals = {s: [0, 0, 0] for s in ("present", "absent", "uncertain")}
    for o in OBSERVATIONS:
        by = table[o]
        for s, c in by.items():
            for i in range(3):
                totals[s][i] += c[i]
        lines.append(
            f"| {o} | " + " | ".join(cell(*by[s]) for s in ("present", "absent", "uncertain")) + " |"
        )
    lines.append(
        "| **all** | " + " | ".join(cell(*totals[s]) for s in ("present", "absent", "uncertain")) + " |"
    )
    return "\n".join(lines)
