"""Splitting report paragraphs into sentences.

Chinese reports end sentences with 。；！？ (full width); English ones with . ; ! ? followed by a space or the
end. A full stop between digits (3.5 cm), after a known abbreviation (Fig., Se., Im.), or inside a figure
reference span is not a boundary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gateway.align.model import Sentence

_CJK_END = "。；！？"
_ASCII_END = ".;!?"
_ABBREV = re.compile(r"(?:^|[\s(（])(?:fig|figs|se|ser|im|img|no|vs|dr|approx|e\.g|i\.e|cf|st|mr|ms)$", re.I)


def _protection(spans: Iterable[tuple[int, int]], n: int) -> bytearray:
    """A mask of the positions inside reference spans: linear in the text and the spans, however many."""
    mask = bytearray(n)
    for s, e in spans:
        s, e = max(0, s), min(n, e)
        if e > s:
            mask[s:e] = b"\x01" * (e - s)
    return mask


def split_sentences(
    text: str,
    *,
    paragraph: int = 0,
    section: str | None = None,
    protect: Iterable[tuple[int, int]] = (),
) -> list[Sentence]:
    """The sentences of ``text``; whitespace-only pieces are dropped, offsets point into ``text``."""
    n = len(text)
    protected = _protection(protect, n)
    cuts: list[int] = []
    i = 0
    while i < n:
        ch = text[i]
        end: int | None = None
        if ch == "\n":
            end = i + 1
        elif ch in _CJK_END and not protected[i]:
            end = i + 1
            while end < n and text[end] in _CJK_END + "”」』)）":
                end += 1
        elif ch in _ASCII_END and not protected[i]:
            nxt = text[i + 1] if i + 1 < n else ""
            prev = text[i - 1] if i > 0 else ""
            if (ch == "." and prev.isdigit() and nxt.isdigit()) or (
                ch == "." and _ABBREV.search(text[max(0, i - 8) : i])
            ):
                end = None
            elif nxt == "" or nxt.isspace() or ord(nxt) > 0x2E7F:
                end = i + 1
                while end < n and text[end] in _ASCII_END + "\"')":
                    end += 1
        if end is not None:
            cuts.append(end)
            i = end
        else:
            i += 1
    if not cuts or cuts[-1] != n:
        cuts.append(n)
    out: list[Sentence] = []
    start = 0
    for cut in cuts:
        piece = text[start:cut]
        lead = len(piece) - len(piece.lstrip())
        stripped = piece.strip()
        if stripped:
            s = start + lead
            out.append(Sentence(paragraph, len(out), s, s + len(stripped), stripped, section))
        start = cut
    return out
