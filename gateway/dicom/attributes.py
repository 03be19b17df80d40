"""Pure extraction of the attributes the index keeps, from a decoded dataset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, BinaryIO

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag, Tag

from gateway.errors import InvalidInstance
from gateway.store.uids import validate_uid


@dataclass(frozen=True)
class InstanceAttributes:
    """What the index records about one instance (patient, study, series and instance levels)."""

    patient_id: str
    issuer_of_patient_id: str
    patient_name: str | None
    patient_birth_date: str | None
    patient_sex: str | None
    study_instance_uid: str
    accession_number: str | None
    study_id: str | None
    study_date: str | None
    study_time: str | None
    referring_physician: str | None
    study_description: str | None
    series_instance_uid: str
    modality: str | None
    body_part: str | None
    laterality: str | None
    series_description: str | None
    series_number: int | None
    sop_class_uid: str
    sop_instance_uid: str
    instance_number: int | None
    view_position: str | None
    image_laterality: str | None
    rows: int | None
    columns: int | None
    window_center: float | None
    window_width: float | None
    #: Who assigned the accession number: IssuerOfAccessionNumberSequence (0008,0051) item's
    #: LocalNamespaceEntityID, else its UniversalEntityID (PS3.3 C.4.10, 10.5 HL7v2 Hierarchic Designator).
    accession_issuer: str | None = None


def _text(ds: Dataset, keyword: str, limit: int = 64) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    text = str(value).strip()
    return text[:limit] or None


def _int(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _first_float(ds: Dataset, keyword: str) -> float | None:
    value: Any = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        if isinstance(value, list | tuple) or (hasattr(value, "__getitem__") and not isinstance(value, str)):
            value = value[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


# The attributes extract_attributes reads; (0028,1051) Window Width has the highest tag of them.
INDEXED_KEYWORDS = (
    "PatientID", "IssuerOfPatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
    "AccessionNumber", "StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyDescription",
    "SeriesInstanceUID", "Modality", "BodyPartExamined", "Laterality", "SeriesDescription", "SeriesNumber",
    "SOPClassUID", "SOPInstanceUID", "InstanceNumber", "ViewPosition", "ImageLaterality", "Rows", "Columns",
    "WindowCenter", "WindowWidth",
)  # fmt: skip
_INDEXED_TAGS: list[BaseTag | int] = [Tag(keyword) for keyword in INDEXED_KEYWORDS]
_LAST_INDEXED = max(_INDEXED_TAGS)


def read_indexed(fp: BinaryIO, transfer_syntax_uid: str) -> Dataset:
    """Decode only the indexed attributes of the data set at ``fp``'s position (not deflated).

    Every other element is skipped by seeking past it, and reading stops after the last indexed tag, so
    the cost does not grow with pixel data or documents. The structure has been walked before
    (:func:`gateway.dicom.structure.check_complete`), so lengths are known to fit.
    """
    implicit = transfer_syntax_uid == "1.2.840.10008.1.2"
    little = transfer_syntax_uid != "1.2.840.10008.1.2.2"
    try:
        return read_dataset(
            fp,
            implicit,
            little,
            stop_when=lambda tag, _vr, _length: tag > _LAST_INDEXED,
            specific_tags=_INDEXED_TAGS,
        )
    except Exception as exc:  # pydicom raises many types on malformed data
        raise InvalidInstance(f"cannot decode dataset: {type(exc).__name__}: {exc}") from exc


def _accession_issuer(ds: Dataset) -> str | None:
    seq = ds.get("IssuerOfAccessionNumberSequence")
    if not seq:
        return None
    item = seq[0]
    return _text(item, "LocalNamespaceEntityID") or _text(item, "UniversalEntityID")


def extract_attributes(ds: Dataset) -> InstanceAttributes:
    """Read the indexed attributes; raise :class:`InvalidInstance` if the dataset cannot be indexed.

    Every element is touched here, inside the caller's error handling, so a malformed value surfaces as
    an ``InvalidInstance`` rather than later in the index.
    """
    try:
        return InstanceAttributes(
            patient_id=_text(ds, "PatientID") or "",
            issuer_of_patient_id=_text(ds, "IssuerOfPatientID") or "",
            patient_name=_text(ds, "PatientName", 324),
            patient_birth_date=_text(ds, "PatientBirthDate", 8),
            patient_sex=_text(ds, "PatientSex", 16),
            study_instance_uid=validate_uid(ds.get("StudyInstanceUID"), what="StudyInstanceUID"),
            accession_number=_text(ds, "AccessionNumber"),
            accession_issuer=_accession_issuer(ds),
            study_id=_text(ds, "StudyID", 16),
            study_date=_text(ds, "StudyDate", 8),
            study_time=_text(ds, "StudyTime", 32),
            referring_physician=_text(ds, "ReferringPhysicianName", 324),
            study_description=_text(ds, "StudyDescription"),
            series_instance_uid=validate_uid(ds.get("SeriesInstanceUID"), what="SeriesInstanceUID"),
            modality=_text(ds, "Modality", 16),
            body_part=_text(ds, "BodyPartExamined"),
            laterality=_text(ds, "Laterality", 16),
            series_description=_text(ds, "SeriesDescription"),
            series_number=_int(ds, "SeriesNumber"),
            sop_class_uid=validate_uid(ds.get("SOPClassUID"), what="SOPClassUID"),
            sop_instance_uid=validate_uid(ds.get("SOPInstanceUID"), what="SOPInstanceUID"),
            instance_number=_int(ds, "InstanceNumber"),
            view_position=_text(ds, "ViewPosition", 16),
            image_laterality=_text(ds, "ImageLaterality", 16),
            rows=_int(ds, "Rows"),
            columns=_int(ds, "Columns"),
            window_center=_first_float(ds, "WindowCenter"),
            window_width=_first_float(ds, "WindowWidth"),
        )
    except InvalidInstance:
        raise
    except Exception as exc:  # pydicom raises many types on malformed values
        raise InvalidInstance(f"cannot decode dataset: {type(exc).__name__}: {exc}") from exc
