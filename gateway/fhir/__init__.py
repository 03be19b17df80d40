"""Mapping studies and reports to FHIR, and serving them over REST."""
