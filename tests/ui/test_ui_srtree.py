"""An SR report's content tree for the review page (gateway.ui.srtree): items, relationships, references."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from gateway.ui import srtree


def _code(meaning: str) -> Sequence:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "1", "99T", meaning
    return Sequence([code])


def _item(kind: str, name: str, rel: str = "CONTAINS", **values: object) -> Dataset:
    item = Dataset()
    item.RelationshipType, item.ValueType = rel, kind
    item.ConceptNameCodeSequence = _code(name)
    for key, value in values.items():
        setattr(item, key, value)
    return item


def _sr() -> Dataset:
    ds = Dataset()
    ds.ConceptNameCodeSequence = _code("Imaging Report")
    image = _item("IMAGE", "Source image", "INFERRED FROM")
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.5"
    image.ReferencedSOPSequence = Sequence([ref])
    finding = _item("TEXT", "Finding", TextValue="Nodule on Se 2 Im 5.")
    finding.ContentSequence = Sequence([image])
    findings = _item("CONTAINER", "Findings")
    findings.ContentSequence = Sequence([finding])
    ds.ContentSequence = Sequence([findings, _item("TEXT", "Impression", TextValue="Small nodule.")])
    return ds


def test_content_tree_keeps_structure_values_and_image_references() -> None:
    root = srtree.content_tree(_sr())
    assert root.name == "Imaging Report"
    findings, impression = root.children
    assert (findings.kind, findings.name) == ("CONTAINER", "Findings")
    [finding] = findings.children
    assert (finding.name, finding.value) == ("Finding", "Nodule on Se 2 Im 5.")
    [image] = finding.children
    assert (image.relationship, image.kind, image.references) == ("INFERRED FROM", "IMAGE", ["1.2.3.5"])
    assert impression.value == "Small nodule."


def test_a_hostile_tree_is_cut() -> None:
    ds = Dataset()
    node = ds
    for _ in range(srtree.MAX_DEPTH + 10):
        child = _item("CONTAINER", "x")
        node.ContentSequence = Sequence([child])
        node = child
    root = srtree.content_tree(ds)
    depth, n = 0, root
    while n.children:
        n, depth = n.children[0], depth + 1
    assert depth == srtree.MAX_DEPTH
