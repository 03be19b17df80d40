"""The worker: promotes quiet studies to stable, claims jobs and runs their stage.

Several workers (threads, processes or hosts) can run against one index; the job table keeps them from
doing the same work twice, and stages are idempotent for the case where a lease expired under a live but
slow worker.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence

from pydicom.errors import InvalidDicomError
from sqlalchemy.orm import Session, sessionmaker

from gateway.dicom.completion import Completion, record_quiet
from gateway.errors import GatewayError, PermanentStageError
from gateway.index.models import Study
from gateway.metrics import Metrics
from gateway.pipeline import jobs
from gateway.pipeline.stage import Stage, StageContext
from gateway.settings import Settings

log = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        metrics: Metrics,
        pipeline: Sequence[Stage],
        *,
        owner: str | None = None,
    ) -> None:
        if not pipeline:
            raise ValueError("empty pipeline")
        self.settings = settings
        self.sessions = sessions
        self.metrics = metrics
        self.pipeline = list(pipeline)
        self.owner = owner or worker_id()
        self._stop = threading.Event()
        self._busy = threading.Event()
        self._threads: list[threading.Thread] = []
        self._completion = Completion(sessions)

    def _next_stage(self, name: str) -> str | None:
        names = [s.name for s in self.pipeline]
        index = names.index(name)
        return names[index + 1] if index + 1 < len(names) else None

    def run_once(self) -> bool:
        """Promote stable studies, then run at most one job. True if a job ran."""
        # Evidence first (MPPS, a report's references), then the quiet timer: gateway.dicom.completion.
        self._completion.promote(self.pipeline[0].name)
        quiet = jobs.promote_stable(self.sessions, self.settings.stable_age, self.pipeline[0].name)
        record_quiet(self.sessions, quiet, self.settings.stable_age)
        claimed = jobs.claim(self.sessions, self.owner, self.settings.pipeline)
        if claimed is None:
            return False
        self._run(claimed)
        return True

    def _run(self, claimed: jobs.Claimed) -> None:
        stage = next((s for s in self.pipeline if s.name == claimed.stage), None)
        if stage is None:
            jobs.fail(
                self.sessions,
                claimed,
                self.owner,
                f"unknown stage {claimed.stage!r}",
                permanent=True,
                settings=self.settings.pipeline,
            )
            return
        if not jobs.is_current(self.sessions, claimed):
            jobs.supersede(self.sessions, claimed, self.owner)
            return
        with self.sessions() as session:
            study = session.get(Study, claimed.study_id)
        assert study is not None
        ctx = StageContext(self.settings, self.sessions, claimed.study_version, stage.name)
        heartbeat = _Heartbeat(self.sessions, claimed, self.owner, self.settings.pipeline.lease_seconds)
        heartbeat.start()
        started = time.monotonic()
        extra = {"stage": stage.name, "job": claimed.job_id, "study": study.study_instance_uid}
        self._busy.set()
        try:
            result = stage.run(ctx, study)
        except Exception as exc:
            heartbeat.stop()
            permanent = isinstance(exc, PermanentStageError | RecursionError | InvalidDicomError)
            # Our own errors carry a message written for the operator; anything else needs its type.
            reason = str(exc) if isinstance(exc, GatewayError) else f"{type(exc).__name__}: {exc}"
            state = jobs.fail(
                self.sessions,
                claimed,
                self.owner,
                reason,
                permanent=permanent,
                settings=self.settings.pipeline,
            )
            self.metrics.stage_duration.labels(stage.name, "error").observe(time.monotonic() - started)
            level = logging.ERROR if state == "dead" else logging.WARNING
            log.log(
                level,
                "stage failed (%s): %s",
                state,
                reason,
                extra=extra,
                exc_info=not permanent,
            )
        else:
            heartbeat.stop()
            jobs.complete(self.sessions, claimed, self.owner, result, self._next_stage(stage.name))
            self.metrics.stage_duration.labels(stage.name, "ok").observe(time.monotonic() - started)
            log.info("stage done", extra=extra)
        finally:
            self._busy.clear()

    def _loop(self) -> None:
        poll = self.settings.pipeline.poll_interval
        while not self._stop.is_set():
            try:
                ran = self.run_once()
            except Exception:
                log.exception("worker loop error; retrying")
                ran = False
            if not ran:
                self._stop.wait(poll)

    def start(self) -> None:
        for n in range(self.settings.pipeline.worker_threads):
            thread = threading.Thread(target=self._loop, name=f"worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info(
            "worker started", extra={"owner": self.owner, "stages": ",".join(s.name for s in self.pipeline)}
        )

    def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; give a running stage ``grace`` seconds, then release what we hold."""
        self._stop.set()
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        released = jobs.release(self.sessions, self.owner)
        if released:
            log.info("released claimed jobs", extra={"count": released})


class _Heartbeat:
    """Renews a job's lease while its stage runs, so long stages are not reclaimed."""

    def __init__(
        self, sessions: sessionmaker[Session], claimed: jobs.Claimed, owner: str, lease: float
    ) -> None:
        self._sessions = sessions
        self._claimed = claimed
        self._owner = owner
        self._lease = lease
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{claimed.job_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(5)

    def _beat(self) -> None:
        while not self._done.wait(self._lease / 3):
            try:
                if not jobs.renew(self._sessions, self._claimed, self._owner, self._lease):
                    return
            except Exception:
                log.warning("lease renewal failed", exc_info=True)
