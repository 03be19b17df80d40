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


def test_byte_ranges_of_bulk_data() -> None:
    assert wado.byte_range(None, 100) is None
    assert wado.byte_range("bytes=0-9", 100) == (0, 9)
    assert wado.byte_range("bytes=90-", 100) == (90, 99)
    assert wado.byte_range("bytes=-10", 100) == (90, 99)
    assert wado.byte_range("bytes=-500", 100) == (0, 99)
    assert wado.byte_range("bytes=50-500", 100) == (50, 99)
    assert wado.byte_range("bytes=0-1,5-6", 100) is None  # several ranges: the whole value
    assert wado.byte_range("items=0-1", 100) is None and wado.byte_range("bytes=x-y", 100) is None
    for bad in ("bytes=100-", "bytes=5-2", "bytes=-0"):
        with pytest.raises(wado.RangeNotSatisfiable, match=r"bytes \*/100"):
            wado.byte_range(bad, 100)


def test_dicom_xml_is_refused_clearly() -> None:
    wado.json_only("application/dicom+json")
    wado.json_only("application/dicom+xml, application/dicom+json;q=0.5")
    wado.json_only("*/*")
    with pytest.raises(wado.NotAcceptable, match="dicom\\+xml is not supported"):
        wado.json_only("application/dicom+xml")


def test_an_empty_token_signs_and_admits_nothing() -> None:
    from gateway.auth.links import LinkSigner

    empty = LinkSigner("", 60)
    with pytest.raises(ValueError, match="API token"):
        empty.sign("/dicomweb/a", "x")
    # A signature made with a key derived from an empty token (what anyone could compute) is refused.
    import hashlib
    import hmac

    key = hmac.new(b"", b"gateway signed links v1", hashlib.sha256).digest()
    sig = hmac.new(key, b"/dicomweb/a\n9999999999\nx", hashlib.sha256).hexdigest()
    assert empty.check("/dicomweb/a", {"exp": "9999999999", "client": "x", "sig": sig}) is None
    assert (
        Access("", signed_url_lifetime=60).signed(
            "/dicomweb/a", {"exp": "9999999999", "client": "x", "sig": sig}
        )
        is None
    )
