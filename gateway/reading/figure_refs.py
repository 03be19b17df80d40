"""Find figure references in report text: labels (图1, Figure 2B, Figs. 2–3, Image 4) and explicit positions
(Se 3 Im 45, S3 I45, 序列3 第45幅).

A pure function over text; the patterns, list and range marks and panel words are data in
``mappings/figure_refs.yaml``. Matching runs on NFKC text so that full-width digits and brackets from OCR
still match, and offsets are mapped back to the original text.

It is linear in the length of the text: each pattern scans once, a match is checked against earlier ones
through a per-character occupancy map (not against every earlier span), and with a ``limit`` each pattern
stops once it has that many references, since no later one can be among the first ``limit`` in text order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from gateway.reading.document import FigureRef
from gateway.reading.mappings import FigureRefsMapping, RefPattern, figure_refs_mapping
from gateway.reading.text import nfkc_with_offsets


@dataclass(frozen=True)
class _Finder:
    patterns: tuple[tuple[RefPattern, re.Pattern[str]], ...]
    #: a further number after a list or range mark ("–3" in "Figs. 2–3")
    item: re.Pattern[str]
    #: panel words after a number ("(left)", ", left and right")
    panel_run: re.Pattern[str]
    panel_word: re.Pattern[str]
    panel_of: dict[str, str]
    max_range: int


def _word_key(word: str) -> str:
    return re.sub(r"[\s-]+", "", word.lower())


def build_finder(mapping: FigureRefsMapping) -> _Finder:
    flags = re.IGNORECASE
    cont = mapping.continuation
    item = re.compile(
        rf"(?:(?P<range>{cont.range})|(?P<list>{cont.list}))"
        rf"(?P<number>\d+)(?!\d)(?P<panel>[a-d](?![a-z]))?(?!{cont.not_before})",
        flags,
    )
    words = sorted((w for ws in mapping.panels.values() for w in ws), key=len, reverse=True)
    alternatives = "|".join(r"[\s-]*".join(re.escape(part) for part in re.split(r"[\s-]+", w)) for w in words)
    # A word ends at a non-letter; OCR drops spaces, so "leftandright" still counts as two words.
    word = rf"(?:{alternatives})(?:(?![a-z])|(?=and(?:{alternatives})))"
    sep = r"\s*(?:and|&|,|、|和|及|与)\s*"
    run = rf"{word}(?:{sep}{word})*"
    panel_run = re.compile(
        # In brackets: "Fig. 3 (left)", "图3（左）"; or bare, ending the phrase: "Figure 3, left and right."
        rf"\s*[(\[]\s*(?P<inner>{run})\s*(?:panels?\s*)?[)\]]"
        rf"|\s*,?\s*(?P<bare>{run})(?:\s*panels?)?(?=\s*(?:$|[.,;:!?。，；：、)\]]))",
        flags,
    )
    return _Finder(
        patterns=tuple((p, re.compile(p.regex, flags)) for p in mapping.patterns),
        item=item,
        panel_run=panel_run,
        panel_word=re.compile(word, flags),
        panel_of={_word_key(w): letter for letter, ws in mapping.panels.items() for w in ws},
        max_range=cont.max_range,
    )


@lru_cache(maxsize=1)
def _finder() -> _Finder:
    return build_finder(figure_refs_mapping())


def _int(match: re.Match[str], group: str) -> int | None:
    if group not in match.re.groupindex:
        return None
    value = match.group(group)
    return int(value) if value is not None else None


@dataclass
class _Item:
    """One reference in normalised-text offsets."""

    start: int
    end: int
    number: int | None = None
    panel: str | None = None
    series: int | None = None
    instance: int | None = None


def _panel(match: re.Match[str]) -> str | None:
    if "panel" not in match.re.groupindex or match.group("panel") is None:
        return None
    return match.group("panel").upper()


def _continue(finder: _Finder, normal: str, first: _Item, continues: bool) -> list[_Item]:
    """The reference starting with ``first``, extended by further numbers and panel words."""
    items = [first]
    pos = first.end
    while True:
        if continues and (m := finder.item.match(normal, pos)):
            number = int(m.group("number"))
            last = items[-1].number or 0
            if m.group("range") is not None:
                if not last < number <= last + finder.max_range - 1:
                    break  # a descending or too long range: not a list of figures
                items.extend(_Item(m.start("number"), m.end("number"), n) for n in range(last + 1, number))
            items.append(_Item(m.start("number"), m.end(), number, _panel(m)))
            pos = m.end()
            continue
        if items[-1].number is not None and (m := finder.panel_run.match(normal, pos)):
            group = "inner" if m.group("inner") is not None else "bare"
            base = items[-1]
            for k, word in enumerate(finder.panel_word.finditer(normal, m.start(group), m.end(group))):
                letter = finder.panel_of.get(_word_key(word.group(0)))
                if k == 0 and base.panel is None:
                    base.panel, base.end = letter, word.end()
                else:
                    items.append(_Item(word.start(), word.end(), base.number, letter))
            pos = m.end()
            continue
        break
    return items


def figure_refs(text: str, limit: int | None = None) -> tuple[list[FigureRef], bool]:
    """Figure references in ``text`` in text order, at most ``limit``; and whether any were left out."""
    finder = _finder()
    normal, origin = nfkc_with_offsets(text)
    taken = bytearray(len(normal))
    found: list[tuple[RefPattern, _Item]] = []
    truncated = False
    for pattern, regex in finder.patterns:
        count = 0
        for match in regex.finditer(normal):
            s, e = match.span()
            if taken.find(1, s, e) >= 0:
                continue
            if limit is not None and count >= limit:
                truncated = True
                break
            first = _Item(
                s,
                e,
                number=_int(match, "number"),
                panel=_panel(match),
                series=_int(match, "series"),
                instance=_int(match, "instance"),
            )
            items = [first]
            if pattern.kind == "figure":
                items = _continue(finder, normal, first, pattern.continues)
            end = max(it.end for it in items)
            taken[s:end] = b"\x01" * (end - s)
            found.extend((pattern, it) for it in items)
            count += len(items)
    found.sort(key=lambda f: f[1].start)
    if limit is not None and len(found) > limit:
        truncated = True
        del found[limit:]
    refs: list[FigureRef] = []
    for pattern, it in found:
        start = origin[it.start]
        end = origin[it.end - 1] + 1
        refs.append(
            FigureRef(
                kind=pattern.kind,
                raw=text[start:end],
                label=f"{pattern.label}:{it.number}" if pattern.label and it.number is not None else None,
                number=it.number,
                series=it.series,
                instance=it.instance,
                panel=it.panel,
                start=start,
                end=end,
            )
        )
    return refs, truncated


def find_figure_refs(text: str, limit: int | None = None) -> list[FigureRef]:
    """Every figure reference in ``text`` (or the first ``limit``) in text order, with offsets."""
    return figure_refs(text, limit)[0]
