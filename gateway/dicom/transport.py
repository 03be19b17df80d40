"""Connection limits in front of pynetdicom: what a peer may cost before and during an association.

pynetdicom reads a PDU by trusting its length field and blocking on the socket until that many bytes came,
and it counts every connection thread as an association. So a few TCP connections that send a partial
header, garbage, or a header announcing 4 GiB would block its reader forever, buffer whatever followed, and
take every association slot. Here, with the least intrusion into pynetdicom (our own server, request
handler, association and socket subclasses; its state machine and PDU classes untouched):

- every read has a deadline: until the A-ASSOCIATE-RQ has arrived, the ARTIM period from the moment the
  connection was accepted (PS3.8 9.1.5); once associated, the network timeout per PDU. A connection that
  misses it is closed, also after we sent A-ABORT or A-ASSOCIATE-RJ;
- a PDU header is checked before its body is read: an A-ASSOCIATE-RQ larger than a small fixed bound, a
  P-DATA-TF larger than the maximum length we announced, or anything else larger than its kind can be is
  answered with A-ABORT and the connection closed at once, without reading what follows;
- connections that have not yet associated are counted per source address and in all (:class:`Admission`),
  and never take association slots: the slots count only associations that passed ``on_requested``;
- a TLS handshake runs on the connection's own thread under the same deadline, not on the listener's.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

log = logging.getLogger(__name__)

A_ASSOCIATE_RQ = 0x01
P_DATA_TF = 0x04
# The other PDUs an acceptor may receive (A-RELEASE-RQ/RP, A-ABORT) have a 4-byte body; A-ASSOCIATE-AC/RJ
# should never come to an acceptor. Anything of theirs above this is not a PDU we will read.
SMALL_PDU_BYTES = 1024
# A-ABORT, source 2 (service provider), reason 6 (invalid PDU parameter value): PS3.8 9.3.8.
ABORT_INVALID_PARAMETER = bytes([0x07, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x02, 0x06])


@dataclass(frozen=True)
class Limits:
    artim_timeout: float
    network_timeout: float | None
    max_pending: int
    max_pending_per_address: int
    max_associations: int
    max_associate_rq_bytes: int
    max_pdu_bytes: int
    dul_idle_sleep: float = 0.001
    dul_wakeup: Literal["event", "poll"] = "event"


class Ticket:
    """One connection's place in :class:`Admission`: pending until it sent an A-ASSOCIATE-RQ."""

    def __init__(self, admission: Admission, address: str) -> None:
        self.admission = admission
        self.address = address
        self.pending = True
        self.associated = False

    def associate_requested(self) -> None:
        self.admission.leave_pending(self)

    def close(self) -> None:
        self.admission.leave_pending(self)
        self.admission.leave_association(self)


