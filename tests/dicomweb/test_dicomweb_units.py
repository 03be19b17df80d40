"""Units of the DICOMweb package: signed links, multipart framing, QIDO parsing, Accept negotiation."""

from __future__ import annotations

import pytest

from gateway.dicomweb import qido, wado
from gateway.dicomweb.access import Access
from gateway.dicomweb.multipart import MultipartError, Part, decode, encode


def test_signed_links_bind_path_expiry_and_client() -> None:
    access = Access("secret-token", signed_url_lifetime=60)
    link = access.sign("/dicomweb/a/rendered", "ui:alice", now=1000)
    path, query = link.split("?")
    params = dict(p.split("=") for p in query.split("&"))
    params["client"] = params["client"].replace("%3A", ":")
    assert access.signed(path, params, now=1059) is not None
    assert access.signed(path, params, now=1061) is None  # expired
    assert access.signed("/dicomweb/b/rendered", params, now=1000) is None  # another path
    assert access.signed(path, {**params, "client": "ui:bob"}, now=1000) is None
    assert access.signed(path, {**params, "exp": "999999"}, now=1000) is None
    other = Access("another-token", signed_url_lifetime=60)
    assert other.signed(path, params, now=1000) is None
    assert access.bearer("Bearer secret-token") is not None
    assert access.bearer("Bearer wrong") is None and access.bearer(None) is None
    assert Access("", signed_url_lifetime=60).bearer("Bearer ") is None  # no token admits no one
    assert Access.may("administrator", "retry") and not Access.may("reader", "retry")
    assert Access.may("reader", "review") and not Access.may("guest", "review")


def test_multipart_round_trip_keeps_bytes() -> None:
    payloads = [b"\x00\r\n--x\r\n\xff" * 3, b"", b"plain"]
    body, boundary = encode(Part("application/dicom", p) for p in payloads)
    parts = decode(body, f'multipart/related; type="application/dicom"; boundary={boundary}')
    assert [p.data for p in parts] == payloads
    with pytest.raises(MultipartError):
        decode(body, "application/dicom")
    with pytest.raises(MultipartError):
        decode(b"nothing", "multipart/related; boundary=zz")


def test_qido_parameters() -> None:
    q = qido.parse_query(
        [("00100020", "X"), ("StudyDate", "20240101-"), ("includefield", "00081030,all"), ("limit", "5")],
        "study",
    )
    assert q.filters == {"PatientID": "X", "StudyDate": "20240101-"}
    assert q.include is not None and "StudyDescription" in q.include and "all" in q.include and q.limit == 5
    with pytest.raises(qido.QueryError):
        qido.parse_query([("PixelData", "1")], "study")
    with pytest.raises(qido.QueryError):
        qido.parse_query([("limit", "-1")], "study")


def test_transfer_syntax_negotiation() -> None:
    explicit = "1.2.840.10008.1.2.1"
    jpeg = "1.2.840.10008.1.2.4.50"
    assert wado.accepted_syntaxes("") == [explicit]
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    assert wado.choose_syntax(jpeg, wado.accepted_syntaxes(accept)) == jpeg
    plain = 'multipart/related; type="application/dicom"'
    assert wado.choose_syntax(jpeg, wado.accepted_syntaxes(plain)) == explicit  # PS3.18 default
    with pytest.raises(wado.NotAcceptable):
        wado.choose_syntax(explicit, ["1.2.840.10008.1.2.4.80"])  # JPEG-LS: no encoder here
    with pytest.raises(wado.NotAcceptable):
        wado.accepted_syntaxes("image/png")
    opts = wado.render_options({"window": "40,400", "viewport": "64,32", "quality": "70"}, "image/png", 90)
    assert (opts.media_type, opts.window, opts.viewport, opts.quality) == (
        "image/png",
        (40.0, 400.0),
        (64, 32),
        70,
    )
    for bad in ({"window": "40"}, {"window": "40,-1"}, {"viewport": "0,10"}, {"quality": "101"}):
        with pytest.raises(wado.BadParameter):
            wado.render_options(bad, "", 90)
