"""Shared fixtures for the ingest tests: free ports, both index back ends, settings, instances, a live SCP.

Every test that touches the index takes ``index_url``, which runs it once on SQLite (a file in ``tmp_path``)
and once on PostgreSQL (a fresh database on 127.0.0.1:5432, dropped afterwards).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from gateway.index.db import open_index
from gateway.settings import Settings

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"

SOP_CLASSES = {
    "ct": CT_IMAGE,
    "sc": SECONDARY_CAPTURE,
    "pdf": ENCAPSULATED_PDF,
    "sr": BASIC_TEXT_SR,
    "kos": KEY_OBJECT_SELECTION,
}

# A tiny but well-formed PDF (one empty page); even length as DICOM OB values need.
MINIMAL_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 72 72]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


def find_free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _no_gateway_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read GATEWAY_* variables; a developer's shell must not leak into the tests."""
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)


# ---------------------------------------------------------------------------------------------------------
# Index back ends


def _pg_execute(*statements: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def create_pg_database(template: str | None = None) -> tuple[str, str]:
    """Create ``gw_test_<uuid hex>`` (empty, or a copy of ``template``); return its name and URL."""
    name = f"gw_test_{uuid.uuid4().hex}"
    clause = f' TEMPLATE "{template}"' if template else ""
    _pg_execute(f'CREATE DATABASE "{name}"{clause}')
    return name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def drop_pg_database(name: str) -> None:
    _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class EngineTracker:
    """Collects the engines a test opens so the fixture can dispose them before dropping the database."""

    def __init__(self) -> None:
        self.engines: list[Engine] = []

    def open(self, url: str) -> sessionmaker[Session]:
        sessions = open_index(url)
        bind = sessions.kw["bind"]
        assert isinstance(bind, Engine)
        self.engines.append(bind)
        return sessions

    def dispose(self) -> None:
        for engine in self.engines:
            engine.dispose()
        self.engines.clear()


@pytest.fixture
def engines() -> Iterator[EngineTracker]:
    tracker = EngineTracker()
    yield tracker
    tracker.dispose()


class PgDatabases:
    """Fresh PostgreSQL databases copied from a migrated template, made one ahead and dropped behind.

    CREATE and DROP DATABASE each wait on fsync for a good part of a second; a background thread does them
    while the tests run, so a test only waits when it outruns the thread.
    """

    def __init__(self) -> None:
        name, url = create_pg_database()
        tracker = EngineTracker()
        tracker.open(url)
        tracker.dispose()
        self.template = name
        self._tasks: queue.Queue[str | None] = queue.Queue()
        self._ready: queue.Queue[tuple[str, str] | BaseException] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="pg-databases", daemon=True)
        self._thread.start()
        self._tasks.put("")  # one database ahead

    def _run(self) -> None:
        while (task := self._tasks.get()) is not None:
            try:
                if task:
                    drop_pg_database(task)
                else:
                    self._ready.put(create_pg_database(template=self.template))
            except BaseException as exc:  # handed to the test that waits for a database
                self._ready.put(exc)

    def take(self) -> tuple[str, str]:
        self._tasks.put("")
        got = self._ready.get(timeout=120)
        if isinstance(got, BaseException):
            raise got
        return got

    def give_back(self, name: str) -> None:
        self._tasks.put(name)

    def close(self) -> None:
        self._tasks.put(None)
        self._thread.join(120)
        while not self._ready.empty():
            got = self._ready.get()
            if not isinstance(got, BaseException):
                drop_pg_database(got[0])
        drop_pg_database(self.template)


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A migrated SQLite file, and PostgreSQL databases copied from a migrated template (made on first use).

    A copy is much cheaper than running the migrations for every test; the migrations themselves are tested
    from empty databases in tests/index/test_db.py.
    """
    sqlite_file = tmp_path_factory.mktemp("template") / "index.sqlite3"
    tracker = EngineTracker()
    tracker.open(f"sqlite:///{sqlite_file}")
    tracker.dispose()  # the last connection checkpoints the WAL into the main file
    templates: dict[str, Any] = {"sqlite": str(sqlite_file)}
    try:
        yield templates
    finally:
        if "postgresql" in templates:
            templates["postgresql"].close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def index_url(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_templates: dict[str, Any]
) -> Iterator[str]:
    """The URL of a migrated, empty index: a SQLite file in ``tmp_path``, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        target = tmp_path / "index.sqlite3"
        shutil.copyfile(migrated_templates["sqlite"], target)
        yield f"sqlite:///{target}"
        return
    if "postgresql" not in migrated_templates:
        migrated_templates["postgresql"] = PgDatabases()
    pool: PgDatabases = migrated_templates["postgresql"]
    name, url = pool.take()
    try:
        yield url
    finally:
        # Fixtures that opened engines on this URL were set up after us and are torn down first;
        # DROP ... WITH (FORCE) also ends any connection a failed test left behind.
        pool.give_back(name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_index_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all, for the migration tests (``index_url`` is already migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sub' / 'index.sqlite3'}"
        return
    name, url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(name)


@pytest.fixture
def sqlite_index_url(tmp_path: Path, migrated_templates: dict[str, Any]) -> str:
    """For tests of things that do not depend on the index back end (TLS, association rules)."""
    target = tmp_path / "index.sqlite3"
    shutil.copyfile(migrated_templates["sqlite"], target)
    return f"sqlite:///{target}"


@pytest.fixture
def sessions(index_url: str, engines: EngineTracker) -> sessionmaker[Session]:
    """A migrated index on the parametrized back end."""
    return engines.open(index_url)


# ---------------------------------------------------------------------------------------------------------
# Settings

SettingsFactory = Callable[..., Settings]


@pytest.fixture
def settings_factory(tmp_path: Path, index_url: str) -> SettingsFactory:
    """Build Settings for a test: a data dir in ``tmp_path``, free ports, the parametrized index."""

    def make(**overrides: Any) -> Settings:
        dicom: dict[str, Any] = {"bind": "127.0.0.1", "min_free_bytes": 0, "acse_timeout": 5.0}
        dicom.update(overrides.pop("dicom", {}))
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "dicom_port": find_free_port(),
            "http_port": find_free_port(),
            "stable_age": 1.0,
            "database_url": index_url,
            "dicom": dicom,
        }
        values.update(overrides)
        return Settings.load(None, **values)

    return make


@pytest.fixture
def settings(settings_factory: SettingsFactory) -> Settings:
    return settings_factory()


# ---------------------------------------------------------------------------------------------------------
# Instances


def build_instance(
    kind: str = "ct",
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    patient_id: str = "TEST-0001",
    patient_name: str = "Doe^Jane",
    accession: str = "ACC0001",
    instance_number: int = 1,
    transfer_syntax: str = ExplicitVRLittleEndian,
    path: Path | None = None,
) -> Dataset:
    """A small, valid instance of ``kind`` (ct, sc, pdf, sr, kos) with invented patient data.

    With ``path`` the instance is also written there as a Part-10 file.
    """
    sop_class = SOP_CLASSES[kind]
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.AccessionNumber = accession
    ds.StudyID = "1"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.ReferringPhysicianName = "Ref^Doctor"
    ds.StudyDescription = "Test study"
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance_number
    ds.Modality = {"ct": "CT", "sc": "OT", "pdf": "DOC", "sr": "SR", "kos": "KO"}[kind]
    ds.ContentDate = "20240102"
    ds.ContentTime = "101600"

    if kind in ("ct", "sc"):
        ds.Rows = 8
        ds.Columns = 8
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelRepresentation = 0
        if kind == "ct":
            ds.BitsAllocated = 16
            ds.BitsStored = 12
            ds.HighBit = 11
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.RescaleIntercept = -1024
            ds.RescaleSlope = 1
            ds.WindowCenter = 40
            ds.WindowWidth = 400
            pixels = (np.arange(64, dtype=np.uint16) * 50).reshape(8, 8)
        else:
            ds.BitsAllocated = 8
            ds.BitsStored = 8
            ds.HighBit = 7
            ds.ConversionType = "WSD"
            pixels = (np.arange(64, dtype=np.uint8) * 3).reshape(8, 8)
        ds.PixelData = pixels.tobytes()
    elif kind == "pdf":
        ds.ConversionType = "WSD"
        ds.DocumentTitle = "Radiology report"
        ds.BurnedInAnnotation = "YES"
        ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
        data = MINIMAL_PDF if len(MINIMAL_PDF) % 2 == 0 else MINIMAL_PDF + b"\x00"
        ds.EncapsulatedDocument = data
    elif kind in ("sr", "kos"):
        ds.ValueType = "CONTAINER"
        ds.ContinuityOfContent = "SEPARATE"
        concept = Dataset()
        concept.CodeValue = "18748-4" if kind == "sr" else "113000"
        concept.CodingSchemeDesignator = "LN" if kind == "sr" else "DCM"
        concept.CodeMeaning = "Diagnostic imaging report" if kind == "sr" else "Of Interest"
        ds.ConceptNameCodeSequence = Sequence([concept])
        if kind == "sr":
            ds.CompletionFlag = "COMPLETE"
            ds.VerificationFlag = "UNVERIFIED"
            item = Dataset()
            item.RelationshipType = "CONTAINS"
            item.ValueType = "TEXT"
            name = Dataset()
            name.CodeValue = "121071"
            name.CodingSchemeDesignator = "DCM"
            name.CodeMeaning = "Finding"
            item.ConceptNameCodeSequence = Sequence([name])
            item.TextValue = "No acute abnormality."
            ds.ContentSequence = Sequence([item])
        else:
            ref_image = Dataset()
            ref_image.ReferencedSOPClassUID = CT_IMAGE
            ref_image.ReferencedSOPInstanceUID = generate_uid()
            ref_series = Dataset()
            ref_series.SeriesInstanceUID = generate_uid()
            ref_series.ReferencedSOPSequence = Sequence([ref_image])
            evidence = Dataset()
            evidence.StudyInstanceUID = ds.StudyInstanceUID
            evidence.ReferencedSeriesSequence = Sequence([ref_series])
            ds.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence])
            item = Dataset()
            item.RelationshipType = "CONTAINS"
            item.ValueType = "IMAGE"
            ref = Dataset()
            ref.ReferencedSOPClassUID = CT_IMAGE
            ref.ReferencedSOPInstanceUID = ref_image.ReferencedSOPInstanceUID
            item.ReferencedSOPSequence = Sequence([ref])
            ds.ContentSequence = Sequence([item])

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(ds.SOPInstanceUID)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
    return ds


