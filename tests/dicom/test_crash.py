"""SIGKILL the gateway mid-push: what it acknowledged survives, nothing half-written does.

A C-STORE is answered Success only once the file is renamed into place, fsynced, and indexed; so after a
kill and a restart every acknowledged instance must be on disk with its digest and in the index, the
restart's sweep must leave no temporary files, and no index row may point at a missing file.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from sqlalchemy import select

from gateway.index.models import Instance
from gateway.store import files
from gateway.store.files import TMP_PREFIX

pytestmark = [pytest.mark.slow]

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
TOTAL = 200
KILL_AFTER = 60


class TestCrash:
    def setup_method(self) -> None:
        self.ae = AE(ae_title="PUSHER")
        self.ae.add_requested_context(CT_IMAGE, ExplicitVRLittleEndian)
        self.ae.acse_timeout = self.ae.dimse_timeout = self.ae.network_timeout = 10

    def teardown_method(self) -> None:
        self.ae.shutdown()

    def test_sigkill_mid_push(
        self,
        gateway_process: Any,
        make_instance: Callable[..., Dataset],
        engines: Any,
    ) -> None:
        study = generate_uid()
        datasets = [make_instance("ct", study_uid=study, instance_number=i) for i in range(TOTAL)]
        gateway_process.start()

        acknowledged: list[str] = []
        enough = threading.Event()
        finished = threading.Event()

        def push() -> None:
            try:
                assoc = self.ae.associate("127.0.0.1", gateway_process.port, ae_title="GATEWAY")
                if not assoc.is_established:
                    return
                for ds in datasets:
                    try:
                        status = assoc.send_c_store(ds)
                    except Exception:
                        break
                    if "Status" not in status:
                        break  # no response: the gateway is gone
                    if int(status.Status) == 0x0000:
                        acknowledged.append(ds.SOPInstanceUID)
                    if len(acknowledged) >= KILL_AFTER:
                        enough.set()
                    if not assoc.is_established:
                        break
                if assoc.is_established:
                    assoc.release()
            finally:
                enough.set()
                finished.set()

        pusher = threading.Thread(target=push, daemon=True)
        pusher.start()
        assert enough.wait(120)
        assert gateway_process.proc is not None
        killed_pid = gateway_process.proc.pid
        gateway_process.kill()
        assert finished.wait(60)
        assert KILL_AFTER <= len(acknowledged) < TOTAL, "the kill came too late to test anything"

        store = gateway_process.data_dir / "instances"
        # A stand-in for a write cut short by a kill, in case this kill landed between writes.
        (store / study).mkdir(parents=True, exist_ok=True)
        leftover = f"{TMP_PREFIX}{generate_uid()}.dcm.{files._HOST}.{killed_pid}.abcd"
        (store / study / leftover).write_bytes(b"half an instance")

        gateway_process.start()  # the restart sweeps temporaries before it listens
        assert [p for p in store.rglob("*") if p.name.startswith(TMP_PREFIX)] == []

        sessions = engines.open(gateway_process.index_url)
        with sessions() as session:
            rows = {r.sop_instance_uid: (Path(r.path), r.digest) for r in session.scalars(select(Instance))}
        for uid in acknowledged:
            assert uid in rows, f"acknowledged {uid} is not indexed"
        for uid, (path, digest) in rows.items():
            assert path.is_file(), f"index row {uid} points at a missing file"
            assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{uid} differs from its digest"
        on_disk = {p.stem for p in store.rglob("*.dcm")}
        # A file may exist without a row only for the one C-STORE the kill interrupted; never more.
        assert len(on_disk - rows.keys()) <= 1

        # The restarted gateway takes the push up again, and lists what its index holds.
        acked = set(acknowledged)
        again = [ds for ds in datasets if ds.SOPInstanceUID not in acked][:5]
        assoc = self.ae.associate("127.0.0.1", gateway_process.port, ae_title="GATEWAY")
        assert assoc.is_established
        statuses = [int(assoc.send_c_store(ds).Status) for ds in again]
        assoc.release()
        assert statuses == [0] * len(again)
        with sessions() as session:
            indexed = set(session.scalars(select(Instance.sop_instance_uid)))
        assert {ds.SOPInstanceUID for ds in again} <= indexed
        listed = gateway_process.run("studies", "--json")
        assert listed.returncode == 0, listed.stderr
        [entry] = json.loads(listed.stdout)
        assert (entry["study_instance_uid"], entry["instances"]) == (study, len(indexed))
