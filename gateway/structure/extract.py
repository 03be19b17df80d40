"""Findings, sites, sizes, negation, uncertainty and recommendations from one report sentence.

A pure function of the sentence and the lexicon (``mappings/structured_findings.yaml``):

1. the text is normalised character by character (NFKC where it keeps one character, lower case), so that
   offsets stay those of the original sentence; the sentence is cut into clauses at the terminators
   ("，", ";", "but", "." not between digits);
2. finding terms and site patterns are found, longest first, without overlaps; a site inside a finding term
   ("pleural" in "pleural effusion") gives way to the finding's default site;
3. a finding is *absent* when a pre-negation cue comes before it in its clause ("未见淋巴结肿大") or a
   post-negation cue after it ("has resolved"); a negation carries over a comma only into a clause that starts
   with a finding or "or"/"及" and states nothing of its own ("no effusion, pneumothorax or consolidation").
   Pseudo-cues ("无明显变化", "no change") are blanked first. It is *uncertain* when an uncertainty cue
   ("考虑", "可能", "cannot exclude") stands in its clause;
4. the site is the nearest compatible site in the clause, else (for a present finding) the nearest in an
   earlier clause, else the finding's default site; laterality is the site's own or the side word before it;
5. sizes (one to three dimensions with mm/cm/毫米/厘米, "约", ranges) go to the nearest present finding of
   their clause, else the previous one; descriptors likewise; counts are read just before the term;
6. a recommendation needs an action ("复查", "follow-up", "biopsy") and either advice ("建议", "recommend")
   or an interval ahead ("3个月后", "in 3 months"); "3个月前" is a comparison.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from gateway.structure.lexicon import Lexicon, Side, default_lexicon
from gateway.structure.model import Extraction, Finding, Interval, Recommendation, Site, Size

__all__ = ["Extractor", "extract", "extractor", "normalise"]

_NUM = r"\d+(?:\.\d+)?"
_SEP = r"\s*(?:[x×*]|by)\s*"
_BLANK = "\x00"
#: A report sentence is short; a longer one (a paragraph the splitter could not cut, or hostile input) is read
#: up to here only, so that extraction stays fast.
MAX_CHARS = 2000


def normalise(text: str) -> str:
    """NFKC and lower case, one character at a time, so that every offset is the original's."""
    out = []
    for ch in text:
        folded = unicodedata.normalize("NFKC", ch)
        if len(folded) != 1:
            folded = ch
        lower = folded.lower()
        out.append(lower if len(lower) == 1 else folded)
    return "".join(out)


def _is_latin(term: str) -> bool:
    return term.isascii()


def _term_pattern(term: str) -> str:
    """A term as a regex: Latin terms as whole words, Chinese terms as written."""
    escaped = re.escape(term.lower())
    if _is_latin(term) and term[:1].isalnum():
        escaped = r"(?<![a-z0-9])" + escaped
    if _is_latin(term) and term[-1:].isalnum():
        escaped += r"(?![a-z])"
    return escaped


def _alternation(terms: Iterable[str], *, regex: bool = False) -> re.Pattern[str]:
    parts = []
    for term in sorted(set(terms), key=len, reverse=True):
        if regex:
            body = term.lower()
            if _is_latin(term):
                body = r"(?<![a-z])(?:" + body + r")(?![a-z])"
            parts.append(body)
        else:
            parts.append(_term_pattern(term))
    return re.compile("|".join(parts) if parts else r"(?!x)x")


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    key: str
    text: str


def _non_overlapping(spans: Iterable[_Span]) -> list[_Span]:
    """Longest first, then leftmost; a span overlapping a kept one drops."""
    kept: list[_Span] = []
    for span in sorted(spans, key=lambda s: (-(s.end - s.start), s.start)):
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


def _find(pattern: re.Pattern[str], text: str, key: str) -> list[_Span]:
    return [_Span(m.start(), m.end(), key, m.group(0)) for m in pattern.finditer(text) if m.end() > m.start()]


