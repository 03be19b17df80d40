"""Correcting OCR lines after recognition: units, punctuation, radiology terms (``mappings/lexicon.yaml``).

Five kinds of change, each returned as a :class:`Change` so that the reader records it in the document:

- ``character``: a 1 or 0 inside a lower-case word is the letter l or o (``Mi1d``, ``1obe``, ``smal1``).
- ``spacing``: four or more single letters or digits separated by single spaces are one word
  (``S e 3 I m 4 5`` -> ``Se3Im45``): a recogniser that spaced out every character read them.
- ``unit``: a unit glued to a number is written the UCUM way (``8MM`` -> ``8mm``, ``㎝`` -> ``cm``), a
  multiplication sign between two measurements is ``×`` (``8mm x 6mm`` -> ``8mm×6mm``), and a letter O or l
  read inside a number is a digit (``1O mm`` -> ``10 mm``).
- ``punctuation``: full-width letters and digits become half-width; a half-width comma, semicolon or colon
  between Chinese characters becomes full-width, and a full-width one between Latin letters half-width.
- ``lexicon``: only on a line whose confidence is below the threshold, a word (English, 5+ letters) or a
  window of Chinese characters (4+) that is one edit from exactly one lexicon term (two for long terms) is
  replaced by it. Laterality, level, negation and number words never change (``never_change``), and correct
  words near a term are listed under ``keep``.

Pure functions over strings; the reader applies them to OCR lines only (a text layer is exact).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from gateway.reading.mappings import LexiconMapping, lexicon_mapping

ChangeKind = Literal["unit", "punctuation", "spacing", "character", "lexicon"]


@dataclass(frozen=True)
class Change:
    original: str
    corrected: str
    kind: ChangeKind
    reason: str


@dataclass(frozen=True)
class Lexicon:
    """The lexicon ready for look-up: term -> group per language, Chinese terms by length."""

    en: dict[str, str]
    zh: dict[str, str]
    zh_by_len: dict[int, list[str]] = field(default_factory=dict)
    never_zh: frozenset[str] = frozenset()
    never_en: frozenset[str] = frozenset()
    keep_en: frozenset[str] = frozenset()

    @classmethod
    def from_mapping(cls, mapping: LexiconMapping) -> Lexicon:
        en: dict[str, str] = {}
        zh: dict[str, str] = {}
        for group, langs in mapping.terms.items():
            for term in langs.get("en", []):
                en.setdefault(term.lower(), group)
            for term in langs.get("zh", []):
                zh.setdefault(term, group)
        by_len: dict[int, list[str]] = defaultdict(list)
        for term in zh:
            by_len[len(term)].append(term)
        return cls(
            en=en,
            zh=zh,
            zh_by_len=dict(by_len),
            never_zh=frozenset("".join(mapping.never_change.get("zh", []))),
            never_en=frozenset(w.lower() for w in mapping.never_change.get("en", [])),
            keep_en=frozenset(w.lower() for w in mapping.keep.get("en", [])),
        )


@lru_cache(maxsize=1)
def default_lexicon() -> Lexicon:
    return Lexicon.from_mapping(lexicon_mapping())


# -- units and punctuation -----------------------------------------------------------------------------------
_FULLWIDTH_ALNUM = re.compile(r"[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]+")
# A unit is followed by no letter, except the x of a following measurement ("8MMx6MM").
_UNIT = re.compile(r"(?<=\d)(\s?)(MM|Mm|mM|㎜|CM|Cm|cM|㎝)(?!(?![xX]\s?\d)[A-Za-z])")
_UNIT_NAMES = {"MM": "mm", "Mm": "mm", "mM": "mm", "㎜": "mm", "CM": "cm", "Cm": "cm", "cM": "cm", "㎝": "cm"}
_TIMES = re.compile(r"(?<=\d)(\s?(?:mm|cm)?\s?)([xX*＊✕])(\s?)(?=\d)")
_DIGIT_O = re.compile(r"(?<=\d)[Oo](?=\d|\s?(?:mm|cm)\b)|(?<=\d)[lI](?=\d)")
_CJK_CHAR = r"[\u3400-\u9fff]"
_HALF_IN_ZH = re.compile(rf"(?<=[\u3400-\u9fffA-Za-z0-9])([,;:])(?={_CJK_CHAR})")
_FULL_IN_EN = re.compile(r"(?<=[A-Za-z])([，；])(?=\s?[A-Za-z])")
_TO_FULL = {",": "，", ";": "；", ":": "："}
_TO_HALF = {"，": ",", "；": ";"}


def _sub(
    pattern: re.Pattern[str], text: str, table: dict[str, str], kind: ChangeKind, reason: str
) -> tuple[str, list[Change]]:
    changes: list[Change] = []

    def one(m: re.Match[str]) -> str:
        raw = m.group(0)
        new = "".join(table.get(c, c) for c in raw)
        if new != raw:
            changes.append(Change(raw, new, kind, reason))
        return new

    return pattern.sub(one, text), changes


# Four or more single letters or digits, each followed by one space: a recogniser that spaces out every
# character it reads (PP-OCRv6 does on some Latin fonts: "S e 3 I m 4 5").
_SPACED = re.compile(r"(?<![A-Za-z0-9])(?:[A-Za-z0-9] ){3,}[A-Za-z0-9](?![A-Za-z0-9])")


# A digit 1 or 0 read for the letter l or o inside a lower-case word: between two lower-case letters
# ("Mi1d"), or starting or ending a run of three or more ("1obe", "1ikely", "smal1"). "1mm", "T1", "S1",
# "I-131" and "10cm" are not such words.
_DIGIT_IN_WORD = re.compile(
    r"(?<=[a-z])[01](?=[a-z])|(?<![A-Za-z0-9])1(?=[a-z]{3,}(?![A-Za-z0-9]))|(?<=[a-z]{3})1(?![A-Za-z0-9])"
)


def normalise(text: str) -> tuple[str, list[Change]]:
    """Spacing, units and punctuation, on any OCR line whatever its confidence."""
    changes: list[Change] = []

    def letter(m: re.Match[str]) -> str:
        new = "l" if m.group(0) == "1" else "o"
        changes.append(
            Change(m.group(0), new, "character", "a digit read inside a word is the letter it looks like")
        )
        return new

    text = _DIGIT_IN_WORD.sub(letter, text)

    def spaced(m: re.Match[str]) -> str:
        new = m.group(0).replace(" ", "")
        changes.append(Change(m.group(0), new, "spacing", "letter-spaced characters joined"))
        return new

    text = _SPACED.sub(spaced, text)

    def fullwidth(m: re.Match[str]) -> str:
        new = "".join(chr(ord(c) - 0xFEE0) for c in m.group(0))
        changes.append(Change(m.group(0), new, "punctuation", "full-width letters and digits to half-width"))
        return new

    text = _FULLWIDTH_ALNUM.sub(fullwidth, text)

    def digit(m: re.Match[str]) -> str:
        new = "0" if m.group(0) in "Oo" else "1"
        changes.append(
            Change(m.group(0), new, "unit", "a letter read inside a number is the digit it looks like")
        )
        return new

    text = _DIGIT_O.sub(digit, text)

    def unit(m: re.Match[str]) -> str:
        new = m.group(1) + _UNIT_NAMES[m.group(2)]
        changes.append(Change(m.group(0), new, "unit", "unit after a number written as UCUM mm/cm"))
        return new

    text = _UNIT.sub(unit, text)

    def times(m: re.Match[str]) -> str:
        new = f"{m.group(1)}×{m.group(3)}"
        changes.append(Change(m.group(0), new, "unit", "multiplication sign between measurements"))
        return new

    text = _TIMES.sub(times, text)
    for pattern, table, reason in (
        (_HALF_IN_ZH, _TO_FULL, "half-width punctuation between Chinese characters to full-width"),
        (_FULL_IN_EN, _TO_HALF, "full-width punctuation between Latin words to half-width"),
    ):
        text, found = _sub(pattern, text, table, "punctuation", reason)
        changes.extend(found)
    return text, changes


# -- lexicon -------------------------------------------------------------------------------------------------
# OCR reads l as 1 inside words ("nodu1e"), so digits may sit inside a word, not at its ends.
_EN_WORD = re.compile(r"(?<![A-Za-z0-9])[A-Za-z][A-Za-z0-9-]{3,}[A-Za-z](?![A-Za-z0-9])")
_ZH_RUN = re.compile(rf"{_CJK_CHAR}{{4,}}")


def edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance, or ``limit + 1`` as soon as it must exceed ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
        if min(cur) > limit:
            return limit + 1
        prev = cur
    return prev[-1]


def _en_budget(word: str) -> int:
    return 2 if len(word) >= 9 else 1


def _zh_budget(term: str) -> int:
    return 2 if len(term) >= 7 else 1


def _match_case(template: str, term: str) -> str:
    if template.isupper():
        return term.upper()
    if template[:1].isupper():
        return term[:1].upper() + term[1:]
    return term


def _correct_en(text: str, lexicon: Lexicon, why: str) -> tuple[str, list[Change]]:
    changes: list[Change] = []

    def one(m: re.Match[str]) -> str:
        word = m.group(0)
        low = word.lower()
        if low in lexicon.en or low in lexicon.keep_en or low in lexicon.never_en:
            return word
        budget = _en_budget(low)
        if any(edit_distance(low, w, budget) <= budget for w in lexicon.never_en):
            return word
        best: list[tuple[int, str]] = []
        for term in lexicon.en:
            d = edit_distance(low, term, budget)
            if d <= budget:
                best.append((d, term))
        if not best:
            return word
        best.sort()
        if len(best) > 1 and best[1][0] == best[0][0]:
            return word  # two terms equally close: no way to choose
        d, term = best[0]
        new = _match_case(word, term)
        changes.append(
            Change(word, new, "lexicon", f"{d} edit(s) from the {lexicon.en[term]} term {term!r}; {why}")
        )
        return new

    return _EN_WORD.sub(one, text), changes


def _correct_zh(text: str, lexicon: Lexicon, why: str) -> tuple[str, list[Change]]:
    changes: list[Change] = []

    def one(m: re.Match[str]) -> str:
        run = list(m.group(0))
        exact = [False] * len(run)  # characters inside a correct term are never edited
        for n, terms in lexicon.zh_by_len.items():
            wanted = set(terms)
            for i in range(len(run) - n + 1):
                if "".join(run[i : i + n]) in wanted:
                    exact[i : i + n] = [True] * n
        for n in sorted(lexicon.zh_by_len, reverse=True):
            if n < 4:
                continue
            for i in range(len(run) - n + 1):
                window = run[i : i + n]
                if any(exact[i : i + n]):
                    continue
                fits: list[tuple[str, list[int]]] = []
                for term in lexicon.zh_by_len[n]:
                    diff = [k for k in range(n) if window[k] != term[k]]
                    if 0 < len(diff) <= _zh_budget(term) and not any(
                        window[k] in lexicon.never_zh or term[k] in lexicon.never_zh for k in diff
                    ):
                        fits.append((term, diff))
                if len(fits) != 1:
                    continue
                term, diff = fits[0]
                original = "".join(window)
                changes.append(
                    Change(
                        original,
                        term,
                        "lexicon",
                        f"{len(diff)} character(s) from the {lexicon.zh[term]} term {term!r}; {why}",
                    )
                )
                run[i : i + n] = list(term)
                exact[i : i + n] = [True] * n
        return "".join(run)

    return _ZH_RUN.sub(one, text), changes


def correct_line(
    text: str, confidence: float, threshold: float, lexicon: Lexicon | None = None
) -> tuple[str, list[Change]]:
    """Normalise ``text``; below ``threshold`` confidence, also restore lexicon terms. Returns the changes."""
    text, changes = normalise(text)
    if confidence >= threshold:
        return text, changes
    lexicon = lexicon or default_lexicon()
    why = f"line confidence {confidence:.2f} below {threshold:.2f}"
    text, found = _correct_en(text, lexicon, why)
    changes.extend(found)
    text, found = _correct_zh(text, lexicon, why)
    changes.extend(found)
    return text, changes