class Admission:
    """Counts unassociated connections (per address and in all) and associations that were accepted."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}
        self._pending_total = 0
        self._associations = 0

    def admit_connection(self, address: str) -> Ticket | None:
        """A ticket for a new connection from ``address``, or None if it must be closed at once."""
        with self._lock:
            if self._pending_total >= self.limits.max_pending:
                return None
            if self._pending.get(address, 0) >= self.limits.max_pending_per_address:
                return None
            self._pending[address] = self._pending.get(address, 0) + 1
            self._pending_total += 1
        return Ticket(self, address)

    def leave_pending(self, ticket: Ticket) -> None:
        with self._lock:
            if not ticket.pending:
                return
            ticket.pending = False
            self._pending_total -= 1
            left = self._pending[ticket.address] - 1
            if left:
                self._pending[ticket.address] = left
            else:
                del self._pending[ticket.address]

    def admit_association(self, ticket: Ticket) -> bool:
        """Take an association slot for ``ticket``; False when all are taken."""
        with self._lock:
            if ticket.associated:
                return True
            if self._associations >= self.limits.max_associations:
                return False
            self._associations += 1
            ticket.associated = True
            return True

    def leave_association(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket.associated:
                ticket.associated = False
                self._associations -= 1

    def counts(self) -> tuple[int, int]:
        """(pending connections, associations)."""
        with self._lock:
            return self._pending_total, self._associations


class PduTooLarge(ConnectionAbortedError):
    pass


class GuardedSocket(AssociationSocket):
    """An acceptor's socket whose reads have deadlines and whose PDU headers are checked before the body."""

    def __init__(
        self, assoc: Association, client_socket: socket.socket, ticket: Ticket, limits: Limits
    ) -> None:
        super().__init__(assoc, client_socket=client_socket)
        self.ticket = ticket
        self.limits = limits
        self._accepted_at = time.monotonic()
        self._header_next = True
        self._body_type = 0
        self._rq_received = False

    def _deadline(self) -> float:
        if self.assoc.is_established:
            timeout = self.limits.network_timeout
            return time.monotonic() + timeout if timeout is not None else float("inf")
        # Not associated yet, or no longer (after A-ASSOCIATE-RJ or A-ABORT): the ARTIM period from accept.
        return self._accepted_at + self.limits.artim_timeout

    def _pdu_limit(self, pdu_type: int) -> int:
        if not self._rq_received:
            return self.limits.max_associate_rq_bytes if pdu_type == A_ASSOCIATE_RQ else SMALL_PDU_BYTES
        if pdu_type == P_DATA_TF:
            return int(self.assoc.acceptor.maximum_length or self.limits.max_pdu_bytes)
        return SMALL_PDU_BYTES

    def recv(self, nr_bytes: int) -> bytearray:
        sock = self.socket
        if sock is None:
            raise ConnectionAbortedError("socket closed")
        deadline = self._deadline()
        data = bytearray()
        while len(data) < nr_bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._give_up()
                raise TimeoutError("peer too slow: deadline for this PDU passed")
            sock.settimeout(min(remaining, 3600.0))
            try:
                chunk = sock.recv(min(nr_bytes - len(data), 1 << 20))
            except TimeoutError:
                self._give_up()
                raise
            if not chunk:
                break
            data += chunk
        if len(data) == nr_bytes:
            self._account(data)
        return data

    def _account(self, data: bytearray) -> None:
        """Check a header before its body is read; note when an A-ASSOCIATE-RQ body has arrived."""
        if self._header_next:
            if len(data) != 6:
                return
            pdu_type, _, length = struct.unpack(">BBL", data)
            limit = self._pdu_limit(pdu_type)
            if length > limit:
                self._refuse(f"PDU type 0x{pdu_type:02X} of {length} bytes exceeds {limit}")
            if length:
                self._header_next = False
                self._body_type = pdu_type
            return
        self._header_next = True
        if self._body_type == A_ASSOCIATE_RQ and not self._rq_received:
            self._rq_received = True
            self.ticket.associate_requested()

    def _refuse(self, reason: str) -> None:
        log.warning("PDU refused, connection aborted: %s", reason, extra={"peer": self.ticket.address})
        sock = self.socket
        if sock is not None:
            try:
                sock.settimeout(1.0)
                sock.sendall(ABORT_INVALID_PARAMETER)
            except OSError:
                pass
        self._give_up()
        raise PduTooLarge(reason)

    def _give_up(self) -> None:
        """Close the connection now; wake an acceptor thread still waiting for the A-ASSOCIATE-RQ."""
        sock = self.socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if not self._rq_received:
            # Association.run_reactor waits on this queue for the request; None is what its timeout returns.
            self.assoc.dul.to_user_queue.put(None)

    def close(self) -> None:
        super().close()
        if not self._rq_received:
            self.assoc.dul.to_user_queue.put(None)


# pynetdicom's acceptor reactor sleeps 1 ms before every look at its message queue (pynetdicom issues #120,
# #650): up to 1 ms of latency per C-STORE. Ours blocks on the queue instead and is woken by the message.
REACTOR_WAIT = 0.005
# pynetdicom's DUL thread sleeps 1 ms whenever it found nothing to do, so a PDU that arrives, and the
# C-STORE response our handler queues, each wait up to that long. With ``dicom.dul_wakeup = "event"`` the
# DUL waits instead in select() on its socket and on a wake-up socket written whenever a primitive is
# queued for sending (:class:`EventDrivenDul`); it still wakes every DUL_TIMER_CHECK seconds for its timers.
DUL_TIMER_CHECK = 0.05


class _WakingQueue(queue.Queue[Any]):
    """The DUL's queue of primitives to send, which wakes the DUL thread on every put."""

    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._wake()


