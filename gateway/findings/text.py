"""Report text: cleaning rules, the vocabulary, and token ids.

Two protocols exist. ``r2gen`` (default) follows R2Gen's IU X-Ray rules so that scores compare with published
ones: lowercase, punctuation stripped, sentences joined with " . ", words kept at 3 or more occurrences, 60
tokens at most. ``seed`` follows the original CNN-LSTM: lowercase, punctuation kept as tokens, words kept at 2
or more occurrences.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["PROTOCOLS", "SPECIALS", "TextProtocol", "TextRules", "Vocabulary", "clean_r2gen", "clean_seed"]

TextProtocol = Literal["r2gen", "seed"]
PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)

_NUMBERING = re.compile(r"(^|\s)\d\.\s")
_SENT_STRIP = re.compile(r"[.,?;*!%^&_+():\-\[\]{}\"/\\']")
_SEED_TOKEN = re.compile(r"[a-z0-9]+|[^a-z0-9\s]")


_CJK_CHAR = re.compile(r"([\u3400-\u9fff\uff0c\u3001\uff1b\uff1a])")
_CJK_GAP = re.compile(
    r"(?<=[\u3400-\u9fff\uff0c\u3001\uff1b\uff1a]) (?=[\u3400-\u9fff\uff0c\u3001\uff1b\uff1a])"
)


def space_cjk(report: str) -> str:
    """Chinese as one token per character (and ，、；： kept as tokens); "。" ends a sentence like ". ".

    Chinese has no spaces, so the space-split vocabulary would otherwise hold whole clauses. Characters are
    the usual unit for Chinese captioning scores. English text is returned unchanged.
    """
    if not _CJK_CHAR.search(report):
        return report
    return _CJK_CHAR.sub(r" \1 ", report.replace("。", ". "))


def join_cjk(text: str) -> str:
    """Undo :func:`space_cjk`'s spaces between Chinese characters, for display."""
    return _CJK_GAP.sub("", text)


def clean_r2gen(report: str) -> str:
    """R2Gen's ``clean_report_iu_xray``: numbered lists dropped, sentences stripped of punctuation.

    Chinese is first spaced into characters (:func:`space_cjk`).
    """
    text = space_cjk(report).replace("\n", " ")
    while ".." in text:
        text = text.replace("..", ".")
    text = _NUMBERING.sub(" ", text).strip().lower()
    sentences = [_SENT_STRIP.sub("", s).strip() for s in text.split(". ")]
    sentences = [" ".join(s.split()) for s in sentences if s.strip(" .")]
    sentences = [s for s in sentences if s]
    return " . ".join(sentences) + " ." if sentences else ""


def clean_seed(report: str) -> str:
    """Lowercase, words and punctuation marks as separate tokens (a Chinese character is a word)."""
    return " ".join(_SEED_TOKEN.findall(space_cjk(report).lower()))


@dataclass(frozen=True, slots=True)
class TextRules:
    protocol: TextProtocol = "r2gen"
    min_count: int = 3
    max_tokens: int = 60

    @classmethod
    def for_protocol(cls, protocol: TextProtocol) -> TextRules:
        return cls(protocol, 3, 60) if protocol == "r2gen" else cls(protocol, 2, 60)

    def clean(self, report: str) -> str:
        return clean_r2gen(report) if self.protocol == "r2gen" else clean_seed(report)


PROTOCOLS: tuple[TextProtocol, ...] = ("r2gen", "seed")


class Vocabulary:
    """Token ↔ id; ids 0-3 are ``<pad> <start> <end> <unk>`` in that order."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("a vocabulary holds each token once")
        self.tokens: tuple[str, ...] = tuple(tokens)
        self._ids = {t: i for i, t in enumerate(self.tokens)}

    pad, start, end, unk = 0, 1, 2, 3

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int) -> Vocabulary:
        """Words of already cleaned ``texts`` seen ``min_count`` times or more, most frequent first."""
        counts = Counter(word for text in texts for word in text.split())
        kept = sorted(
            (w for w, c in counts.items() if c >= min_count and w not in SPECIALS),
            key=lambda w: (-counts[w], w),
        )
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str, max_tokens: int) -> list[int]:
        """Ids of a cleaned text, truncated to ``max_tokens`` words, then ``<end>``; no ``<start>``."""
        ids = [self._ids.get(word, self.unk) for word in text.split()[:max_tokens]]
        return [*ids, self.end]

    def decode(self, ids: Iterable[int]) -> str:
        words: list[str] = []
        for i in ids:
            if i == self.end:
                break
            if i in (self.pad, self.start):
                continue
            words.append(self.tokens[i] if 0 <= i < len(self.tokens) else UNK)
        return " ".join(words)


def split_sentences(text: str) -> list[str]:
    """Sentences of a decoded draft; both protocols end sentences with a "." token."""
    sentences: list[str] = []
    current: list[str] = []
    for word in text.split():
        if word == ".":
            if current:
                sentences.append(join_cjk(" ".join(current)))
            current = []
        else:
            current.append(word)
    if current:
        sentences.append(join_cjk(" ".join(current)))
    return sentences
