"""The SCP over real associations: pynetdicom SCUs against ``gateway.dicom.scp.Scp`` on a free port.

Every test runs on both index back ends (the ``index_url`` fixture is parametrized).
"""

from __future__ import annotations

import hashlib
import io
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)
from pynetdicom import AE, _config, evt
from pynetdicom.dsutils import encode
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.dicom import handlers
from gateway.dicom.commitment import NO_SUCH_OBJECT_INSTANCE
from gateway.dicom.commitment import SOP_CLASS as COMMITMENT_CLASS
from gateway.dicom.commitment import SOP_INSTANCE as COMMITMENT_INSTANCE
from gateway.index.models import Instance, Study
from gateway.store.files import TMP_PREFIX, file_sha256

VERIFICATION = "1.2.840.10008.1.1"
STORAGE_CLASSES = [
    "1.2.840.10008.5.1.4.1.1.2",  # CT
    "1.2.840.10008.5.1.4.1.1.7",  # SC
    "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.59",  # KOS
]
SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, JPEGBaseline8Bit]


class ScuTestBase:
    """Opens SCU associations and shuts every SCU AE down in teardown."""

    def setup_method(self) -> None:
        self.aes: list[AE] = []

    def teardown_method(self) -> None:
        for ae in self.aes:
            ae.shutdown()

    def associate(
        self,
        port: int,
        *,
        calling: str = "TEST-SCU",
        called: str = "GATEWAY",
        contexts: list[str] | None = None,
        tls_args: tuple[ssl.SSLContext, str] | None = None,
        evt_handlers: list[Any] | None = None,
    ) -> Any:
        ae = AE(ae_title=calling)
        ae.acse_timeout = 5
        ae.dimse_timeout = 10
        ae.network_timeout = 10
        # One context per (class, syntax) so each dataset goes in its own syntax, never converted.
        for sop_class in contexts if contexts is not None else [VERIFICATION, *STORAGE_CLASSES]:
            for syntax in SYNTAXES if sop_class in STORAGE_CLASSES else [ExplicitVRLittleEndian]:
                ae.add_requested_context(sop_class, syntax)
        self.aes.append(ae)
        return ae.associate("127.0.0.1", port, ae_title=called, tls_args=tls_args, evt_handlers=evt_handlers)

    def store(self, port: int, *datasets: Dataset, **kwargs: Any) -> list[int]:
        assoc = self.associate(port, **kwargs)
        assert assoc.is_established
        try:
            return [int(assoc.send_c_store(ds).Status) for ds in datasets]
        finally:
            assoc.release()


def index_sessions(scp: Any) -> sessionmaker[Session]:
    """The SCP's own session factory: the index it writes to."""
    sessions: sessionmaker[Session] = scp.ingest._sessions
    return sessions


def indexed(scp: Any, sop_uid: str) -> Instance | None:
    with index_sessions(scp)() as session:
        return session.scalars(select(Instance).where(Instance.sop_instance_uid == sop_uid)).one_or_none()


def instance_count(scp: Any) -> int:
    with index_sessions(scp)() as session:
        return int(session.scalar(select(func.count(Instance.id))) or 0)


def store_files(scp: Any) -> list[Path]:
    root: Path = scp.settings.store_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def expected_path(scp: Any, ds: Dataset) -> Path:
    root: Path = scp.settings.store_dir
    return root / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"


def sent_bytes(ds: Dataset) -> bytes:
    """The dataset bytes pynetdicom puts on the wire for ``ds`` (its own transfer syntax)."""
    ts = ds.file_meta.TransferSyntaxUID
    data = encode(ds, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated)
    assert data is not None
    return data


def assert_nothing_stored(scp: Any) -> None:
    assert instance_count(scp) == 0
    assert store_files(scp) == []


