"""Delivery commands: ``outbox`` (list, ``retry ID``) and ``deliver`` (run only the outbox worker)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gateway.settings import Settings


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("outbox", parents=[common], help="show outgoing messages and the dead letter")
    p.add_argument("--json", action="store_true")
    p.add_argument("--state", action="append", help="only messages in this state (repeatable)")
    p.add_argument("--limit", type=int, default=500)
    outbox_sub = p.add_subparsers(dest="outbox_command")
    r = outbox_sub.add_parser("retry", parents=[common], help="put a dead message back in the queue")
    r.add_argument("row_id", type=int)
    r.set_defaults(func=cmd_outbox_retry)
    p.set_defaults(func=cmd_outbox)

    p = sub.add_parser("deliver", parents=[common], help="run only the outbox delivery worker")
    p.set_defaults(func=cmd_deliver)


def _open(settings: Settings) -> Any:
    from gateway.index.db import open_index

    return open_index(settings.index_url, synchronous_full=settings.dicom.fsync)


def cmd_outbox(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.delivery.outbox import as_json, list_rows

    with _open(settings)() as session:
        rows = [as_json(r) for r in list_rows(session, states=tuple(args.state or ()), limit=args.limit)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'ID':>6} {'DESTINATION':<16} {'KIND':<8} {'MESSAGE ID':<22} {'STATE':<8} {'TRIES':>5} SENT")
    for r in rows:
        print(
            f"{r['id']:>6} {r['destination']:<16} {r['kind']:<8} {r['message_id'] or '-':<22} "
            f"{r['state']:<8} {r['attempts']:>5} {r['sent_at'] or '-'}"
        )
    dead = [r for r in rows if r["state"] == "dead"]
    if dead:
        print(f"\ndead letter ({len(dead)}): retry with `gateway outbox retry ID`")
        for r in dead:
            print(f"  {r['id']}: {r['last_error']}")
    return 0


def cmd_outbox_retry(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.delivery.outbox import retry

    if retry(_open(settings), args.row_id):
        print(f"message {args.row_id} queued again")
        return 0
    print(f"message {args.row_id} not found, or neither dead nor waiting", file=sys.stderr)
    return 1


def cmd_deliver(args: argparse.Namespace, settings: Settings) -> int:
    import logging
    import signal
    import threading

    from gateway.delivery import build_senders
    from gateway.delivery.subscriptions import queue_heartbeats
    from gateway.delivery.worker import DeliveryWorker
    from gateway.pipeline.stages.publish import base_url

    sessions = _open(settings)
    fhir_base = f"{base_url(settings)}/fhir"
    worker = DeliveryWorker(
        settings.delivery,
        sessions,
        build_senders(settings.delivery, sessions, settings.ae_title, settings.dicom),
        periodic=[lambda: queue_heartbeats(sessions, fhir_base)],
    )
    if not (settings.delivery.hl7 or settings.delivery.fhir):
        logging.getLogger("gateway").info(
            "no HL7 or FHIR destinations configured; delivering subscriptions only"
        )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    worker.start()
    stop.wait()
    worker.stop()
    return 0
