"""HL7 v2 escaping of text values (HL7 v2.5.1 chapter 2, section 2.7)."""

from __future__ import annotations

_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))


def escape(text: str, *, formatted: bool = False) -> str:
    """Escape the delimiters in ``text``. Line breaks become ``\\.br\\`` in FT, a space elsewhere
    (a bare carriage return would end the segment)."""
    out = text
    for raw, esc in _ESCAPES:
        out = out.replace(raw, esc)
    lines = out.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return ("\\.br\\" if formatted else " ").join(lines)


def unescape(text: str) -> str:
    out = text.replace("\\.br\\", "\n")
    for raw, esc in reversed(_ESCAPES):
        out = out.replace(esc, raw)
    return out
