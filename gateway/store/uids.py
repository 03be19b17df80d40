"""DICOM UID validation (PS3.5 section 9.1).

A UID is up to 64 characters of digits and dots, each component without a leading zero (except "0"
itself). Only UIDs that pass become parts of paths, so nothing received can escape the data directory.
"""

from __future__ import annotations

import re

from gateway.errors import UnsafeUID

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_LENIENT = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def validate_uid(value: object, *, what: str = "UID") -> str:
    """Return ``value`` as a UID string, or raise :class:`UnsafeUID`.

    Leading zeros in a component are tolerated (some modalities emit them) because they are still only
    digits and dots; anything else - spaces, slashes, "..", letters, NUL - is refused.
    """
    if not isinstance(value, str):
        raise UnsafeUID(f"{what} missing or not a string")
    uid = value.rstrip("\x00").strip()
    if not uid:
        raise UnsafeUID(f"{what} is empty")
    if len(uid) > 64:
        raise UnsafeUID(f"{what} longer than 64 characters")
    if not _LENIENT.match(uid):
        raise UnsafeUID(f"{what} has characters other than digits and dots")
    return uid


def is_strict_uid(value: str) -> bool:
    """True when ``value`` also has no leading zeros (what we generate ourselves)."""
    return bool(_UID.match(value)) and len(value) <= 64
