"""DICOM/PACS report gateway.

A PACS pushes studies and reports to the gateway's DICOM SCP; the gateway stores them durably, reads the
reports, links report sentences to image instances and publishes FHIR that an EMR pulls.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