@pytest.fixture
def make_instance() -> Callable[..., Dataset]:
    """``make_instance(kind, **uids)``: see :func:`build_instance`."""
    return build_instance


@pytest.fixture
def free_port() -> Callable[[], int]:
    """``free_port()``: a loopback port nothing listens on."""
    return find_free_port


# ---------------------------------------------------------------------------------------------------------
# A running SCP


@pytest.fixture
def start_scp(settings_factory: SettingsFactory, engines: EngineTracker) -> Iterator[Callable[..., Any]]:
    """Start ``gateway.dicom.scp.Scp`` in this process; ``start_scp(**settings_overrides)``."""
    from gateway.dicom.scp import Scp
    from gateway.metrics import Metrics

    started: list[Scp] = []

    def start(**overrides: Any) -> Scp:
        cfg = settings_factory(**overrides)
        scp = Scp(cfg, engines.open(cfg.index_url), Metrics())
        scp.start()
        started.append(scp)
        return scp

    yield start
    for scp in started:
        with contextlib.suppress(Exception):
            scp.stop(timeout=5.0)
        scp.ae.shutdown()


@pytest.fixture
def scp(start_scp: Callable[..., Any]) -> Any:
    """An SCP with default test settings (no peers, reject-different duplicates)."""
    return start_scp()


