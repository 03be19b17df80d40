"""A pynetdicom SCP that answers Success to every C-STORE and keeps nothing.

The ingest benchmark runs it as the ceiling for any pynetdicom-based receiver on this machine: whatever the
gateway does per instance comes on top of this. Run: python _pynetdicom_bare.py AE_TITLE PORT
"""

from __future__ import annotations

import sys

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt


def main() -> None:
    ae_title, port = sys.argv[1], int(sys.argv[2])
    ae = AE(ae_title=ae_title)
    for context in AllStoragePresentationContexts:
        assert context.abstract_syntax is not None
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context("1.2.840.10008.1.1")
    ae.maximum_pdu_size = 0
    ae.start_server(("127.0.0.1", port), block=True, evt_handlers=[(evt.EVT_C_STORE, lambda event: 0x0000)])


if __name__ == "__main__":
    main()