class Extractor:
    """The lexicon compiled once; :meth:`extract` is then a pure function of the sentence."""

    def __init__(self, lexicon: Lexicon) -> None:
        self.lexicon = lexicon
        lx = lexicon
        self._findings = {k: _alternation(v.all()) for k, v in lx.findings.items()}
        self._own_negation = {k: _alternation(v.negated_by) for k, v in lx.findings.items() if v.negated_by}
        self._sites = {k: _alternation(v.all(), regex=True) for k, v in lx.sites.items()}
        self._segments = _alternation(lx.segments.all(), regex=True)
        self._descriptors = {k: _alternation(v.all()) for k, v in lx.descriptors.items()}
        c = lx.cues
        self._neg_pre = _alternation(c.negation_pre.all())
        self._neg_post = _alternation(c.negation_post.all())
        self._pseudo = _alternation(c.pseudo.all())
        self._uncertain = _alternation(c.uncertainty.all())
        self._continuation = _alternation(c.continuation.all())
        self._existence = _alternation(c.existence.all())
        terms = []
        for term in c.terminators.all():
            if term == ".":
                terms.append(r"\.(?!\d)")
            else:
                terms.append(re.escape(term.lower()))
        self._terminators = re.compile("|".join(sorted(terms, key=len, reverse=True)))
        self._side_words: list[tuple[str, Side]] = sorted(
            ((w.lower(), side) for side, e in lx.laterality.items() for w in e.all()),
            key=lambda x: -len(x[0]),
        )
        units = {u.lower(): dim for dim, words in lx.sizes.units.items() for u in words}
        self._unit_scale = {u: (10.0 if dim == "cm" else 1.0) for u, dim in units.items()}
        unit = "(?:" + "|".join(re.escape(u) for u in sorted(units, key=len, reverse=True)) + r")(?![a-z])"
        dim = rf"({_NUM})\s*({unit})?"
        self._size = re.compile(
            rf"(?<![\d.a-z])(?:({_NUM})\s*(?:-|~|–|至|到)\s*)?{dim}(?:{_SEP}{dim})?(?:{_SEP}{dim})?"
        )
        self._approx = _alternation(lx.sizes.approximate)
        self._not_size = _alternation(lx.sizes.not_a_size)
        words = {**lx.counts.words["zh"], **lx.counts.words["en"]}
        self._count_words = words
        classifiers = "|".join(map(re.escape, lx.counts.classifiers))
        zh_words = "|".join(map(re.escape, sorted(lx.counts.words["zh"], key=len, reverse=True)))
        # A digit counts only with a classifier ("3枚"): "12mm结节" is a size, not twelve nodules.
        self._count_zh = re.compile(
            rf"(?:(\d+)\s*(?:{classifiers})|({zh_words})\s*(?:{classifiers})?)\S{{0,4}}$"
        )
        en_words = "|".join(map(re.escape, sorted(lx.counts.words["en"], key=len, reverse=True)))
        self._count_en = re.compile(rf"(?<![a-z0-9.])(\d+|{en_words})(?![a-z0-9])(?:\s+[a-z-]+){{0,3}}\s*$")
        r = lx.recommendations
        self._rec_actions = [(k, _alternation(v.all())) for k, v in r.actions.items()]
        self._advice = _alternation(r.advice.all())
        self._past = _alternation(r.past)
        self._modalities = [(k, _alternation(v.all())) for k, v in r.modalities.items()]
        self._fixed = {k.lower(): v for k, v in r.fixed_intervals.items()}
        self._fixed_re = _alternation(self._fixed)
        numbers = {**r.numbers["zh"], **r.numbers["en"]}
        self._numbers = {k.lower(): v for k, v in numbers.items()}
        num_words = "|".join(re.escape(k) for k in sorted(self._numbers, key=len, reverse=True))
        unit_terms = {w.lower(): u for u, p in r.units.items() for w in p.all()}
        self._interval_units = unit_terms
        unit_alt = "|".join(re.escape(u) for u in sorted(unit_terms, key=len, reverse=True))
        self._interval = re.compile(
            rf"(?<![a-z0-9.])({_NUM}|{num_words})(?:\s*(?:-|~|–|至|到|to)\s*{_NUM})?[\s-]*({unit_alt})(?![a-z])"
        )

    # -- pieces -----------------------------------------------------------------------------------------

    def _clauses(self, text: str) -> list[int]:
        """Start offsets of the clauses (the first is 0)."""
        return [0, *(m.end() for m in self._terminators.finditer(text))]

    def _blank(self, text: str, pattern: re.Pattern[str]) -> str:
        chars = list(text)
        for m in pattern.finditer(text):
            for i in range(m.start(), m.end()):
                chars[i] = _BLANK
        return "".join(chars)

    def _side_before(self, text: str, start: int, lower_bound: int) -> Side | None:
        """The side word just before ``start`` (a few characters in Chinese, three words in English)."""
        window = text[max(lower_bound, start - 24) : start]
        best: tuple[int, Side] | None = None
        for word, side in self._side_words:
            pattern = rf"(?<![a-z])({re.escape(word)})(?![a-z])" if word.isascii() else re.escape(word)
            for m in re.finditer(pattern, window):
                gap = window[m.end() :]
                too_far = len(gap.split()) > 3 if word.isascii() else len(gap) > 4
                if too_far or re.search(r"[,;.，；。]", gap):
                    continue
                if best is None or m.end() > best[0]:
                    best = (m.end(), side)
        return best[1] if best else None

    def _sites_in(self, text: str, findings: Sequence[_Span]) -> list[tuple[_Span, Site]]:
        spans = []
        for key, pattern in self._sites.items():
            spans.extend(_find(pattern, text, key))
        spans = [
            s for s in _non_overlapping(spans) if all(s.end <= f.start or s.start >= f.end for f in findings)
        ]
        segments = _find(self._segments, text, "segment")
        out = []
        for span in spans:
            entry = self.lexicon.sites[span.key]
            side: Side | None = entry.laterality
            if side is None and entry.lateralizable:
                side = self._side_in(span.text) or self._side_before(text, span.start, 0)
            segment = None
            if "lobe" in span.key:
                for seg in segments:
                    gap = text[span.end : seg.start] if seg.start >= span.end else text[seg.end : span.start]
                    if gap.strip() in ("", "of the", "of"):
                        segment = seg.text
                        break
            site = Site(span.key, entry.code, entry.display, side, segment, span.text)
            out.append((span, site))
        return out

    def _side_in(self, phrase: str) -> Side | None:
        for word, side in self._side_words:
            if word.isascii():
                if re.match(rf"{re.escape(word)}(?![a-z])", phrase):
                    return side
            elif phrase.startswith(word):
                return side
        return None

    def _sizes(self, text: str, clauses: Sequence[int]) -> list[tuple[int, int, Size]]:
        out = []
        for m in self._size.finditer(text):
            groups = m.groups()
            lower = groups[0]
            dims = [(groups[i], groups[i + 1]) for i in (1, 3, 5) if groups[i] is not None]
            units = [u for _, u in dims if u]
            if not units:
                continue
            clause_start = clauses[bisect_right(clauses, m.start()) - 1]
            before = text[max(clause_start, m.start() - 8) : m.start()]
            if self._not_size.search(before):
                continue
            values: list[float] = []
            last = units[-1]
            for i, (number, unit) in enumerate(dims):
                # A dimension without its unit takes the next one given ("1.2 × 0.9 cm").
                own = unit or next((u for _, u in dims[i:] if u), last)
                values.append(round(float(number) * self._unit_scale[own], 2))
            approx = bool(self._approx.search(text[max(clause_start, m.start() - 12) : m.start()]))
            size = Size(tuple(values), m.group(0).strip(), approx, lower is not None)
            out.append((m.start(), m.end(), size))
        return out

    def _count(self, text: str, clause_start: int, start: int) -> int | None:
        # Sizes are not counts: "a 12 mm nodule" is one nodule, "12mm结节" none counted.
        before = self._size.sub(
            lambda m: " " if any(m.groups()[2::2]) else m.group(0), text[clause_start:start]
        )
        m = self._count_en.search(before.rstrip())
        if m:
            word = m.group(1)
            return int(word) if word.isdigit() else self._count_words.get(word)
        m = self._count_zh.search(before)
        if m:
            word = m.group(1) or m.group(2)
            if word and word.isdigit():
                return int(word)
            return self._count_words.get(word or "")
        return None

    # -- the sentence -----------------------------------------------------------------------------------

    def extract(self, sentence: str) -> Extraction:
        sentence = sentence[:MAX_CHARS]
        text = normalise(sentence)
        clauses = self._clauses(text)

        def clause_of(pos: int) -> int:
            return bisect_right(clauses, pos) - 1

        def clause_end(i: int) -> int:
            return clauses[i + 1] if i + 1 < len(clauses) else len(text)

        mentions: list[_Span] = []
        for key, pattern in self._findings.items():
            mentions.extend(_find(pattern, text, key))
        mentions = _non_overlapping(mentions)
        sites = self._sites_in(text, mentions)
        neg_text = self._blank(text, self._pseudo)

        # Negation scopes: (start, end) ranges a pre-cue reaches, continued across "，" into lists.
        scopes: list[tuple[int, int, str]] = []
        for m in self._neg_pre.finditer(neg_text):
            if _BLANK in m.group(0):
                continue
            i = clause_of(m.start())
            end = clause_end(i)
            while i + 1 < len(clauses):
                nxt_start, nxt_end = clauses[i + 1], clause_end(i + 1)
                body = text[nxt_start:nxt_end]
                lead = len(body) - len(body.lstrip())
                first = next((f for f in mentions if nxt_start <= f.start < nxt_end), None)
                # "no effusion, focal consolidation or nodule": a modifier or two may come first.
                head = text[nxt_start + lead : first.start] if first is not None else ""
                starts_with_finding = first is not None and (
                    len(head.split()) <= 2 if head.isascii() else len(head) <= 2
                )
                starts_with_or = bool(self._continuation.match(body.lstrip()))
                states = (
                    self._existence.search(body)
                    or any(nxt_start <= s.start < nxt_end for s, _ in sites)
                    or re.search(r"\d", body)
                )
                if (starts_with_finding or starts_with_or) and not states:
                    end = nxt_end
                    i += 1
                else:
                    break
            scopes.append((m.end(), end, m.group(0).strip()))
        posts = [(m.start(), m.group(0).strip()) for m in self._neg_post.finditer(neg_text)]
        uncertain = [(m.start(), m.group(0).strip()) for m in self._uncertain.finditer(text)]

        findings: list[Finding] = []
        for mention in mentions:
            entry = self.lexicon.findings[mention.key]
            i = clause_of(mention.start)
            c_start, c_end = clauses[i], clause_end(i)
            cues: list[str] = []
            presence = "present"
            for start, end, cue in scopes:
                if start <= mention.start < end:
                    presence, cues = "absent", [cue]
            own = self._own_negation.get(mention.key)
            hit = own.search(text, mention.end, c_end) if own is not None else None
            if presence == "present" and hit is not None:
                presence, cues = "absent", [hit.group(0).strip()]
            if presence == "present":
                for pos, cue in posts:
                    if mention.end <= pos < c_end:
                        presence, cues = "absent", [cue]
                        break
            hedges = [cue for pos, cue in uncertain if c_start <= pos < c_end]
            site = self._site_for(text, mention, entry.regions, sites, clauses, presence == "present")
            if site is None and entry.default_site:
                default = self.lexicon.sites[entry.default_site]
                side = self._side_before(text, mention.start, c_start) or self._side_in(mention.text)
                site = Site(entry.default_site, default.code, default.display, side, None, "")
            elif site is not None and site.laterality is None:
                entry_site = self.lexicon.sites[site.key]
                if entry_site.lateralizable:
                    side = self._side_before(text, mention.start, c_start)
                    if side:
                        site = replace(site, laterality=side)
            findings.append(
                Finding(
                    kind=mention.key,
                    code=entry.code,
                    display=entry.display,
                    text=sentence[mention.start : mention.end],
                    start=mention.start,
                    end=mention.end,
                    presence="absent" if presence == "absent" else "present",
                    uncertain=bool(hedges),
                    site=site,
                    count=self._count(text, c_start, mention.start),
                    cues=tuple(cues + hedges),
                )
            )

        findings, loose = self._attach_sizes(text, clauses, findings)
        findings = self._attach_descriptors(text, neg_text, clauses, findings)
        return Extraction(sentence, tuple(findings), self._recommendation(sentence, text), tuple(loose))

    def _site_for(
        self,
        text: str,
        mention: _Span,
        regions: Sequence[str],
        sites: Sequence[tuple[_Span, Site]],
        clauses: Sequence[int],
        present: bool,
    ) -> Site | None:
        def fits(site: Site) -> bool:
            return "any" in regions or self.lexicon.sites[site.key].region in regions

        clause = bisect_right(clauses, mention.start) - 1
        same = [(s, site) for s, site in sites if bisect_right(clauses, s.start) - 1 == clause and fits(site)]
        if same:

            def distance(item: tuple[_Span, Site]) -> tuple[int, int]:
                s = item[0]
                gap = mention.start - s.end if s.end <= mention.start else s.start - mention.end
                return (gap, 0 if s.end <= mention.start else 1)

            return min(same, key=distance)[1]
        if present:
            earlier = [(s, site) for s, site in sites if s.end <= clauses[clause] and fits(site)]
            if earlier:
                return earlier[-1][1]
        return None

    def _attach_sizes(
        self, text: str, clauses: Sequence[int], findings: list[Finding]
    ) -> tuple[list[Finding], list[Size]]:
        loose: list[Size] = []
        present = [i for i, f in enumerate(findings) if f.presence == "present"]
        for start, end, size in self._sizes(text, clauses):
            clause = bisect_right(clauses, start) - 1
            same = [i for i in present if bisect_right(clauses, findings[i].start) - 1 == clause]
            target: int | None = None
            if same:
                target = min(
                    same,
                    key=lambda i: (
                        start - findings[i].end if findings[i].end <= start else findings[i].start - end
                    ),
                )
            else:
                before = [i for i in present if findings[i].end <= start]
                after = [i for i in present if findings[i].start >= end]
                target = before[-1] if before else (after[0] if after else None)
            if target is None or findings[target].size is not None:
                loose.append(size)
                continue
            findings[target] = replace(findings[target], size=size)
        return findings, loose

    def _attach_descriptors(
        self, text: str, neg_text: str, clauses: Sequence[int], findings: list[Finding]
    ) -> list[Finding]:
        spans: list[_Span] = []
        for key, pattern in self._descriptors.items():
            spans.extend(_find(pattern, text, key))
        present = [i for i, f in enumerate(findings) if f.presence == "present"]
        if not present:
            return findings
        extra: dict[int, list[str]] = {}
        for span in _non_overlapping(spans):
            clause = bisect_right(clauses, span.start) - 1
            before = text[clauses[clause] : span.start]
            negated = bool(self._neg_pre.search(before[-6:] if not before.isascii() else before[-16:]))
            same = [i for i in present if bisect_right(clauses, findings[i].start) - 1 == clause]
            if same:
                target = min(same, key=lambda i: abs(findings[i].start - span.start))
            else:
                earlier = [i for i in present if findings[i].end <= span.start]
                if not earlier:
                    continue
                target = earlier[-1]
            extra.setdefault(target, []).append(("not_" if negated else "") + span.key)
        for i, words in extra.items():
            findings[i] = replace(findings[i], descriptors=tuple(dict.fromkeys(words)))
        return findings

    def _recommendation(self, sentence: str, text: str) -> Recommendation | None:
        action = None
        for key, pattern in self._rec_actions:
            if pattern.search(text):
                action = key
                break
        if action is None:
            return None
        interval: Interval | None = None
        for m in self._interval.finditer(text):
            after = text[m.end() : m.end() + 6]
            if self._past.match(after.lstrip()) or self._past.match(after):
                continue
            word = m.group(1)
            value = float(word) if re.fullmatch(_NUM, word) else self._numbers.get(word)
            if value is None:
                continue
            unit = self._interval_units[m.group(2)]
            interval = Interval(value, unit)
            break
        if interval is None:
            fixed = self._fixed_re.search(text)
            if fixed:
                f = self._fixed[fixed.group(0)]
                interval = Interval(f.value, f.unit)
        if interval is None and not self._advice.search(text):
            return None
        if interval is not None and interval.unit == "a" and interval.value == 0.5:
            interval = Interval(6.0, "mo")
        modality = None
        for key, pattern in self._modalities:
            if pattern.search(text):
                modality = key
                break
        return Recommendation(action, sentence.strip(), interval, modality)


@lru_cache(maxsize=1)
def extractor() -> Extractor:
    """The extractor over the default lexicon, compiled once."""
    return Extractor(default_lexicon())


def extract(sentence: str) -> Extraction:
    """Structured findings of one sentence, with the default lexicon."""
    return extractor().extract(sentence)