def utc(seconds: float = 0.0) -> dt.datetime:
    return dt.datetime(2024, 1, 2, 10, 0, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)


# ---------------------------------------------------------------------------------------------------------
# The real `gateway` command in a subprocess


def dcmtk_env() -> dict[str, str]:
    """The environment for DCMTK tools: Debian's build leaves Nagle on unless TCP_NODELAY=1."""
    return {**os.environ, "TCP_NODELAY": "1"}


class GatewayProcess:
    """``gateway scp`` as a child process on a free port, bound to loopback."""

    def __init__(self, data_dir: Path, index_url: str, port: int, log: Path) -> None:
        self.data_dir = data_dir
        self.index_url = index_url
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def args(self, command: str, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gateway",
            command,
            "--data-dir",
            str(self.data_dir),
            "--database-url",
            self.index_url,
            "--dicom-port",
            str(self.port),
            *extra,
        ]

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "GATEWAY_DICOM__BIND": "127.0.0.1",
            "GATEWAY_DICOM__MIN_FREE_BYTES": "0",
            "GATEWAY_LOG__LEVEL": "WARNING",
        }

    def start(self, timeout: float = 60.0) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args("scp"), env=self.env(), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway scp exited with {self.proc.returncode}:\n{self.log.read_text()}")
            echo = subprocess.run(
                ["echoscu", "-aec", "GATEWAY", "-to", "2", "127.0.0.1", str(self.port)],
                env=dcmtk_env(),
                capture_output=True,
                timeout=30,
            )
            if echo.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"gateway scp did not answer C-ECHO in {timeout} s:\n{self.log.read_text()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.kill()

    def run(self, command: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.args(command, *extra), env=self.env(), capture_output=True, text=True, timeout=120
        )


