"""Structured findings from report sentences: lesion, site and laterality, size, count, descriptors,
presence, uncertainty, and the follow-up recommendation. Rules and lexicons are data
(``mappings/structured_findings.yaml``); see ``docs/structured-findings.md``."""

from gateway.structure.extract import Extractor, extract, extractor, normalise
from gateway.structure.lexicon import Lexicon, default_lexicon, load_lexicon
from gateway.structure.model import Extraction, Finding, Interval, Recommendation, Site, Size

__all__ = [
    "Extraction",
    "Extractor",
    "Finding",
    "Interval",
    "Lexicon",
    "Recommendation",
    "Site",
    "Size",
    "default_lexicon",
    "extract",
    "extractor",
    "load_lexicon",
    "normalise",
]