def wait_for_commitment_threads(timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name.startswith("commit-"):
            thread.join(max(0.0, deadline - time.monotonic()))


def is_failure(status: int) -> bool:
    return status not in (0x0000, 0xB000, 0xB006, 0xB007)


class TestEcho(ScuTestBase):
    @pytest.fixture
    def index_url(self, sqlite_index_url: str) -> str:
        """Verification does not touch the index: one back end is enough."""
        return sqlite_index_url

    def test_c_echo(self, scp: Any) -> None:
        assoc = self.associate(scp.port, contexts=[VERIFICATION])
        assert assoc.is_established
        status = assoc.send_c_echo()
        assoc.release()
        assert status.Status == 0x0000


class TestStore(ScuTestBase):
    @pytest.mark.parametrize("kind", ["ct", "pdf", "sr", "kos", "sc"])
    def test_store_is_durable_indexed_and_byte_exact(
        self, scp: Any, make_instance: Callable[..., Dataset], kind: str
    ) -> None:
        ds = make_instance(kind, accession="ACC-" + kind)
        assert self.store(scp.port, ds) == [0x0000]

        path = expected_path(scp, ds)
        assert path.is_file()
        on_disk = path.read_bytes()
        assert on_disk[128:132] == b"DICM"
        assert on_disk.endswith(sent_bytes(ds))
        assert dcmread(path).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian

        row = indexed(scp, ds.SOPInstanceUID)
        assert row is not None
        assert row.sop_class_uid == ds.SOPClassUID
        assert row.path == str(path)
        assert row.size == len(on_disk)
        assert row.digest == hashlib.sha256(on_disk).hexdigest()
        assert row.calling_ae == "TEST-SCU"
        with index_sessions(scp)() as session:
            study = session.scalars(select(Study)).one()
            assert study.study_instance_uid == ds.StudyInstanceUID
            assert study.accession_number == "ACC-" + kind
            assert study.state == "receiving"

    def test_several_instances_of_one_study(self, scp: Any, make_instance: Callable[..., Dataset]) -> None:
        study, series = generate_uid(), generate_uid()
        datasets = [
            make_instance("ct", study_uid=study, series_uid=series, instance_number=i) for i in range(5)
        ]
        datasets.append(make_instance("pdf", study_uid=study))
        assert self.store(scp.port, *datasets) == [0] * 6
        assert instance_count(scp) == 6
        with index_sessions(scp)() as session:
            assert session.scalar(select(func.count(Study.id))) == 1

    @staticmethod
    def _rle(make_instance: Callable[..., Dataset]) -> Dataset:
        ds = make_instance("ct")
        ds.compress(RLELossless)
        return ds

    @staticmethod
    def _jpeg(make_instance: Callable[..., Dataset]) -> Dataset:
        ds = make_instance("sc")
        buf = io.BytesIO()
        Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 3, mode="L").save(
            buf, "JPEG", quality=90
        )
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "01"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        return ds

    @pytest.mark.parametrize("syntax", ["rle", "jpeg"])
    def test_compressed_stored_as_received(
        self, scp: Any, make_instance: Callable[..., Dataset], syntax: str
    ) -> None:
        ds = self._rle(make_instance) if syntax == "rle" else self._jpeg(make_instance)
        ts = ds.file_meta.TransferSyntaxUID
        assert self.store(scp.port, ds) == [0x0000]

        path = expected_path(scp, ds)
        on_disk = path.read_bytes()
        assert on_disk.endswith(sent_bytes(ds)), "the dataset was transcoded"
        stored = dcmread(path)
        assert stored.file_meta.TransferSyntaxUID == ts
        assert stored.PixelData == ds.PixelData
        row = indexed(scp, ds.SOPInstanceUID)
        assert row is not None
        assert row.transfer_syntax_uid == ts
        assert row.digest == file_sha256(path)


