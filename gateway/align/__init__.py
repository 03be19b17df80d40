"""Linking report sentences to the study's image instances (issue 4).

:func:`align` is pure: it takes the read document, the study's instances as :class:`InstanceInfo` and, when
figures must be matched, a callable that renders instances; it returns an :class:`Alignment`.
"""

from gateway.align.aligner import align, document_sentences
from gateway.align.model import Alignment, AlignOptions, InstanceInfo, Link, Sentence

__all__ = ["AlignOptions", "Alignment", "InstanceInfo", "Link", "Sentence", "align", "document_sentences"]