class EventDrivenDul(DULServiceProvider):
    """pynetdicom's DICOM Upper Layer provider (PS3.8 9.2), woken by events instead of polling.

    Only the reactor loop differs from pynetdicom's ``DULServiceProvider.run_reactor`` (same steps, same
    order): where it sleeps ``_run_loop_delay`` after a loop that found nothing, this one waits in
    select() for data on the association's socket or a byte on a wake-up socket pair, written when a
    primitive is queued for sending (``to_provider_queue``) or the thread is asked to stop.
    """

    def __init__(self, assoc: Association) -> None:
        super().__init__(assoc)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.to_provider_queue = _WakingQueue(self.wake)

    def wake(self) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError: a wake-up is pending already
            self._wake_w.send(b"\0")

    def kill_dul(self) -> None:
        super().kill_dul()
        self.wake()

    def _wait(self) -> None:
        transport = self.socket
        sock = transport.socket if transport is not None else None
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return  # decrypted data already buffered: select() would not see it
        try:
            if sock is None or sock.fileno() < 0:
                select.select([self._wake_r], [], [], 0.001)
            else:
                select.select([sock, self._wake_r], [], [], DUL_TIMER_CHECK)
        except (OSError, ValueError):  # the socket closed under us: the loop notices (Evt17)
            time.sleep(0.001)
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass

    def run_reactor(self) -> None:
        try:
            self._event_loop()
        finally:
            self._wake_r.close()
            self._wake_w.close()

    def _event_loop(self) -> None:
        self._idle_timer.start()
        assert self.socket is not None
        idle = False
        while True:
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
                idle = True
            if idle:
                self._wait()
            if self._kill_thread:
                break
            if self.artim_timer.expired:
                self.event_queue.put("Evt18")
            try:
                # Either encode and send a primitive, or receive and decode a PDU, per loop.
                if self._process_recv_primitive():
                    pass
                elif self._is_transport_event():
                    self._idle_timer.restart()
            except Exception:
                log.exception("DICOM upper layer failed; aborting the association")
                abort = A_ABORT_RQ()
                abort.source = 0x02
                abort.reason_diagnostic = 0x00
                with contextlib.suppress(OSError):
                    self.socket.send(abort.encode())
                self.assoc.is_aborted = True
                self.assoc.is_established = False
                self.assoc._kill = True
                self._kill_thread = True
                return
            try:
                event = self.event_queue.get(block=False)
            except queue.Empty:
                idle = True
                continue
            self.state_machine.do_action(event)
            idle = False


class GatewayAssociation(Association):
    """An acceptor association that gives its admission ticket back when its thread ends, and whose
    reactor is woken by each DIMSE message instead of polling once a millisecond."""

    ticket: Ticket | None = None

    def __init__(self, ae: Any, mode: str, *, event_driven_dul: bool = False) -> None:
        super().__init__(ae, mode)
        if event_driven_dul:
            self.dul = EventDrivenDul(self)
            # pynetdicom's __init__ gave its own DUL the timeouts; give them to ours.
            self.acse_timeout = self.ae.acse_timeout
            self.network_timeout = self.ae.network_timeout

    def _serve_request(self, msg: Any, context_id: int) -> None:
        """Serve every C-STORE with the Storage service, whatever its Affected SOP Class says.

        pynetdicom picks the service class from the Affected SOP Class UID, so a C-STORE that names
        Verification would be answered with a C-ECHO response; here it reaches our C-STORE handler, which
        refuses a SOP class that is not its presentation context's (``dicom.context_mismatch``).
        """
        context = self._accepted_cx.get(context_id)
        if not isinstance(msg, C_STORE) or context is None or self._sent_release or not msg.is_valid_request:
            super()._serve_request(msg, context_id)
            return
        try:
            self.dimse.cancel_req = {}
            self._is_paused = True
            StorageServiceClass(self).SCP(msg, context)
            self._is_paused = False
            self.dimse.cancel_req = {}
        except Exception:
            log.exception("C-STORE service failed; aborting the association")
            self.abort()

    def _run_reactor(self) -> None:
        """As pynetdicom's ``Association._run_reactor`` for an acceptor, but waiting on the message queue."""
        messages = self.dimse.msg_queue
        self._is_paused = False
        while not self._kill:
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False
            try:
                context_id, msg = messages.get(timeout=REACTOR_WAIT)
            except queue.Empty:
                msg = None
            if msg:
                self._serve_request(msg, cast(int, context_id))
            if self.is_established and self.acse.is_release_requested():
                self.acse.send_release(is_response=True)
                self.is_released = True
                self.is_established = False
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.kill()
                return
            if self.acse.is_aborted():
                self.dul.receive_pdu(wait=False)  # so that EVT_ACSE_RECV fires
                self.is_aborted = True
                self.is_established = False
                evt.trigger(self, evt.EVT_ABORTED, {})
                self.kill()
                return
            if not self.dul.is_alive():
                self.kill()
                return
            if self.dul.idle_timer_expired():
                log.warning("network timeout reached; aborting the association")
                self.abort()
                self.kill()
                return

    def run_reactor(self) -> None:
        try:
            super().run_reactor()
        finally:
            if self.ticket is not None:
                self.ticket.close()


