"""Core commands: serve, scp, worker, push, studies, jobs, config."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gateway.settings import Settings

log = logging.getLogger("gateway")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("serve", parents=[common], help="run SCP, worker and HTTP API in one process")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("scp", parents=[common], help="run only the DICOM SCP")
    p.set_defaults(func=cmd_scp)

    p = sub.add_parser("worker", parents=[common], help="run only a pipeline worker")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("push", parents=[common], help="send DICOM files with C-STORE (an SCU)")
    p.add_argument("paths", nargs="+", type=Path, help="files or folders (searched recursively)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=11112)
    p.add_argument("--called-aet", default="GATEWAY")
    p.add_argument("--calling-aet", default="GATEWAY-PUSH")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("studies", parents=[common], help="list studies with their state")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_studies)

    p = sub.add_parser("jobs", parents=[common], help="show the job queue and the dead letter")
    p.add_argument("--json", action="store_true")
    p.add_argument("--state", action="append", help="only jobs in this state (repeatable)")
    jobs_sub = p.add_subparsers(dest="jobs_command")
    r = jobs_sub.add_parser("retry", parents=[common], help="put a dead job back in the queue")
    r.add_argument("job_id", type=int)
    r.set_defaults(func=cmd_jobs_retry)
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("config", parents=[common], help="settings")
    config_sub = p.add_subparsers(dest="config_command", required=True)
    c = config_sub.add_parser("check", parents=[common], help="validate and print the effective settings")
    c.set_defaults(func=cmd_config_check)


def _open(settings: Settings) -> Any:
    from gateway.index.db import open_index

    return open_index(settings.index_url, synchronous_full=settings.dicom.fsync)


def _open_read_only(settings: Settings) -> Any:
    """For commands that only read: no migration and no write lock (a busy pipeline cannot stall them)."""
    from gateway.index.db import open_index_read_only

    return open_index_read_only(settings.index_url)


class _Runtime:
    """The long-running parts of a process, started and stopped in a safe order."""

    def __init__(self, settings: Settings, *, scp: bool, worker: bool) -> None:
        from gateway.metrics import Metrics
        from gateway.pipeline import jobs
        from gateway.store.files import sweep_temporaries

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        swept = sweep_temporaries(settings.store_dir) + sweep_temporaries(settings.artifact_dir)
        if swept:
            log.warning("removed temporary files left by an interrupted write", extra={"count": swept})
        self.settings = settings
        self.sessions = _open(settings)
        if scp:
            from gateway.dicom.ingest import sweep_unindexed

            unindexed = sweep_unindexed(settings, self.sessions)
            if unindexed:
                log.warning("removed stored files that were never indexed", extra={"count": unindexed})
        self.metrics = Metrics()
        self.metrics.add_queue_collector(lambda: jobs.queue_depth(self.sessions))
        self.scp: Any = None
        self.worker: Any = None
        self.children: list[multiprocessing.process.BaseProcess] = []
        if scp:
            from gateway.dicom.scp import Scp

            self.scp = Scp(settings, self.sessions, self.metrics)
        if worker:
            from gateway.pipeline.table import PIPELINE
            from gateway.pipeline.worker import Worker

            self.worker = Worker(settings, self.sessions, self.metrics, PIPELINE)
        self.delivery: Any = None
        self.orders: Any = None
        if scp and settings.delivery.orders.enabled:
            from gateway.hl7.listener import Hl7Listener

            self.orders = Hl7Listener(settings.delivery.orders, self.sessions)
        if worker and settings.delivery.enabled:
            from gateway.delivery import build_senders
            from gateway.delivery.subscriptions import queue_heartbeats
            from gateway.delivery.worker import DeliveryWorker
            from gateway.pipeline.stages.publish import base_url

            fhir_base = f"{base_url(settings)}/fhir"
            self.delivery = DeliveryWorker(
                settings.delivery,
                self.sessions,
                build_senders(settings.delivery, self.sessions, settings.ae_title, settings.dicom),
                periodic=[lambda: queue_heartbeats(self.sessions, fhir_base)],
            )

    def start(self) -> None:
        if self.scp is not None:
            self.scp.start()
            for _ in range(self.settings.dicom.processes - 1):
                self.children.append(self._spawn_scp())
        if self.worker is not None:
            self.worker.start()
        if self.delivery is not None:
            self.delivery.start()
        if self.orders is not None:
            self.orders.start()

    def _spawn_scp(self) -> multiprocessing.process.BaseProcess:
        # Settings travel as Python objects: a JSON dump would carry the masked secrets, not the values.
        child_settings = self.settings.model_copy(
            update={"dicom": self.settings.dicom.model_copy(update={"processes": 1})}
        )
        child = multiprocessing.get_context("spawn").Process(
            target=_scp_child, args=(child_settings.model_dump(),), daemon=True, name="gateway-scp"
        )
        child.start()
        return child

    def supervise(self) -> None:
        """Replace an SCP process that died, so the port keeps all its listeners."""
        for index, child in enumerate(self.children):
            if not child.is_alive():
                log.error("SCP process exited; starting another", extra={"exitcode": child.exitcode})
                self.children[index] = self._spawn_scp()

    def stop(self) -> None:
        log.info("shutting down")
        for child in self.children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signal.SIGTERM)
        if self.scp is not None:
            self.scp.stop()
        for child in self.children:
            child.join(35)
        if self.worker is not None:
            self.worker.stop()
        if self.delivery is not None:
            self.delivery.stop()
        if self.orders is not None:
            self.orders.stop()


def _scp_child(settings_data: dict[str, Any]) -> None:
    from gateway.logs import configure_logging

    settings = Settings.model_validate(settings_data)
    configure_logging(settings.log)
    runtime = _Runtime(settings, scp=True, worker=False)
    runtime.start()
    _wait_for_signal()
    runtime.stop()


def _wait_for_signal(every_second: Callable[[], None] | None = None) -> None:
    stop = threading.Event()

    def _handler(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    while not stop.wait(1.0):
        if every_second is not None:
            every_second()


def _server_class() -> Any:
    import uvicorn

    class QuietSignalsServer(uvicorn.Server):
        """uvicorn re-raises SIGTERM after its own shutdown, which would kill the process before the SCP
        and worker stop; we own the signal handlers instead."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return QuietSignalsServer


