"""Key Object Selection documents (PS3.3 A.35.4, TID 2010): the radiologist's key images, in order."""

from __future__ import annotations

from pydicom import Dataset


def kos_references(ds: Dataset) -> list[str]:
    """SOP Instance UIDs of the IMAGE content items of a KOS, in document order, without repeats."""
    out: list[str] = []

    def walk(items: Dataset) -> None:
        for item in items.get("ContentSequence", []):
            if item.get("ValueType") == "IMAGE":
                for ref in item.get("ReferencedSOPSequence", []):
                    uid = str(ref.get("ReferencedSOPInstanceUID", ""))
                    if uid and uid not in out:
                        out.append(uid)
            walk(item)

    walk(ds)
    return out
