"""Linking report sentences to the study's image instances.

:func:`align` is pure: it takes the read document, the study's instances as :class:`InstanceInfo` and, when
figures must be matched, a callable that renders instances (as images, or as :class:`Rendering` with their
stored values so that other windows can be tried); it returns an :class:`Alignment`.
"""

from gateway.align.aligner import align, document_sentences
from gateway.align.figures import Rendering
from gateway.align.model import Alignment, AlignOptions, InstanceInfo, Link, Sentence

__all__ = [
    "AlignOptions",
    "Alignment",
    "InstanceInfo",
    "Link",
    "Rendering",
    "Sentence",
    "align",
    "document_sentences",
]
