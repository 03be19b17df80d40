"""Helpers for the end-to-end tests: free ports, the sample study, a served gateway."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "e2e-token-not-secret"


def find_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def load_sample_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "make_sample_study", ROOT / "samples" / "make_sample_study.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses in the module look themselves up here
    spec.loader.exec_module(module)
    return module


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    dicom_port: int
    http_port: int
    sample_dir: Path
    manifest: dict[str, Any]
    log: Path
    token: str = TOKEN
    _sessions: Any = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def gateway(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "gateway", *args, "--data-dir", str(self.data_dir)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout

    def studies(self) -> list[dict[str, Any]]:
        """Read straight from the index: fast enough to see the short-lived states."""
        from gateway.index.db import open_index
        from gateway.index.repo import list_studies

        if self._sessions is None:
            self._sessions = open_index(f"sqlite:///{self.data_dir / 'index.sqlite3'}")
        with self._sessions() as session:
            return [s.as_json() for s in list_studies(session)]

    def study(self) -> dict[str, Any]:
        uid = self.manifest["study_instance_uid"]
        return next(s for s in self.studies() if s["study_instance_uid"] == uid)

    def storescu(self, *files: Path) -> None:
        env = {**os.environ, "TCP_NODELAY": "1"}
        subprocess.run(
            ["storescu", "-aec", "GATEWAY", "127.0.0.1", str(self.dicom_port), *map(str, files)],
            check=True,
            env=env,
            capture_output=True,
            timeout=120,
        )

    def wait_state(self, states: set[str], timeout: float = 120.0) -> list[str]:
        """Poll until the study reaches one of ``states``; return every state seen on the way."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.study()["state"]
            if not seen or seen[-1] != state:
                seen.append(state)
            if state in states:
                return seen
            time.sleep(0.05)
        raise AssertionError(
            f"study never reached {states}; saw {seen}; log:\n{self.log.read_text()[-3000:]}"
        )


@contextlib.contextmanager
def serve_sample(root: Path, env_extra: dict[str, str] | None = None) -> Iterator[Served]:
    """A ``gateway serve`` on free ports over an empty data directory under ``root``, with the sample study
    written (not pushed) beside it; ``env_extra`` adds ``GATEWAY_*`` settings. Stopped with SIGTERM."""
    sample_dir = root / "sample"
    manifest = load_sample_module().build_sample_study(sample_dir)
    data_dir = root / "data"
    dicom_port, http_port = find_free_port(), find_free_port()
    log = root / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(env_extra or {})
    command = [sys.executable, "-m", "gateway", "serve", "--data-dir", str(data_dir)]
    command += ["--dicom-port", str(dicom_port), "--http-port", str(http_port)]
    command += ["--stable-age", "1", "--api-token", TOKEN]
    with log.open("wb") as fh:
        proc = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, env=env)
    served = Served(proc, data_dir, dicom_port, http_port, sample_dir, manifest, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{served.base}/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, log.read_text()
        time.sleep(0.3)
    try:
        yield served
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()


def media_uids(client: Any, refs: list[dict[str, Any]]) -> set[str]:
    """The SOP Instance UIDs of the Media among ``refs`` (an Observation's ``derivedFrom``), read through the
    FHIR client (fhirpy) as an EMR would."""
    uids: set[str] = set()
    for ref in refs:
        if not ref["reference"].startswith("Media/"):
            continue
        media = client.reference(reference=ref["reference"]).to_resource()
        for ident in media.get("identifier", []):
            if ident["system"] == "urn:dicom:uid":
                uids.add(ident["value"].removeprefix("urn:oid:"))
    return uids