class TestDuplicates(ScuTestBase):
    @staticmethod
    def _pair(make_instance: Callable[..., Dataset]) -> tuple[Dataset, Dataset]:
        first = make_instance("ct")
        second = make_instance(
            "ct",
            study_uid=first.StudyInstanceUID,
            series_uid=first.SeriesInstanceUID,
            sop_uid=first.SOPInstanceUID,
        )
        second.ImageComments = "a different copy"
        return first, second

    def test_keep_first(self, start_scp: Callable[..., Any], make_instance: Callable[..., Dataset]) -> None:
        scp = start_scp(dicom={"duplicate_policy": "keep-first"})
        first, second = self._pair(make_instance)
        assert self.store(scp.port, first, second) == [0x0000, 0x0000]
        path = expected_path(scp, first)
        assert path.read_bytes().endswith(sent_bytes(first))
        row = indexed(scp, first.SOPInstanceUID)
        assert row is not None and row.digest == file_sha256(path)
        assert instance_count(scp) == 1

    def test_overwrite(self, start_scp: Callable[..., Any], make_instance: Callable[..., Dataset]) -> None:
        scp = start_scp(dicom={"duplicate_policy": "overwrite"})
        first, second = self._pair(make_instance)
        assert self.store(scp.port, first, second) == [0x0000, 0x0000]
        path = expected_path(scp, first)
        assert path.read_bytes().endswith(sent_bytes(second))
        row = indexed(scp, first.SOPInstanceUID)
        assert row is not None and row.digest == file_sha256(path)
        assert instance_count(scp) == 1
        assert [p.name for p in store_files(scp)] == [path.name]

    def test_reject_different(
        self, start_scp: Callable[..., Any], make_instance: Callable[..., Dataset]
    ) -> None:
        scp = start_scp(dicom={"duplicate_policy": "reject-different"})
        first, second = self._pair(make_instance)
        statuses = self.store(scp.port, first, first, second)
        assert statuses[:2] == [0x0000, 0x0000], "an identical copy is accepted"
        assert is_failure(statuses[2])
        assert statuses[2] == handlers.DUPLICATE_DIFFERENT
        path = expected_path(scp, first)
        assert path.read_bytes().endswith(sent_bytes(first))
        row = indexed(scp, first.SOPInstanceUID)
        assert row is not None and row.digest == file_sha256(path)


class TestAssociationRules(ScuTestBase):
    @pytest.fixture
    def index_url(self, sqlite_index_url: str) -> str:
        """Association negotiation happens before any index access: one back end is enough."""
        return sqlite_index_url

    def test_any_calling_ae_without_peers(self, scp: Any) -> None:
        for calling in ("ANYONE", "MODALITY-7"):
            assoc = self.associate(scp.port, calling=calling, contexts=[VERIFICATION])
            assert assoc.is_established
            assert assoc.send_c_echo().Status == 0
            assoc.release()

    def test_known_peer_accepted_unknown_rejected(self, start_scp: Callable[..., Any]) -> None:
        scp = start_scp(dicom={"peers": [{"ae_title": "MODALITY", "hosts": ["127.0.0.1"]}]})
        assoc = self.associate(scp.port, calling="MODALITY", contexts=[VERIFICATION])
        assert assoc.is_established
        assoc.release()

        assoc = self.associate(scp.port, calling="STRANGER", contexts=[VERIFICATION])
        assert assoc.is_rejected
        rj = assoc.acceptor.primitive
        assert (rj.result, rj.result_source, rj.diagnostic) == (0x01, 0x01, 0x03)

    def test_peer_from_another_host_rejected(self, start_scp: Callable[..., Any]) -> None:
        scp = start_scp(dicom={"peers": [{"ae_title": "MODALITY", "hosts": ["10.1.2.0/24"]}]})
        assoc = self.associate(scp.port, calling="MODALITY", contexts=[VERIFICATION])
        assert assoc.is_rejected
        rj = assoc.acceptor.primitive
        assert (rj.result, rj.result_source, rj.diagnostic) == (0x01, 0x01, 0x03)

    def test_wrong_called_ae_rejected(self, scp: Any) -> None:
        assoc = self.associate(scp.port, called="NOT-GATEWAY", contexts=[VERIFICATION])
        assert assoc.is_rejected
        rj = assoc.acceptor.primitive
        assert (rj.result, rj.result_source, rj.diagnostic) == (0x01, 0x01, 0x07)

    def test_rejected_association_stores_nothing(
        self, start_scp: Callable[..., Any], make_instance: Callable[..., Dataset]
    ) -> None:
        scp = start_scp(dicom={"peers": [{"ae_title": "MODALITY"}]})
        assoc = self.associate(scp.port, calling="STRANGER")
        assert not assoc.is_established
        assert_nothing_stored(scp)

    def test_max_associations(self, start_scp: Callable[..., Any]) -> None:
        scp = start_scp(dicom={"max_associations": 1})
        first = self.associate(scp.port, contexts=[VERIFICATION])
        assert first.is_established
        second = self.associate(scp.port, contexts=[VERIFICATION])
        assert second.is_rejected
        rj = second.acceptor.primitive
        assert (rj.result, rj.result_source, rj.diagnostic) == (0x02, 0x03, 0x02)
        assert first.send_c_echo().Status == 0
        first.release()
        # The slot frees up once the first association is gone.
        deadline = time.monotonic() + 5
        while scp.ae.active_associations and time.monotonic() < deadline:
            time.sleep(0.02)
        third = self.associate(scp.port, contexts=[VERIFICATION])
        assert third.is_established
        third.release()


