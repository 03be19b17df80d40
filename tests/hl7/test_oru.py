"""ORU^R01 building (pure): segments, statuses, escaping, character sets, links and the PDF."""

from __future__ import annotations

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from publication import PDF, STUDY, publication

from gateway.hl7.errors import Hl7EncodingError, Hl7Error
from gateway.hl7.escape import escape, unescape
from gateway.hl7.oru import OruOptions, build_oru, pdf_bytes


def _segments(er7: str) -> list[list[str]]:
    return [s.split("|") for s in er7.split("\r") if s]


def _obx(er7: str) -> list[list[str]]:
    return [s for s in _segments(er7) if s[0] == "OBX"]


def test_structure_and_identifiers() -> None:
    er7 = build_oru(publication(), OruOptions(message_id="MID1", receiving_application="EMR"))
    msg = parse_message(er7, find_groups=True, validation_level=VALIDATION_LEVEL.STRICT)
    assert msg.validate()
    segs = {s[0]: s for s in _segments(er7)}
    assert segs["MSH"][8] == "ORU^R01^ORU_R01" and segs["MSH"][9] == "MID1" and segs["MSH"][11] == "2.5.1"
    assert segs["MSH"][17] == "UNICODE UTF-8"
    assert segs["PID"][3] == "PAT-7^^^&1.2.3.4&ISO^MR"
    assert segs["PID"][5] == "Invented^Person" and segs["PID"][7] == "19700203" and segs["PID"][8] == "F"
    obr = segs["OBR"]
    assert obr[2] == "PL-1" and obr[3] == "FI-1" and obr[18] == "ACC-7" and obr[25] == "F"
    assert obr[4] == "18748-4^Diagnostic imaging study^LN"
    assert segs["ORC"][1] == "RE" and segs["ORC"][2] == "PL-1"


def test_one_obx_per_sentence_with_sections_and_links() -> None:
    er7 = build_oru(publication(), OruOptions(message_id="M", wado_base_url="https://pacs.example/dicomweb"))
    obx = _obx(er7)
    text = [(o[2], o[3].split("^")[0], o[4], unescape(o[5])) for o in obx if o[2] == "TX"]
    assert text == [
        ("TX", "59776-5", "1.1", "右肺上叶见结节（Se 2 Im 5）。"),
        ("TX", "59776-5", "1.2", "Pleura | normal ^ & ~ \\ fine."),
        ("TX", "19005-8", "2.1", "另见图1。"),
    ]
    links = [(o[4], o[5]) for o in obx if o[2] == "RP"]
    assert links == [
        (
            "1.1",
            f"https://pacs.example/dicomweb/studies/{STUDY}/series/{STUDY}.2/instances/{STUDY}.2.5"
            "/rendered^WADO^IM^JPEG",
        ),
        (
            "2.1",
            f"https://pacs.example/dicomweb/studies/{STUDY}/series/{STUDY}.2/instances/{STUDY}.2.3"
            "/rendered^WADO^IM^JPEG",
        ),
    ]
    assert [o[5] for o in obx if o[3].startswith("113014")] == [STUDY]
    assert all(o[11] == "F" for o in obx)


def test_links_by_uid_and_own_urls_escaped() -> None:
    er7 = build_oru(publication(), OruOptions(message_id="M", image_links="uid"))
    assert [o[5] for o in _obx(er7) if o[2] == "RP"] == [
        f"{STUDY}.2.5^DICOM^IM^DICOM",
        f"{STUDY}.2.3^DICOM^IM^DICOM",
    ]
    er7 = build_oru(publication(), OruOptions(message_id="M"))
    first = next(o[5] for o in _obx(er7) if o[2] == "RP")
    assert "window=lung\\T\\size=512" in first  # & is HL7's subcomponent separator
    assert not [
        o
        for o in _obx(build_oru(publication(), OruOptions(message_id="M", image_links="none")))
        if o[2] == "RP"
    ]


@pytest.mark.parametrize(
    ("status", "code"), [("preliminary", "P"), ("final", "F"), ("amended", "C"), ("corrected", "C")]
)
def test_result_status_follows_report(status: str, code: str) -> None:
    er7 = build_oru(publication(status), OruOptions(message_id="M"))
    obr = next(s for s in _segments(er7) if s[0] == "OBR")
    assert obr[25] == code
    assert {o[11] for o in _obx(er7)} == {code}


def test_machine_draft_says_so() -> None:
    er7 = build_oru(publication("preliminary", with_devices=True), OruOptions(message_id="M"))
    nte = next(s for s in _segments(er7) if s[0] == "NTE")
    assert "machine-written" in nte[3] and "findings-model 0.3" in nte[3]


def test_pdf_as_base64_ed_and_ft() -> None:
    er7 = build_oru(publication(), OruOptions(message_id="M", include_pdf=True, text_type="FT"))
    ed = [o for o in _obx(er7) if o[2] == "ED"]
    assert len(ed) == 1 and ed[0][5].startswith("^AP^PDF^Base64^")
    assert pdf_bytes(ed[0][5]) == PDF
    assert {o[2] for o in _obx(er7)} >= {"FT", "RP", "ED"}
    assert parse_message(er7, find_groups=True, validation_level=VALIDATION_LEVEL.TOLERANT).validate()


def test_charsets() -> None:
    with pytest.raises(Hl7EncodingError, match="UNICODE UTF-8"):
        build_oru(publication(), OruOptions(message_id="M", charset="8859/1"))
    latin = publication()
    for r in latin:
        if r["resourceType"] == "Observation":
            r["valueString"] = "Kein Erguss, Größe normal."
    er7 = build_oru(latin, OruOptions(message_id="M", charset="8859/1"))
    assert "MSH" in er7 and "|8859/1" in er7.split("\r")[0]
    er7.encode("latin-1")


def test_no_report_is_an_error() -> None:
    with pytest.raises(Hl7Error):
        build_oru([r for r in publication() if r["resourceType"] != "DiagnosticReport"], OruOptions("M"))


def test_escape_round_trip() -> None:
    text = "a|b^c&d~e\\f\nnext"
    assert unescape(escape(text, formatted=True)) == text
    assert "\r" not in escape("x\r\ny") and "\n" not in escape("x\r\ny")


def test_pv1_where_the_order_or_adt_told_us() -> None:
    visit = {
        "patient_class": "O",
        "location": ["CT", "2", "B^1", "HOSP"],
        "attending": ["D-77", "Invented", "Doctor"],
        "visit_number": "V-9",
    }
    er7 = build_oru(publication(), OruOptions(message_id="M", visit=visit))
    msg = parse_message(er7, find_groups=True, validation_level=VALIDATION_LEVEL.STRICT)
    assert msg.validate()
    order = [s[0] for s in _segments(er7)]
    assert order.index("PV1") == order.index("PID") + 1
    pv1 = next(s for s in _segments(er7) if s[0] == "PV1")
    assert (pv1[1], pv1[2], pv1[3], pv1[7], pv1[19]) == (
        "1",
        "O",
        "CT^2^B\\S\\1^HOSP",
        "D-77^Invented^Doctor",
        "V-9",
    )
    partial = build_oru(publication(), OruOptions(message_id="M", visit={"location": ["ER"]}))
    pv1 = next(s for s in _segments(partial) if s[0] == "PV1")
    assert (pv1[2], pv1[3]) == ("U", "ER")  # PV1-2 is required: U (unknown) when only the location is known
    assert "PV1" not in [s[0] for s in _segments(build_oru(publication(), OruOptions(message_id="M")))]