class GuardedRequestHandler(RequestHandler):
    server: GuardedServer

    def handle(self) -> None:
        ticket = self.server.tickets.pop(id(self.request), None)
        if ticket is None:
            self.server.shutdown_request(self.request)
            return
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.settimeout(self.server.limits.artim_timeout)
                self.request.do_handshake()
            except (OSError, ValueError) as exc:
                log.warning("TLS handshake failed: %s", exc, extra={"peer": ticket.address})
                ticket.close()
                self.server.shutdown_request(self.request)
                return
        self._start(ticket)

    def _start(self, ticket: Ticket) -> None:
        assoc = self._create(ticket)
        evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
        try:
            assoc.start()
        except BaseException:
            ticket.close()
            raise

    def _create(self, ticket: Ticket) -> GatewayAssociation:
        """As :meth:`RequestHandler._create_association`, with our association and socket classes."""
        from copy import deepcopy

        from pynetdicom._globals import MODE_ACCEPTOR

        server = self.server
        assoc = GatewayAssociation(
            self.ae, MODE_ACCEPTOR, event_driven_dul=server.limits.dul_wakeup == "event"
        )
        assoc.ticket = ticket
        assoc._server = server
        assoc.name = f"AcceptorThread@{time.strftime('%Y%m%d%H%M%S')}"
        # The ACSE timeout of an acceptor is its ARTIM timer and its wait for the A-ASSOCIATE-RQ.
        assoc.acse_timeout = min(
            self.ae.acse_timeout or server.limits.artim_timeout, server.limits.artim_timeout
        )
        assoc.set_socket(GuardedSocket(assoc, self.request, ticket, server.limits))
        assoc.dul._run_loop_delay = server.limits.dul_idle_sleep
        assoc.acceptor.maximum_length = self.ae.maximum_pdu_size
        assoc.acceptor.ae_title = server.ae_title
        assoc.acceptor.address_info = self.local
        assoc.acceptor.implementation_class_uid = self.ae.implementation_class_uid
        assoc.acceptor.implementation_version_name = self.ae.implementation_version_name
        assoc.acceptor.supported_contexts = deepcopy(server.contexts)
        assoc.requestor.address_info = self.remote
        for event in server._handlers:
            if event.is_intervention and server._handlers[event]:
                assoc.bind(event, *server._handlers[event])
            elif isinstance(event, evt.NotificationEvent):
                for handler in server._handlers[event]:
                    assoc.bind(event, handler[0], handler[1])  # type: ignore[index]
        return assoc


class GuardedServer(ThreadedAssociationServer):
    """The association server: admission per source address, TLS handshakes off the listener thread,
    and ``SO_REUSEPORT`` so that several processes can share the port."""

    limits: Limits
    admission: Admission
    tickets: dict[int, Ticket]

    def __init__(
        self,
        ae: Any,
        address: tuple[str, int],
        ae_title: str,
        contexts: list[Any],
        ssl_context: ssl.SSLContext | None = None,
        evt_handlers: list[Any] | None = None,
        *,
        limits: Limits,
    ) -> None:
        self.limits = limits
        self.admission = Admission(limits)
        self.tickets = {}
        super().__init__(
            ae, address, ae_title, contexts, ssl_context, evt_handlers, request_handler=GuardedRequestHandler
        )

    def server_bind(self) -> None:
        if hasattr(socket, "SO_REUSEPORT") and self.socket is not None:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def service_actions(self) -> None:
        """Nothing: pynetdicom's server runs a full ``gc.collect()`` every few listener polls here, which
        holds the GIL and stalls every association for as long as the heap takes to walk. The interpreter's
        own collector frees finished associations (reference cycles) as it frees anything else."""

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        client, address = self.socket.accept()
        if self.ssl_context:
            # The handshake runs on the connection's thread (GuardedRequestHandler), under the ARTIM deadline.
            client = self.ssl_context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        return client, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        address = str(client_address[0])
        ticket = self.admission.admit_connection(address)
        if ticket is None:
            log.warning("connection refused: too many unassociated connections", extra={"peer": address})
            return False
        self.tickets[id(request)] = ticket
        return True

    def shutdown_request(self, request: Any) -> None:
        ticket = self.tickets.pop(id(request), None)
        if ticket is not None:
            ticket.close()
        with contextlib.suppress(OSError):
            request.shutdown(socket.SHUT_RDWR)
        request.close()