class TestRefusals(ScuTestBase):
    def test_instance_over_size_limit(
        self, start_scp: Callable[..., Any], make_instance: Callable[..., Dataset]
    ) -> None:
        scp = start_scp(dicom={"max_instance_bytes": 4096})
        small = make_instance("ct")
        big = make_instance("ct")
        big.ImageComments = "x" * 8000
        assert self.store(scp.port, big, small) == [handlers.OUT_OF_RESOURCES, 0x0000]
        assert indexed(scp, big.SOPInstanceUID) is None
        assert not expected_path(scp, big).exists()
        assert instance_count(scp) == 1

    def test_disk_full(self, start_scp: Callable[..., Any], make_instance: Callable[..., Dataset]) -> None:
        scp = start_scp(dicom={"min_free_bytes": 2**62})
        assert self.store(scp.port, make_instance("ct"), make_instance("pdf")) == [0xA700, 0xA700]
        assert_nothing_stored(scp)

    @pytest.mark.parametrize("cut", [1, 40, 300])
    def test_truncated_dataset(
        self,
        scp: Any,
        make_instance: Callable[..., Dataset],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        cut: int,
    ) -> None:
        path = tmp_path / "cut.dcm"
        make_instance("ct", path=path)
        data = path.read_bytes()
        path.write_bytes(data[:-cut])
        # Send the file's bytes as they are, without pydicom decoding and re-encoding them.
        monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
        assoc = self.associate(scp.port)
        assert assoc.is_established
        status = assoc.send_c_store(path)
        assoc.release()
        assert 0xC000 <= int(status.Status) <= 0xCFFF
        assert_nothing_stored(scp)

    def test_garbage_dataset(
        self, scp: Any, make_instance: Callable[..., Dataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "garbage.dcm"
        ds = make_instance("ct", path=path)
        data = path.read_bytes()
        header = len(data) - len(sent_bytes(ds))
        path.write_bytes(data[:header] + bytes(range(256)) * 4)
        monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
        assoc = self.associate(scp.port)
        status = assoc.send_c_store(path)
        assoc.release()
        assert 0xC000 <= int(status.Status) <= 0xCFFF
        assert_nothing_stored(scp)

    @pytest.mark.parametrize("missing", ["StudyInstanceUID", "SeriesInstanceUID"])
    def test_missing_uid(self, scp: Any, make_instance: Callable[..., Dataset], missing: str) -> None:
        ds = make_instance("sr")
        delattr(ds, missing)
        [status] = self.store(scp.port, ds)
        assert 0xC000 <= status <= 0xCFFF
        assert_nothing_stored(scp)

    def test_sop_uid_differs_from_command(self, scp: Any, make_instance: Callable[..., Dataset]) -> None:
        ds = make_instance("ct")
        assoc = self.associate(scp.port)
        # pynetdicom takes the Affected SOP Instance UID from the dataset; change it after encoding.
        original = encode

        def lying_encode(d: Dataset, *args: Any) -> bytes | None:
            d2 = d.copy()
            d2.SOPInstanceUID = generate_uid()
            return original(d2, *args)

        import pynetdicom.association as association

        association_encode = association.encode
        association.encode = lying_encode
        try:
            status = assoc.send_c_store(ds)
        finally:
            association.encode = association_encode
            assoc.release()
        assert 0xC000 <= int(status.Status) <= 0xCFFF
        assert_nothing_stored(scp)

    @pytest.mark.parametrize(
        ("keyword", "value"),
        [
            ("StudyInstanceUID", "1.2.3/../../etc"),
            ("SeriesInstanceUID", "../../../../tmp/x"),
            ("StudyInstanceUID", "1.2.3\x00/x"),
            ("SeriesInstanceUID", "/etc/passwd"),
        ],
    )
    def test_path_traversal_refused(
        self, scp: Any, make_instance: Callable[..., Dataset], tmp_path: Path, keyword: str, value: str
    ) -> None:
        ds = make_instance("ct")
        setattr(ds, keyword, value)
        before = {p for p in tmp_path.rglob("*")}
        [status] = self.store(scp.port, ds)
        assert status == handlers.INVALID_UID
        assert_nothing_stored(scp)
        created = {p for p in tmp_path.rglob("*")} - before
        data_dir = scp.settings.data_dir.resolve()
        assert all(data_dir in p.resolve().parents or p.resolve() == data_dir for p in created), created
        assert not any(p.name.endswith(".dcm") for p in created)

    def test_abort_keeps_acknowledged_and_nothing_half_stored(
        self, scp: Any, make_instance: Callable[..., Dataset]
    ) -> None:
        study = generate_uid()
        small = [make_instance("ct", study_uid=study, instance_number=i) for i in range(3)]
        big = make_instance("ct", study_uid=study, instance_number=9)
        big.Rows = big.Columns = 1024
        big.PixelData = np.zeros((1024, 1024), dtype=np.uint16).tobytes()

        assoc = self.associate(scp.port)
        assert assoc.is_established
        acknowledged = [ds.SOPInstanceUID for ds in small if int(assoc.send_c_store(ds).Status) == 0]
        assert len(acknowledged) == 3

        # Abort while a large instance is on its way (or just answered): whatever the timing, the store must
        # hold only whole, indexed instances. The sender thread waits out its DIMSE timeout; it is a daemon.
        sender = threading.Thread(target=lambda: assoc.send_c_store(big), daemon=True)
        sender.start()
        time.sleep(0.02)
        assoc.abort()
        deadline = time.monotonic() + 5
        while scp.ae.active_associations and time.monotonic() < deadline:
            time.sleep(0.02)

        for uid in acknowledged:
            row = indexed(scp, uid)
            assert row is not None
            assert file_sha256(Path(row.path)) == row.digest
        with index_sessions(scp)() as session:
            rows = {r.path: r.digest for r in session.scalars(select(Instance))}
        files = store_files(scp)
        assert not [p for p in files if p.name.startswith(TMP_PREFIX)]
        # Every file is indexed with its digest, and every indexed file is complete.
        assert {str(p): file_sha256(p) for p in files} == rows


# A requester that waits for the report on its association (Storage Commitment is refused to one that neither
# waits nor has a port configured: see gateway.dicom.commitment).
WAITING_PEER = {"ae_title": "TEST-SCU", "waits_for_commitment": True}


class TestStorageCommitment(ScuTestBase):
    def test_n_action_then_n_event_report_on_same_association(
        self,
        start_scp: Callable[..., Any],
        make_instance: Callable[..., Dataset],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        scp = start_scp(dicom={"peers": [WAITING_PEER]})
        stored = make_instance("ct")
        unknown_uid = generate_uid()
        reports: list[tuple[int, Dataset]] = []
        got = threading.Event()

        def on_report(event: evt.Event) -> tuple[int, None]:
            reports.append((int(event.request.EventTypeID), event.event_information))
            got.set()
            return 0x0000, None

        assoc = self.associate(
            scp.port,
            contexts=[*STORAGE_CLASSES, COMMITMENT_CLASS],
            evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)],
        )
        assert assoc.is_established
        assert int(assoc.send_c_store(stored).Status) == 0

        request = Dataset()
        request.TransactionUID = generate_uid()
        refs = []
        for sop_class, sop_uid in (
            (stored.SOPClassUID, stored.SOPInstanceUID),
            (stored.SOPClassUID, unknown_uid),
        ):
            item = Dataset()
            item.ReferencedSOPClassUID = sop_class
            item.ReferencedSOPInstanceUID = sop_uid
            refs.append(item)
        request.ReferencedSOPSequence = Sequence(refs)
        status, _reply = assoc.send_n_action(request, 1, COMMITMENT_CLASS, COMMITMENT_INSTANCE)
        assert status.Status == 0x0000
        assert got.wait(10), "no N-EVENT-REPORT on the association"
        wait_for_commitment_threads()
        assoc.release()
        assert not [r for r in caplog.records if r.name.startswith("gateway") and r.levelname == "ERROR"]

        [(event_type, info)] = reports
        assert event_type == 2
        assert info.TransactionUID == request.TransactionUID
        assert [i.ReferencedSOPInstanceUID for i in info.ReferencedSOPSequence] == [stored.SOPInstanceUID]
        [failed] = info.FailedSOPSequence
        assert failed.ReferencedSOPInstanceUID == unknown_uid
        assert failed.FailureReason == NO_SUCH_OBJECT_INSTANCE

    def test_all_held_is_event_type_1(
        self, start_scp: Callable[..., Any], make_instance: Callable[..., Dataset]
    ) -> None:
        scp = start_scp(dicom={"peers": [WAITING_PEER]})
        stored = [make_instance("ct"), make_instance("pdf")]
        reports: list[tuple[int, Dataset]] = []
        got = threading.Event()

        def on_report(event: evt.Event) -> tuple[int, None]:
            reports.append((int(event.request.EventTypeID), event.event_information))
            got.set()
            return 0x0000, None

        assoc = self.associate(
            scp.port,
            contexts=[*STORAGE_CLASSES, COMMITMENT_CLASS],
            evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)],
        )
        assert [int(assoc.send_c_store(ds).Status) for ds in stored] == [0, 0]
        request = Dataset()
        request.TransactionUID = generate_uid()
        refs = []
        for ds in stored:
            item = Dataset()
            item.ReferencedSOPClassUID = ds.SOPClassUID
            item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
            refs.append(item)
        request.ReferencedSOPSequence = Sequence(refs)
        status, _ = assoc.send_n_action(request, 1, COMMITMENT_CLASS, COMMITMENT_INSTANCE)
        assert status.Status == 0
        assert got.wait(10)
        assoc.release()
        [(event_type, info)] = reports
        assert event_type == 1
        assert "FailedSOPSequence" not in info
        assert len(info.ReferencedSOPSequence) == 2


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server cert for 127.0.0.1/localhost, a client cert signed by the CA and one that is not."""
    d = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=Test CA",
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, cn in (("server", "localhost"), ("client", "TEST-SCU")):
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={cn}",
        )
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        )
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "rogue.key",
        "-out",
        "rogue.crt",
        "-days",
        "2",
        "-subj",
        "/CN=Rogue",
    )
    return {p.stem + p.suffix.replace(".", "_"): p for p in d.iterdir()}


def client_context(pki: dict[str, Path], cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki["ca_crt"]))
    if cert is not None:
        ctx.load_cert_chain(str(pki[f"{cert}_crt"]), str(pki[f"{cert}_key"]))
    return ctx


class TestTls(ScuTestBase):
    @pytest.fixture
    def index_url(self, sqlite_index_url: str) -> str:
        """TLS is below the index: one back end is enough."""
        return sqlite_index_url

    def _tls(self, pki: dict[str, Path], require: bool) -> dict[str, Any]:
        return {
            "enabled": True,
            "cert": pki["server_crt"],
            "key": pki["server_key"],
            "ca": pki["ca_crt"],
            "require_client_cert": require,
        }

    def test_tls_echo(self, start_scp: Callable[..., Any], pki: dict[str, Path]) -> None:
        scp = start_scp(dicom={"tls": self._tls(pki, require=False)})
        assoc = self.associate(
            scp.port, contexts=[VERIFICATION], tls_args=(client_context(pki, None), "localhost")
        )
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assoc.release()

    def test_plain_client_cannot_talk_to_tls_port(
        self, start_scp: Callable[..., Any], pki: dict[str, Path]
    ) -> None:
        scp = start_scp(dicom={"tls": self._tls(pki, require=False)})
        assoc = self.associate(scp.port, contexts=[VERIFICATION])
        assert not assoc.is_established

    def test_client_cert_required(
        self, start_scp: Callable[..., Any], pki: dict[str, Path], make_instance: Callable[..., Dataset]
    ) -> None:
        scp = start_scp(dicom={"tls": self._tls(pki, require=True)})
        for cert in (None, "rogue"):
            assoc = self.associate(
                scp.port, contexts=[VERIFICATION], tls_args=(client_context(pki, cert), "localhost")
            )
            assert not assoc.is_established, f"client cert {cert} was accepted"

        ds = make_instance("ct")
        assoc = self.associate(scp.port, tls_args=(client_context(pki, "client"), "localhost"))
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assert int(assoc.send_c_store(ds).Status) == 0
        assoc.release()
        assert indexed(scp, ds.SOPInstanceUID) is not None


class TestStorageCommitmentOnNewAssociation(ScuTestBase):
    """A PACS that releases right after N-ACTION gets the report on an association the gateway opens to it."""

    def test_report_goes_to_the_peers_own_scp(
        self,
        start_scp: Callable[..., Any],
        make_instance: Callable[..., Dataset],
        free_port: Callable[[], int],
    ) -> None:
        peer_port = free_port()
        reports: list[tuple[int, Dataset, str]] = []
        got = threading.Event()

        def on_report(event: evt.Event) -> tuple[int, None]:
            reports.append((int(event.request.EventTypeID), event.event_information, event.assoc.name))
            got.set()
            return 0x0000, None

        peer = AE(ae_title="TEST-SCU")
        peer.add_supported_context(COMMITMENT_CLASS, ExplicitVRLittleEndian, scu_role=True, scp_role=True)
        server = peer.start_server(
            ("127.0.0.1", peer_port), block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)]
        )
        self.aes.append(peer)
        try:
            scp = start_scp(
                dicom={"peers": [{"ae_title": "TEST-SCU", "hosts": ["127.0.0.1"], "port": peer_port}]}
            )
            stored = make_instance("ct")
            assoc = self.associate(scp.port, contexts=[*STORAGE_CLASSES, COMMITMENT_CLASS])
            assert int(assoc.send_c_store(stored).Status) == 0
            request = Dataset()
            request.TransactionUID = generate_uid()
            item = Dataset()
            item.ReferencedSOPClassUID = stored.SOPClassUID
            item.ReferencedSOPInstanceUID = stored.SOPInstanceUID
            request.ReferencedSOPSequence = Sequence([item])
            status, _ = assoc.send_n_action(request, 1, COMMITMENT_CLASS, COMMITMENT_INSTANCE)
            assert status.Status == 0
            assoc.release()  # gone before the gateway can answer on it
            assert got.wait(15), "no N-EVENT-REPORT reached the peer's SCP"
            wait_for_commitment_threads()
        finally:
            server.shutdown()
        [(event_type, info, _name)] = reports
        assert event_type == 1
        assert info.TransactionUID == request.TransactionUID
        assert [i.ReferencedSOPInstanceUID for i in info.ReferencedSOPSequence] == [stored.SOPInstanceUID]
