"""The DICOM SCP: an Application Entity accepting C-ECHO, C-STORE and Storage Commitment.

Every storage SOP class that pynetdicom knows is accepted with every transfer syntax it can negotiate, and
instances are kept exactly as received. Several SCP processes can share one port (``dicom.processes``)
because pynetdicom serves associations on threads of one interpreter, which the GIL keeps from scaling;
each process binds with ``SO_REUSEPORT`` and the kernel spreads new associations across them.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.transport import ThreadedAssociationServer
from sqlalchemy.orm import Session, sessionmaker

from gateway.dicom import handlers
from gateway.dicom.commitment import SOP_CLASS as STORAGE_COMMITMENT
from gateway.dicom.commitment import CommitmentResponder
from gateway.dicom.ingest import Ingest
from gateway.dicom.mpps import SOP_CLASS as MPPS
from gateway.dicom.mpps import MppsScp
from gateway.metrics import Metrics
from gateway.settings import Settings

log = logging.getLogger(__name__)

VERIFICATION = "1.2.840.10008.1.1"


class _ReusePortServer(ThreadedAssociationServer):
    """An association server whose listening socket can be shared by several processes."""

    def server_bind(self) -> None:
        if hasattr(socket, "SO_REUSEPORT") and self.socket is not None:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


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
    ae.maximum_associations = settings.dicom.max_associations
    ae.acse_timeout = settings.dicom.acse_timeout
    ae.dimse_timeout = settings.dicom.dimse_timeout
    ae.network_timeout = settings.dicom.network_timeout
    ae.maximum_pdu_size = 0  # no limit: fewer, larger PDUs are faster for big instances
    return ae


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
        self._server: ThreadedAssociationServer | None = None
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

    def start(self) -> None:
        if not self.settings.dicom.peers:
            log.warning("no DICOM peers configured: accepting associations from any calling AE title")
        bound: list[Any] = [
            (evt.EVT_REQUESTED, handlers.on_requested, [self.settings, self.metrics]),
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
            server_class=_ReusePortServer,
        )
        assert isinstance(server, ThreadedAssociationServer)
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
        log.info("DICOM SCP stopped")
