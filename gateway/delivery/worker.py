"""The delivery worker: claims outbox rows and hands each to the sender of its kind.

Senders are small Protocol objects (``oru`` over MLLP today); the worker translates their errors once:
:class:`~gateway.delivery.errors.PermanentDeliveryError` dead-letters the row at once, any other error backs
off and retries. One thread per process keeps one connection per destination and delivers a patient's
messages in order.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from gateway.delivery import outbox
from gateway.delivery.errors import DeliveryError, PermanentDeliveryError
from gateway.delivery.settings import DeliverySettings

log = logging.getLogger(__name__)


class Sender(Protocol):
    """Delivers one message to one destination; raises DeliveryError (or its permanent child)."""

    def send(self, destination: str, message_id: str, payload: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class DeliveryWorker:
    def __init__(
        self,
        settings: DeliverySettings,
        sessions: sessionmaker[Session],
        senders: Mapping[str, Sender],
        *,
        owner: str | None = None,
        periodic: Sequence[Callable[[], object]] = (),
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.senders = dict(senders)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}:deliver"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._periodic = list(periodic)  # e.g. queueing subscription heartbeats, at most once a second
        self._last_periodic = 0.0

    def run_once(self) -> bool:
        """Deliver at most one message. True if one was claimed."""
        claimed = outbox.claim(self.sessions, self.owner, self.settings, kinds=tuple(self.senders))
        if claimed is None:
            return False
        extra = {
            "outbox": claimed.row_id,
            "destination": claimed.destination,
            "kind": claimed.kind,
            "message_id": claimed.message_id,
            "attempt": claimed.attempts,
        }
        try:
            self.senders[claimed.kind].send(claimed.destination, claimed.message_id, claimed.payload)
        except Exception as exc:
            permanent = isinstance(exc, PermanentDeliveryError)
            reason = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
            state = outbox.mark_failed(
                self.sessions, claimed, self.owner, reason, permanent=permanent, settings=self.settings
            )
            level = logging.ERROR if state == "dead" else logging.WARNING
            log.log(level, "delivery failed (%s): %s", state, reason, extra=extra)
        else:
            if outbox.mark_sent(self.sessions, claimed, self.owner):
                log.info("delivered", extra=extra)
            else:
                log.warning("delivered after the claim was lost; it may be sent again", extra=extra)
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self._periodic and time.monotonic() - self._last_periodic >= 1.0:
                    self._last_periodic = time.monotonic()
                    for task in self._periodic:
                        task()
                ran = self.run_once()
            except Exception:
                log.exception("delivery loop error; retrying")
                ran = False
            if not ran:
                self._stop.wait(self.settings.poll_interval)

    def start(self) -> None:
        if not self.senders:
            log.info("no delivery destinations configured")
            return
        self._thread = threading.Thread(target=self._loop, name="deliver", daemon=True)
        self._thread.start()
        log.info("delivery worker started", extra={"owner": self.owner, "kinds": ",".join(self.senders)})

    def stop(self, grace: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(grace)
        for sender in self.senders.values():
            try:
                sender.close()
            except Exception:
                log.warning("closing a sender failed", exc_info=True)
        released = outbox.release(self.sessions, self.owner)
        if released:
            log.info("released claimed messages", extra={"count": released})
