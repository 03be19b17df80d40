"""Recognise section headings and the report status. Pure functions; the words are in ``mappings/``."""

from __future__ import annotations

import re
from functools import lru_cache

from gateway.reading.mappings import STATUS_KEYS, sections_mapping
from gateway.reading.text import compact

# A heading may end with a colon and be followed by text on the same line ("印象：右肺结节").
_COLONS = ":："
_BILINGUAL_SEPARATORS = "/|／｜"


@lru_cache(maxsize=1)
def _headings() -> tuple[tuple[str, str], ...]:
    pairs = [
        (compact(word).upper(), key) for key, words in sections_mapping().sections.items() for word in words
    ]
    # Longest first, so "临床病史" wins over "病史" and "影像诊断" over "诊断".
    return tuple(sorted(pairs, key=lambda p: -len(p[0])))


@lru_cache(maxsize=1)
def _status_patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    table = sections_mapping().status
    out: list[tuple[str, re.Pattern[str]]] = []
    for key in STATUS_KEYS:
        for word in table.get(key, []):
            escaped = r"\s*".join(re.escape(c) for c in compact(word))
            # Latin words must stand alone ("FINAL REPORT", not "semifinal"); CJK has no word boundaries.
            if word.isascii():
                escaped = rf"(?<![A-Za-z]){escaped}(?![A-Za-z])"
            out.append((key, re.compile(escaped, re.IGNORECASE)))
    return tuple(out)


def detect_section(text: str) -> tuple[str, int] | None:
    """The section a paragraph opens, if it starts with a heading.

    Returns ``(key, length)`` where ``length`` is the number of characters of ``text`` (from its start) that
    form the heading with its colon, or None. A heading is the whole paragraph, or a prefix followed by a
    colon; a heading word that merely starts a sentence ("Impression of ...") is not one.
    """
    stripped = text.strip()
    if not stripped:
        return None
    head = compact(stripped).upper()
    for word, key in _headings():
        if not head.startswith(word):
            continue
        rest = head[len(word) :]
        if rest == "" or rest[0] in _COLONS + ":":
            return key, _heading_length(stripped, word, text)
        # Bilingual headings name the section twice: "影像所见 / FINDINGS", "IMPRESSION | 诊断意见".
        if rest[0] in _BILINGUAL_SEPARATORS:
            for other, other_key in _headings():
                tail = rest[1:]
                if other_key == key and tail.startswith(other):
                    after = tail[len(other) :]
                    if after == "" or after[0] in _COLONS + ":":
                        return key, _heading_length(stripped, word + rest[0] + other, text)
    return None


def _heading_length(stripped: str, word: str, text: str) -> int:
    # Walk the original text until the compacted prefix equals the heading word, then take a colon.
    lead = len(text) - len(text.lstrip())
    seen = 0
    index = lead
    while index < len(text) and seen < len(word):
        if not text[index].isspace():
            seen += len(compact(text[index]))
        index += 1
    while index < len(text) and (text[index].isspace() or text[index] in _COLONS):
        index += 1
    return index


def detect_status(text: str) -> str | None:
    """The status the report declares ('corrected', 'amended', 'preliminary', 'final'), or None."""
    for key, pattern in _status_patterns():
        if pattern.search(text):
            return key
    return None
