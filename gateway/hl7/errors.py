"""HL7 errors.

::

    GatewayError
    └── Hl7Error              an HL7 v2 message could not be built or parsed
        └── Hl7EncodingError  the text cannot be carried in the destination's character set (MSH-18)
"""

from __future__ import annotations

from gateway.errors import GatewayError


class Hl7Error(GatewayError):
    """An HL7 v2 message could not be built, validated or parsed."""


class Hl7EncodingError(Hl7Error):
    """Text that the destination's character set cannot carry."""
