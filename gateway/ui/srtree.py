"""An SR report's content tree as the review page shows it (PS3.3 C.17.3, SR Document Content Module).

A structured report has no page to draw, so the page column shows its tree instead: each content item with
its relationship (CONTAINS, INFERRED FROM, ...), concept name and value, and for IMAGE and COMPOSITE items
the instances they reference, which the page turns into thumbnails. Pure: a dataset in, plain data out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.reading.sr import _meaning, _value

#: Deeper trees are cut here (an SR nests a few levels; a hostile one could nest thousands).
MAX_DEPTH = 32
MAX_ITEMS = 5000


@dataclass
class SrNode:
    relationship: str
    kind: str
    name: str
    value: str
    references: list[str] = field(default_factory=list)  # SOP Instance UIDs
    children: list[SrNode] = field(default_factory=list)


def _references(item: Any) -> list[str]:
    out = []
    for ref in item.get("ReferencedSOPSequence") or []:
        uid = str(ref.get("ReferencedSOPInstanceUID", "")).strip()
        if uid:
            out.append(uid)
    return out


def content_tree(ds: Any) -> SrNode:
    """The root (the document title) and every content item below it, in order."""
    budget = [MAX_ITEMS]

    def walk(items: Any, depth: int) -> list[SrNode]:
        nodes: list[SrNode] = []
        for item in items or []:
            if budget[0] <= 0 or depth > MAX_DEPTH:
                break
            budget[0] -= 1
            kind = str(item.get("ValueType", ""))
            node = SrNode(
                relationship=str(item.get("RelationshipType", "")),
                kind=kind,
                name=_meaning(item),
                value=_value(item),
                references=_references(item) if kind in ("IMAGE", "COMPOSITE", "WAVEFORM") else [],
            )
            node.children = walk(item.get("ContentSequence"), depth + 1)
            nodes.append(node)
        return nodes

    root = SrNode("", "CONTAINER", _meaning(ds) or "Structured report", "")
    root.children = walk(ds.get("ContentSequence"), 1)
    return root
