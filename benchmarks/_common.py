"""Helpers shared by the benchmarks: ports, DCMTK processes, and the storage targets they measure.

A target is anything that accepts C-STORE on a port. Each one is started on a fresh, empty store for every
measurement and stopped after it, so the same instances (and UIDs) can be sent again without duplicates.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

__all__ = [
    "DcmtkStorescp",
    "Endpoint",
    "Gateway",
    "Orthanc",
    "Target",
    "TargetError",
    "dcmtk_env",
    "free_port",
    "postgres_database",
    "wait_for_echo",
]

REPO = Path(__file__).resolve().parents[1]


class TargetError(RuntimeError):
    """A target could not be started or did not answer C-ECHO in time."""


def dcmtk_env() -> dict[str, str]:
    """The environment for DCMTK tools; without TCP_NODELAY small instances wait on Nagle's algorithm."""
    return {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_echo(ae_title: str, port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Poll with ``echoscu`` until the SCP answers, or raise if it exits or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TargetError(f"process exited with {proc.returncode} before answering C-ECHO")
        echo = subprocess.run(
            ["echoscu", "-to", "2", "-aec", ae_title, "127.0.0.1", str(port)],
            env=dcmtk_env(),
            capture_output=True,
            check=False,
        )
        if echo.returncode == 0:
            return
        time.sleep(0.2)
    raise TargetError(f"no C-ECHO answer from {ae_title}@127.0.0.1:{port} within {timeout:.0f} s")


@dataclass
class Endpoint:
    ae_title: str
    port: int


class Target(Protocol):
    """One kind of storage SCP under test."""

    name: str

    def available(self) -> str | None:
        """None when it can run here, else the reason it is skipped."""

    def start(self, run_dir: Path) -> Endpoint:
        """Start on an empty store under ``run_dir`` and return once it answers C-ECHO."""

    def received(self) -> int | None:
        """How many instances it holds now, when that can be told."""

    def stop(self) -> None: ...


def _stop_group(proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    """Stop a process started with ``start_new_session=True``, and the children it forked."""
    if proc is None or proc.poll() is not None:
        return
    pgid = os.getpgid(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=10)


def _count_files(root: Path, pattern: str = "*") -> int:
    return sum(1 for p in root.rglob(pattern) if p.is_file()) if root.exists() else 0


@dataclass
class _Process:
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    def spawn(
        self, argv: Sequence[str], env: dict[str, str], log_path: Path, cwd: Path | None = None
    ) -> None:
        self.log = log_path.open("wb")
        self.proc = subprocess.Popen(
            list(argv), env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
        )

    def stop(self) -> None:
        _stop_group(self.proc)
        self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None

    def require(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            raise TargetError("not started")
        return self.proc


@dataclass
class DcmtkStorescp:
    """DCMTK's ``storescp`` writing each instance to a file: a reference floor, with no index."""

    name: str = "dcmtk-storescp"
    _p: _Process = field(default_factory=_Process)
    _out: Path | None = None

    def available(self) -> str | None:
        return None if shutil.which("storescp") else "storescp not on PATH"

    def start(self, run_dir: Path) -> Endpoint:
        self._out = run_dir / "received"
        self._out.mkdir(parents=True)
        port = free_port()
        argv = ["storescp", "-aet", "ANY", "--output-directory", str(self._out), str(port)]
        self._p.spawn(argv, dcmtk_env(), run_dir / "storescp.log")
        wait_for_echo("ANY", port, self._p.require())
        return Endpoint("ANY", port)

    def received(self) -> int | None:
        return _count_files(self._out) if self._out else None

    def stop(self) -> None:
        self._p.stop()


@dataclass
class PynetdicomBare:
    """A pynetdicom SCP that stores nothing: the ceiling for any receiver built on pynetdicom."""

    name: str = "pynetdicom-bare"
    _p: _Process = field(default_factory=_Process)

    def available(self) -> str | None:
        return None

    def start(self, run_dir: Path) -> Endpoint:
        port = free_port()
        script = Path(__file__).with_name("_pynetdicom_bare.py")
        self._p.spawn(
            [sys.executable, str(script), "GATEWAY", str(port)], dict(os.environ), run_dir / "bare.log"
        )
        wait_for_echo("GATEWAY", port, self._p.require())
        return Endpoint("GATEWAY", port)

    def received(self) -> int | None:
        return None  # it keeps nothing; storescu's exit status tells whether all were accepted

    def stop(self) -> None:
        self._p.stop()


@dataclass
class Gateway:
    """``gateway scp`` with fsync'd writes, indexing into SQLite (default) or PostgreSQL."""

    name: str = "gateway-sqlite"
    database: str = "sqlite"  # or "postgres"
    processes: int = 1
    executable: Path = REPO / ".venv" / "bin" / "gateway"
    pg_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432"
    extra_env: dict[str, str] = field(default_factory=dict)
    _p: _Process = field(default_factory=_Process)
    _data: Path | None = None
    _db: contextlib.ExitStack | None = None

    def available(self) -> str | None:
        if not self.executable.exists():
            return f"{self.executable} not found"
        probe = subprocess.run(
            [str(self.executable), "scp", "--help"], capture_output=True, text=True, check=False, timeout=60
        )
        if probe.returncode != 0:
            lines = (probe.stderr or probe.stdout).strip().splitlines()
            return "`gateway scp --help` failed: " + (lines[-1] if lines else f"exit {probe.returncode}")
        if self.database == "postgres":
            try:
                import psycopg  # only this target needs it

                psycopg.connect(
                    "host=127.0.0.1 port=5432 user=postgres dbname=postgres", connect_timeout=3
                ).close()
            except Exception as exc:  # any failure means the target is skipped
                return f"PostgreSQL not reachable: {exc}"
        return None

    def start(self, run_dir: Path) -> Endpoint:
        self._data = run_dir / "data"
        self._data.mkdir(parents=True)
        port = free_port()
        argv = [str(self.executable), "scp", "--data-dir", str(self._data), "--dicom-port", str(port)]
        if self.database == "postgres":
            self._db = contextlib.ExitStack()
            name = self._db.enter_context(postgres_database(f"gw_bench_{os.getpid()}"))
            argv += ["--database-url", f"{self.pg_url}/{name}"]
        env = {
            **os.environ,
            "GATEWAY_DICOM__FSYNC": "true",
            "GATEWAY_DICOM__PROCESSES": str(self.processes),
            "GATEWAY_DICOM__BIND": "127.0.0.1",
            "GATEWAY_LOG__LEVEL": "WARNING",
            **self.extra_env,
        }
        self._p.spawn(argv, env, run_dir / "gateway.log", cwd=run_dir)
        wait_for_echo("GATEWAY", port, self._p.require(), timeout=120)
        return Endpoint("GATEWAY", port)

    def received(self) -> int | None:
        if self._data is None:
            return None
        instances = self._data / "instances"
        return _count_files(instances) if instances.exists() else _count_files(self._data, "*.dcm")

    def stop(self) -> None:
        self._p.stop()
        if self._db is not None:
            self._db.close()
            self._db = None


@dataclass
class Orthanc:
    """Orthanc from Debian with its default SQLite index and storage area."""

    name: str = "orthanc"
    executable: str = "Orthanc"
    _p: _Process = field(default_factory=_Process)
    _http: int | None = None

    def available(self) -> str | None:
        return None if shutil.which(self.executable) else "Orthanc not installed"

    def start(self, run_dir: Path) -> Endpoint:
        port, http = free_port(), free_port()
        config = {
            "Name": "bench",
            "StorageDirectory": str(run_dir / "storage"),
            "IndexDirectory": str(run_dir / "index"),
            "DicomAet": "ORTHANC",
            "DicomPort": port,
            "HttpPort": http,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "Plugins": [],
        }
        path = run_dir / "orthanc.json"
        path.write_text(json.dumps(config, indent=2))
        self._http = http
        # Orthanc's DICOM layer is DCMTK, which reads TCP_NODELAY too.
        self._p.spawn([self.executable, str(path)], dcmtk_env(), run_dir / "orthanc.log", cwd=run_dir)
        wait_for_echo("ORTHANC", port, self._p.require(), timeout=60)
        return Endpoint("ORTHANC", port)

    def received(self) -> int | None:
        if self._http is None:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self._http}/statistics", timeout=10) as r:
                return int(json.load(r)["CountInstances"])
        except OSError:
            return None

    def stop(self) -> None:
        self._p.stop()
        self._http = None


@contextlib.contextmanager
def postgres_database(name: str) -> Iterator[str]:
    """Create an empty database called ``name`` and drop it on exit."""
    import psycopg

    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
