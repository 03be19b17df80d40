"""The DICOM side: SCP (C-ECHO, C-STORE, Storage Commitment), ingest and the push SCU."""
