"""The gateway's exception tree.

Each package raises subclasses of :class:`GatewayError`; each boundary translates them once:
the SCP into a DIMSE status, the HTTP API into an OperationOutcome, a worker into a failed job.

::

    GatewayError
    ├── ConfigError                 settings that cannot be used
    │   └── findings.CheckpointError  a checkpoint that is missing, mismatched or corrupt
    ├── StoreError                  the instance store
    │   ├── InvalidInstance         data we cannot understand (DIMSE 0xC000 range)
    │   │   └── UnsafeUID           a UID with non-UID or path characters
    │   ├── OutOfResources          disk full, instance too large (DIMSE 0xA700)
    │   └── DuplicateRejected       a duplicate SOP Instance UID refused by policy
    ├── IndexError_                 the database index
    ├── StageError                  a pipeline stage failed; the job retries
    │   └── PermanentStageError     retrying cannot help; the job goes straight to dead letter
    │       ├── ReadError           a report could not be read (encrypted, corrupt, over limits)
    │       └── findings.ImageDecodeError  an image the findings models cannot decode
    ├── imaging.ImagingError        an instance whose pixels cannot be rendered
    ├── findings.DataSetError       a training data set in an unexpected shape
    ├── fhir.FhirError              FHIR mapping, validation and API errors (→ OperationOutcome)
    └── NotConfigured               a part that needs local models or settings that are absent
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The settings are invalid or inconsistent."""


class StoreError(GatewayError):
    """The instance store could not keep an instance."""


class InvalidInstance(StoreError):
    """The received data cannot be understood as a storable instance."""


class UnsafeUID(InvalidInstance):
    """A UID is not a valid DICOM UID and must not become part of a path."""


class OutOfResources(StoreError):
    """The gateway cannot keep the instance now: disk full, or over the size limit."""


class DuplicateRejected(StoreError):
    """A different instance with an already stored SOP Instance UID, refused by policy."""


class IndexError_(GatewayError):
    """The index database failed."""


class StageError(GatewayError):
    """A pipeline stage failed; the job is retried with backoff."""


class PermanentStageError(StageError):
    """A stage failed in a way that retrying cannot fix (bad input); the job is dead-lettered at once."""


class ReadError(PermanentStageError):
    """A report document could not be read (encrypted, corrupt, over limits)."""


class NotConfigured(GatewayError):
    """A part needs a model or setting that the operator has not configured."""