@pytest.fixture
def dcmtk() -> dict[str, str]:
    """Environment for DCMTK processes (TCP_NODELAY=1)."""
    return dcmtk_env()


@pytest.fixture
def gateway_process(tmp_path: Path, index_url: str) -> Iterator[GatewayProcess]:
    """A ``gateway scp`` child on the parametrized index (not started yet; call ``.start()``)."""
    gw = GatewayProcess(tmp_path / "gw-data", index_url, find_free_port(), tmp_path / "gateway.log")
    try:
        yield gw
    finally:
        gw.stop()


# ---------------------------------------------------------------------------------------------------------
# Findings models


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``tiny_checkpoint(architecture, max_tokens, context)``: an untrained tiny model that is sure to say
    "heart"; ``context`` makes it one that reads the clinical-context prefix."""
    import torch

    from gateway.findings.checkpoint import save_checkpoint
    from gateway.findings.data import Split
    from gateway.findings.models import PRESETS, ModelConfig, build_model
    from gateway.findings.text import TextRules, Vocabulary

    vocab = Vocabulary(["<pad>", "<start>", "<end>", "<unk>", ".", "heart", "normal", "lungs", "clear"])
    made: dict[tuple[str, int, bool], Path] = {}

    def make(architecture: str = "cnn-lstm", max_tokens: int = 8, context: bool = False) -> Path:
        if (architecture, max_tokens, context) not in made:
            torch.manual_seed(0)
            config = ModelConfig(
                architecture=architecture,
                vocab_size=len(vocab),
                max_tokens=max_tokens,
                context=context,
                context_tokens=2,
                **PRESETS["tiny"],
            )
            folder = tmp_path_factory.mktemp("ck") / "best"
            model = build_model(config)
            with torch.no_grad():  # an untrained model may say nothing at all; make it say a word
                model.head.bias[vocab.tokens.index("heart")] = 4.0  # type: ignore[index]
            save_checkpoint(folder, model, vocab, TextRules(), Split(), {})
            made[(architecture, max_tokens, context)] = folder
        return made[(architecture, max_tokens, context)]

    return make
