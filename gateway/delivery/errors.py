"""Delivery errors, translated once by the outbox worker into a retry or a dead letter.

::

    GatewayError
    └── DeliveryError            a message could not be delivered now; the row backs off and retries
        └── PermanentDeliveryError  retrying cannot help (rejected, unencodable); the row is dead at once
"""

from __future__ import annotations

from gateway.errors import GatewayError


class DeliveryError(GatewayError):
    """A message could not be delivered; the outbox retries it with backoff."""


class PermanentDeliveryError(DeliveryError):
    """The receiver rejected the message, or it cannot be built for this destination; no retry."""
