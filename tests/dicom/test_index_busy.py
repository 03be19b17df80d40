"""Ingest never waits on the pipeline: a long write transaction elsewhere holds the SQLite write lock.

A pipeline stage (a publish of a huge report, say) that holds the lock must not turn C-STOREs into
"cannot understand" (0xC000) after a minute: the SCP waits a bounded time, then answers Out of Resources
(0xA700), which senders retry, and stores normally as soon as the lock is free. Read-only command-line
commands neither take the write lock nor run migrations.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture
def index_url(sqlite_index_url: str) -> str:
    """The single-writer lock is SQLite's; PostgreSQL row locks are covered by ``lock_timeout``."""
    return sqlite_index_url


class LockHolder:
    """A publish-like writer: ``BEGIN IMMEDIATE``, one write, and the lock held until :meth:`release`."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("UPDATE studies SET state = state")

    def release(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()


@pytest.fixture
def lock_holder(index_url: str) -> Iterator[Callable[[], LockHolder]]:
    held: list[LockHolder] = []

    def take() -> LockHolder:
        holder = LockHolder(Path(index_url.removeprefix("sqlite:///")))
        held.append(holder)
        return holder

    yield take
    for holder in held:
        with contextlib.suppress(sqlite3.ProgrammingError):
            holder.release()


def store(port: int, ds: Dataset) -> tuple[int, float]:
    ae = AE(ae_title="TEST-SCU")
    ae.acse_timeout = 5
    ae.dimse_timeout = 30
    ae.network_timeout = 30
    ae.add_requested_context(CT_IMAGE, ExplicitVRLittleEndian)
    started = time.monotonic()
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title="GATEWAY")
        assert assoc.is_established
        rsp = assoc.send_c_store(ds)
        status = int(rsp.Status) if "Status" in rsp else -1
        assoc.release()
        return status, time.monotonic() - started
    finally:
        ae.shutdown()


def test_store_while_a_long_write_holds_the_index_gets_out_of_resources_quickly(
    start_scp: Callable[..., Any],
    make_instance: Callable[..., Dataset],
    lock_holder: Callable[[], LockHolder],
) -> None:
    scp = start_scp(dicom={"index_busy_timeout": 1.0})
    holder = lock_holder()
    ds = make_instance("ct")
    status, took = store(scp.port, ds)
    assert 0xA700 <= status <= 0xA7FF, hex(status)
    assert took < 8.0, took
    assert not list(scp.settings.store_dir.rglob("*.dcm"))  # nothing kept that was not acknowledged
    holder.release()
    status, _ = store(scp.port, ds)
    assert status == 0x0000


def test_store_waits_out_a_short_write(
    start_scp: Callable[..., Any],
    make_instance: Callable[..., Dataset],
    lock_holder: Callable[[], LockHolder],
) -> None:
    scp = start_scp(dicom={"index_busy_timeout": 5.0})
    holder = lock_holder()
    threading.Timer(0.5, holder.release).start()
    status, _ = store(scp.port, make_instance("ct"))
    assert status == 0x0000


def gateway_command(*args: str, data_dir: Path, url: str) -> list[str]:
    return [sys.executable, "-m", "gateway", *args, "--data-dir", str(data_dir), "--database-url", url]


def test_read_only_commands_neither_migrate_nor_wait_for_the_write_lock(
    tmp_path: Path, index_url: str, lock_holder: Callable[[], LockHolder]
) -> None:
    lock_holder()
    started = time.monotonic()
    listed = subprocess.run(
        gateway_command("studies", "--json", data_dir=tmp_path / "d", url=index_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip().startswith("[")
    assert time.monotonic() - started < 20


def test_read_only_command_on_an_unmigrated_index_says_so(tmp_path: Path) -> None:
    db = tmp_path / "empty.sqlite3"
    listed = subprocess.run(
        gateway_command("studies", data_dir=tmp_path / "d", url=f"sqlite:///{db}"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode != 0
    assert "migrat" in listed.stderr.lower()
    # Nothing was created or upgraded by a read-only command.
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
