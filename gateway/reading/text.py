"""Text normalisation shared by the finders: NFKC with a map back to the original offsets."""

from __future__ import annotations

import re
import unicodedata
from array import array
from collections.abc import Sequence

# An ASCII run, or one other character (normalised on its own so that offsets stay exact).
_RUNS = re.compile(r"[\x00-\x7f]+|[^\x00-\x7f]")
_CJK = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f]")


def nfkc_with_offsets(text: str) -> tuple[str, Sequence[int]]:
    """NFKC-normalise ``text`` one character at a time, without accents.

    Returns the normalised text and, for each of its characters, the index of the original character it came
    from, so that a match in normalised text maps back to exact offsets in the original. Normalising per
    character loses only cross-character compositions, which reports do not rely on. Runs of ASCII are
    already normal and are copied whole; the offsets are a compact integer array.
    """
    origin = array("q")
    if text.isascii():
        origin.extend(range(len(text)))
        return text, origin
    out: list[str] = []
    for match in _RUNS.finditer(text):
        start = match.start()
        run = match.group(0)
        if run.isascii():
            out.append(run)
            origin.extend(range(start, start + len(run)))
            continue
        # Accents are dropped too: OCR reads "Se" as "Sé" now and then.
        decomposed = unicodedata.normalize("NFKD", run)
        stripped = "".join(c for c in decomposed if not unicodedata.combining(c)) or decomposed
        normal = unicodedata.normalize("NFKC", stripped)
        out.append(normal)
        origin.extend([start] * len(normal))
    return "".join(out), origin


def compact(text: str) -> str:
    """NFKC, whitespace removed: the form used for comparing text (CER, headings)."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


def is_cjk(char: str) -> bool:
    return bool(_CJK.match(char))


def join_lines(left: str, right: str) -> str:
    """Join two line texts of one paragraph: no space between CJK, a space between words, de-hyphenated."""
    if not left:
        return right
    if not right:
        return left
    a, b = left[-1], right[0]
    if is_cjk(a) or is_cjk(b):
        return left + right
    if a == "-" and len(left) > 1 and left[-2].isalpha() and b.islower():
        return left[:-1] + right
    return left + " " + right
