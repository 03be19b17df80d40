"""The DICOM SCP: an Application Entity accepting C-ECHO, C-STORE and Storage Commitment.

Every storage SOP class that pynetdicom knows is accepted with every transfer syntax it can negotiate, and
instances are kept exactly as received. Several SCP processes can share one port (``dicom.processes``)
because pynetdicom serves associations on threads of one interpreter, which the GIL keeps from scaling;
each process binds with ``SO_REUSEPORT`` and the kernel spreads new associations across them.
"""

from __future__ import annotations

import gc
import logging
import ssl
import threading
import time
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from sqlalchemy.orm import Session, sessionmaker

from gateway.dicom import handlers
from gateway.dicom.commitment import SOP_CLASS as STORAGE_COMMITMENT
from gateway.dicom.commitment import CommitmentResponder
from gateway.dicom.ingest import Ingest
from gateway.dicom.mpps import SOP_CLASS as MPPS
from gateway.dicom.mpps import MppsScp
from gateway.dicom.transport import Admission, GuardedServer, Limits
from gateway.metrics import Metrics
from gateway.settings import Settings

log = logging.getLogger(__name__)

VERIFICATION = "1.2.840.10008.1.1"


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server-side TLS context (PS3.15 B.1), or None when TLS is off."""
    tls = settings.dicom.tls
    if not tls.enabled:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    assert tls.cert is not None and tls.key is not None  # checked by TlsSettings
    ctx.load_cert_chain(certfile=str(tls.cert), keyfile=str(tls.key))
    if tls.ca is not None:
        ctx.load_verify_locations(cafile=str(tls.ca))
    ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_NONE
    return ctx


def build_ae(settings: Settings) -> AE:
    ae = AE(ae_title=settings.ae_title)
    for context in AllStoragePresentationContexts:
        assert context.abstract_syntax is not None
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(VERIFICATION, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(STORAGE_COMMITMENT, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(MPPS, ALL_TRANSFER_SYNTAXES)
    # Our own admission (gateway.dicom.transport) counts associations and unassociated connections apart;
    # pynetdicom's count of connection threads would let unassociated connections take association slots.
    ae.maximum_associations = settings.dicom.max_associations + 2 * settings.dicom.max_pending
    ae.acse_timeout = settings.dicom.acse_timeout
    ae.dimse_timeout = settings.dicom.dimse_timeout
    ae.network_timeout = settings.dicom.network_timeout
    # The largest P-DATA-TF we accept; a larger one is refused at its header (gateway.dicom.transport).
    ae.maximum_pdu_size = settings.dicom.max_pdu_bytes
    return ae


def limits(settings: Settings) -> Limits:
    dicom = settings.dicom
    return Limits(
        artim_timeout=dicom.artim_timeout,
        network_timeout=dicom.network_timeout,
        max_pending=dicom.max_pending,
        max_pending_per_address=dicom.max_pending_per_address,
        max_associations=dicom.max_associations,
        max_associate_rq_bytes=dicom.max_associate_rq_bytes,
        max_pdu_bytes=dicom.max_pdu_bytes,
        dul_idle_sleep=dicom.dul_idle_sleep,
        dul_wakeup=dicom.dul_wakeup,
    )


class Scp:
    """One SCP listener in this process, with graceful shutdown.

    On :meth:`stop`, the listening socket closes first (no new associations), C-STOREs in flight finish,
    new C-STOREs on still-open associations are refused with 0xA700 so the sender retries later, and then
    the remaining associations are aborted.
    """

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.ingest = Ingest(settings, sessions, metrics)
        self.responder = CommitmentResponder(settings, sessions)
        self.mpps = MppsScp(sessions)
        self.ae = build_ae(settings)
        self._server: GuardedServer | None = None
        self._thread: threading.Thread | None = None
        self._in_flight = 0
        self._lock = threading.Lock()
        self._draining = False

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def _on_c_store(self, event: evt.Event) -> int | Dataset:
        with self._lock:
            if self._draining:
                return handlers.OUT_OF_RESOURCES
            self._in_flight += 1
        try:
            return handlers.on_c_store(event, self.ingest, self.metrics)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _on_requested(self, event: evt.Event) -> None:
        handlers.on_requested(event, self.settings, self.metrics, self._server_admission())

    def _server_admission(self) -> Admission | None:
        return self._server.admission if self._server is not None else None

    def start(self) -> None:
        # Receive each C-STORE data set to a file as it arrives instead of into memory (pynetdicom's own
        # option, process-wide): the handler then copies it into the store in pieces (Ingest.store_received).
        _config.STORE_RECV_CHUNKED_DATASET = True
        if not self.settings.dicom.peers:
            log.warning("no DICOM peers configured: accepting associations from any calling AE title")
        bound: list[Any] = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, handlers.on_c_echo),
            (evt.EVT_C_STORE, self._on_c_store),
            (evt.EVT_N_ACTION, handlers.on_n_action, [self.responder]),
            (evt.EVT_N_CREATE, self.mpps.on_n_create),
            (evt.EVT_N_SET, self.mpps.on_n_set),
        ]
        address = (self.settings.dicom.bind, self.settings.dicom_port)
        server = self.ae.make_server(
            address,
            evt_handlers=bound,
            ssl_context=tls_context(self.settings),
            server_class=GuardedServer,
            limits=limits(self.settings),
        )
        assert isinstance(server, GuardedServer)
        # What start-up loaded (modules, tables, the settings) lives as long as the process: moved out of the
        # collector's generations, it is not walked again by each full collection while instances arrive.
        gc.freeze()
        self.ae._servers.append(server)  # as AE.start_server does, so AE.shutdown() sees it too
        self._server = server
        # serve_forever checks for shutdown once per poll interval; 0.1 s keeps stop() quick.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="scp-listener", daemon=True
        )
        self._thread.start()
        log.info(
            "DICOM SCP listening",
            extra={
                "ae_title": self.settings.ae_title,
                "port": self.port,
                "tls": self.settings.dicom.tls.enabled,
            },
        )

    def stop(self, timeout: float = 30.0) -> None:
        server = self._server
        if server is None:
            return
        server.shutdown()
        with self._lock:
            self._draining = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._in_flight == 0:
                    break
            time.sleep(0.05)
        for assoc in server.active_associations:
            assoc.abort()
        self._server = None
        self.ingest.close()
        log.info("DICOM SCP stopped")
