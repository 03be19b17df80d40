"""The HTTP side: health, readiness, metrics, and the FHIR API mounted under /fhir."""
