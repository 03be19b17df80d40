"""kill -9 of the delivery process at arbitrary points, then restart: no message lost, and every message
seen by the receiver exactly once by its message id (MSH-10), in order per patient."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from hl7_peer import Hl7Peer, check_oru
from publication import publication
from sqlalchemy import select

from gateway.delivery import outbox
from gateway.delivery.oru import KIND, options
from gateway.delivery.settings import Hl7Destination
from gateway.hl7.oru import build_oru
from gateway.index.db import open_index
from gateway.index.models import Outbox, Patient, Study

ROOT = Path(__file__).resolve().parents[2]


def _config(path: Path, port: int) -> Path:
    path.write_text(
        "[delivery]\nmax_attempts = 50\nbackoff_base = 0.05\nbackoff_max = 0.2\nlease_seconds = 1.0\n"
        'poll_interval = 0.02\n\n[[delivery.hl7]]\nname = "emr"\nhost = "127.0.0.1"\n'
        f"port = {port}\nack_timeout = 5\n"
    )
    return path


def _start(data_dir: Path, config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "deliver", "--data-dir", str(data_dir), "--config", str(config)],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def test_kill_minus_nine_loses_nothing(tmp_path: Path) -> None:
    peer = Hl7Peer(delay=0.03).start()
    peer.answer = lambda item: (check_oru(item), ("AA", ""))[1]
    data_dir = tmp_path / "data"
    sessions = open_index(f"sqlite:///{data_dir / 'index.sqlite3'}")
    dest = Hl7Destination(name="emr", host="127.0.0.1", port=peer.port)
    expected: dict[str, list[str]] = {}
    with sessions.begin() as session:
        patient = Patient(patient_id="P", issuer="")
        session.add(patient)
        session.flush()
        study = Study(study_instance_uid="1.2.3", patient_fk=patient.id)
        session.add(study)
        session.flush()
        for n in range(60):
            key = f"Patient/p{n % 4}"
            mid = outbox.message_id("test", n)
            expected.setdefault(key, []).append(mid)
            outbox.enqueue(
                session,
                study_fk=study.id,
                destination="emr",
                kind=KIND,
                message_id=mid,
                order_key=key,
                payload={"er7": build_oru(publication(), options(dest, mid)), "charset": dest.charset},
            )
    config = _config(tmp_path / "gateway.toml", peer.port)
    log = tmp_path / "deliver.log"
    rng = random.Random(12)
    kills = 0
    progress: list[int] = []
    try:
        for _ in range(4):  # kill -9 at arbitrary points while messages are in flight
            proc = _start(data_dir, config, log)
            # Let a few messages through, then kill at an arbitrary point of the next exchange(s).
            target = len(peer.received) + rng.randint(3, 10)
            until = time.monotonic() + 60
            while len(peer.received) < target and time.monotonic() < until:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.05))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            kills += 1
            progress.append(len(peer.received))
        proc = _start(data_dir, config, log)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with sessions() as session:
                states = [r.state for r in session.scalars(select(Outbox))]
            if all(s == "sent" for s in states):
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        peer.stop()
    assert kills == 4
    # Each kill landed while messages were going out: some before it, some after.
    assert 0 < progress[0] < progress[1] < progress[2] < progress[3] < 60, progress
    assert all(s == "sent" for s in states), log.read_text()[-3000:]
    ids = peer.ids
    want = {m for ms in expected.values() for m in ms}
    assert set(ids) == want  # nothing lost, nothing unknown
    # The receiver dedupes by MSH-10: what it sees once per id is each message exactly once, per patient in
    # queue order. A redelivery (killed between send and commit) carries the same id.
    key_of = {m: k for k, ms in expected.items() for m in ms}
    first_seen: dict[str, list[str]] = {}
    for item in peer.received:
        key = key_of[item.message_id]
        if item.message_id not in first_seen.setdefault(key, []):
            first_seen[key].append(item.message_id)
    assert first_seen == expected
    duplicates = len(ids) - len(set(ids))
    print(
        f"\n{len(want)} messages, {kills} kills (received before each: {progress}), {duplicates} redelivered"
    )
    assert duplicates <= kills  # at most the one in flight per kill
    assert peer.errors == []
