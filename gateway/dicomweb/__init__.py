"""DICOMweb (PS3.18) at ``/dicomweb``: QIDO-RS search, WADO-RS retrieve (also rendered), STOW-RS."""
