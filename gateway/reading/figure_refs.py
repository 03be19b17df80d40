"""Find figure references in report text: labels (图1, Figure 2, Image 3) and explicit positions (Se 3 Im 45).

A pure function over text; the patterns are data in ``mappings/figure_refs.yaml``. Matching runs on NFKC text
so that full-width digits and brackets from OCR still match, and offsets are mapped back to the original text.
"""

from __future__ import annotations

import re
from functools import lru_cache

from gateway.reading.document import FigureRef
from gateway.reading.mappings import RefPattern, figure_refs_mapping
from gateway.reading.text import nfkc_with_offsets


@lru_cache(maxsize=1)
def _compiled() -> tuple[tuple[RefPattern, re.Pattern[str]], ...]:
    return tuple((p, re.compile(p.regex, re.IGNORECASE)) for p in figure_refs_mapping().patterns)


def _int(match: re.Match[str], group: str) -> int | None:
    if group not in match.re.groupindex:
        return None
    value = match.group(group)
    return int(value) if value is not None else None


def find_figure_refs(text: str) -> list[FigureRef]:
    """Every figure reference in ``text``, in text order, with offsets into ``text``."""
    normal, origin = nfkc_with_offsets(text)
    taken: list[tuple[int, int]] = []
    refs: list[FigureRef] = []
    for pattern, regex in _compiled():
        for match in regex.finditer(normal):
            s, e = match.span()
            if any(s < te and ts < e for ts, te in taken):
                continue
            taken.append((s, e))
            start = origin[s]
            end = origin[e - 1] + 1
            number = _int(match, "number")
            refs.append(
                FigureRef(
                    kind=pattern.kind,
                    raw=text[start:end],
                    label=f"{pattern.label}:{number}" if pattern.label and number is not None else None,
                    number=number,
                    series=_int(match, "series"),
                    instance=_int(match, "instance"),
                    start=start,
                    end=end,
                )
            )
    refs.sort(key=lambda r: r.start)
    return refs
