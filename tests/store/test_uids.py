"""UID validation (PS3.5 9.1): only digits and dots ever become part of a path."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidInstance, UnsafeUID
from gateway.store.uids import is_strict_uid, validate_uid


@pytest.mark.parametrize(
    "uid",
    ["1.2.840.10008.5.1.4.1.1.2", "0", "1.0.3", "2.25.3" + "1" * 58, "1.2.3.04"],
)
def test_valid_uids_pass(uid: str) -> None:
    assert validate_uid(uid) == uid


def test_padding_is_stripped() -> None:
    # UI values are padded to even length with NUL (PS3.5 6.2); some senders pad with a space.
    assert validate_uid("1.2.3\x00") == "1.2.3"
    assert validate_uid(" 1.2.3 ") == "1.2.3"


@pytest.mark.parametrize(
    "uid",
    [
        "",
        "\x00",
        "../..",
        "1.2/../3",
        "1.2.3/../../etc",
        "1.2.3\x00/x",
        "1.2.3\x001",
        "1.2.abc",
        "1.2.3a",
        "1..2",
        ".1.2",
        "1.2.",
        "1.2 3",
        "/etc/passwd",
        "1\\2",
        "1" * 65,
        "１.２",  # full-width digits are not ASCII digits
    ],
)
def test_unsafe_uids_refused(uid: str) -> None:
    with pytest.raises(UnsafeUID):
        validate_uid(uid)


@pytest.mark.parametrize("value", [None, 1.2, b"1.2.3", ["1.2"]])
def test_non_strings_refused(value: object) -> None:
    with pytest.raises(UnsafeUID, match="missing or not a string"):
        validate_uid(value)


def test_error_names_the_attribute_and_is_an_invalid_instance() -> None:
    with pytest.raises(InvalidInstance, match="SeriesInstanceUID"):
        validate_uid("x", what="SeriesInstanceUID")


def test_strict_uids() -> None:
    assert is_strict_uid("1.2.840.10008")
    assert is_strict_uid("0.1")
    assert not is_strict_uid("1.2.03")
    assert not is_strict_uid("1." + "2" * 63)