def _web_routes(runtime: _Runtime, settings: Settings, token: str) -> list[Any]:
    """``/dicomweb`` (STOW-RS through the same Ingest as C-STORE) and the review page ``/ui``."""
    from gateway.auth import authenticator
    from gateway.dicom.ingest import Ingest
    from gateway.dicomweb.access import Access
    from gateway.dicomweb.routes import build_dicomweb_routes
    from gateway.ui.routes import build_ui_routes

    access = Access(
        token,
        signed_url_lifetime=settings.dicomweb.signed_url_lifetime,
        authenticator=authenticator(settings, token),
    )
    ingest = Ingest(settings, runtime.sessions, runtime.metrics)
    return [
        *build_dicomweb_routes(runtime.sessions, settings, access, ingest),
        *build_ui_routes(runtime.sessions, settings, access),
    ]


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    _QuietSignalsServer = _server_class()

    from gateway.http.app import build_app
    from gateway.http.auth import resolve_api_token

    runtime = _Runtime(settings, scp=True, worker=True)
    token = resolve_api_token(settings)
    extra_routes: list[Any] = []
    try:
        from gateway.fhir.api import build_fhir_routes
    except ImportError:
        log.warning("FHIR API not available in this build")
    else:
        from gateway.delivery.subscriptions import build_subscription_routes
        from gateway.pipeline.stages.publish import base_url

        # Subscription routes first: the FHIR API's catch-all answers 405 to other writes.
        extra_routes = [
            *build_subscription_routes(runtime.sessions, f"{base_url(settings)}/fhir", token, settings),
            *build_fhir_routes(runtime.sessions, settings, token),
        ]
    extra_routes += _web_routes(runtime, settings, token)
    app = build_app(settings, runtime.sessions, runtime.metrics, token, extra_routes=extra_routes)
    runtime.start()
    config = uvicorn.Config(
        app,
        host=settings.http.host,
        port=settings.http_port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = _QuietSignalsServer(config)

    def _exit(signum: int, _frame: Any) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    log.info("HTTP API listening", extra={"host": settings.http.host, "port": settings.http_port})

    def _supervise() -> None:
        while not server.should_exit:
            runtime.supervise()
            time.sleep(1.0)

    threading.Thread(target=_supervise, name="supervise", daemon=True).start()
    try:
        server.run()  # returns once a signal set should_exit
    finally:
        runtime.stop()
    return 0


def cmd_scp(args: argparse.Namespace, settings: Settings) -> int:
    runtime = _Runtime(settings, scp=True, worker=False)
    runtime.start()
    _wait_for_signal(runtime.supervise)
    runtime.stop()
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    runtime = _Runtime(settings, scp=False, worker=True)
    runtime.start()
    _wait_for_signal()
    runtime.stop()
    return 0


def cmd_push(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.dicom.push import push_files

    result = push_files(
        args.paths, host=args.host, port=args.port, called_aet=args.called_aet, calling_aet=args.calling_aet
    )
    print(f"sent {result.sent}, failed {result.failed}, skipped {result.skipped} (not DICOM)")
    for path, reason in result.failures[:20]:
        print(f"  {path}: {reason}", file=sys.stderr)
    return 0 if result.failed == 0 and result.sent > 0 else 1


def cmd_studies(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from gateway.index.models import Study
    from gateway.index.repo import list_studies

    sessions = _open_read_only(settings)
    with sessions() as session:
        studies = list_studies(session)
        # Why each study became stable (MPPS, report references, quiet timer): gateway.dicom.completion.
        stable = dict(session.execute(select(Study.study_instance_uid, Study.stable_reason)).tuples().all())
    if args.json:
        rows = [{**s.as_json(), "stable_reason": stable.get(s.study_instance_uid)} for s in studies]
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'STUDY INSTANCE UID':<64} {'STATE':<10} {'STAGE':<14} {'INST':>5} {'DOCS':>4} UPDATED")
    for s in studies:
        print(
            f"{s.study_instance_uid:<64} {s.state:<10} {s.stage or '-':<14} {s.instances:>5} "
            f"{s.documents:>4} {s.updated_at:%Y-%m-%d %H:%M:%S}"
        )
        if s.state_reason:
            print(f"    reason: {s.state_reason}")
        if stable.get(s.study_instance_uid) and stable[s.study_instance_uid] != s.state_reason:
            print(f"    stable: {stable[s.study_instance_uid]}")
    return 0


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.index.models import Study
    from gateway.index.repo import list_jobs

    sessions = _open_read_only(settings)
    with sessions() as session:
        rows = list_jobs(session, states=tuple(args.state) if args.state else None)
        uids = {
            s.id: s.study_instance_uid
            for s in session.query(Study).filter(Study.id.in_({j.study_fk for j in rows}))
        }
    out = [
        {
            "id": j.id,
            "study_instance_uid": uids.get(j.study_fk),
            "stage": j.stage,
            "version": j.study_version,
            "state": j.state,
            "attempts": j.attempts,
            "available_at": j.available_at.isoformat(),
            "lease_owner": j.lease_owner,
            "last_error": j.last_error,
        }
        for j in rows
    ]
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    dead = [j for j in out if j["state"] == "dead"]
    print(f"{'ID':>6} {'STAGE':<15} {'V':>2} {'STATE':<11} {'TRIES':>5} STUDY")
    for j in out:
        print(
            f"{j['id']:>6} {j['stage']:<15} {j['version']:>2} {j['state']:<11} {j['attempts']:>5} "
            f"{j['study_instance_uid']}"
        )
    if dead:
        print(f"\ndead letter ({len(dead)}): retry with `gateway jobs retry ID`")
        for j in dead:
            print(f"  {j['id']}: {j['last_error']}")
    return 0


def cmd_jobs_retry(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.pipeline.jobs import retry

    if retry(_open(settings), args.job_id):
        print(f"job {args.job_id} queued again")
        return 0
    print(f"job {args.job_id} not found or not dead", file=sys.stderr)
    return 1


def cmd_config_check(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(settings.effective(), indent=2, ensure_ascii=False))
    print("settings OK", file=sys.stderr)
    return 0
