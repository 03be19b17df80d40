from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from gateway.align.kos import kos_references


def _image_item(uid: str) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ref.ReferencedSOPInstanceUID = uid
    item = Dataset()
    item.ValueType = "IMAGE"
    item.ReferencedSOPSequence = Sequence([ref])
    return item


def test_kos_references_in_document_order() -> None:
    text = Dataset()
    text.ValueType = "TEXT"
    container = Dataset()
    container.ValueType = "CONTAINER"
    container.ContentSequence = Sequence([_image_item("1.2.3"), _image_item("1.2.1")])
    ds = Dataset()
    ds.ContentSequence = Sequence([text, container, _image_item("1.2.2"), _image_item("1.2.3")])
    assert kos_references(ds) == ["1.2.3", "1.2.1", "1.2.2"]
