"""A real FHIR server for the transaction push: Medplum's FHIR router and in-memory repository (npm
``@medplum/fhir-router`` 5.2.13, with ``@medplum/core``'s validator), run by Node (``medplum/server.mjs``).

Medplum's full server needs PostgreSQL and Redis and is not published on npm; its router is, and it is the
code that processes batch and transaction Bundles in that server. ``scripts/setup.sh`` installs the packages
with the other Node peers into ``tests/node`` (``npm ci``), so the test needs no network.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

NODE = Path(__file__).resolve().parents[1] / "node"


def install() -> Path:
    """The folder with ``medplum_server.mjs`` and its node_modules (installed by ``scripts/setup.sh``)."""
    if not (NODE / "node_modules" / "@medplum" / "fhir-router").is_dir():
        raise RuntimeError(
            "Medplum's FHIR router is not installed: run scripts/setup.sh (npm ci --prefix tests/node)"
        )
    return NODE


class MedplumServer:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> MedplumServer:
        folder = install()
        self.proc = subprocess.Popen(
            ["node", "--experimental-websocket", "medplum_server.mjs", "0"],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        line = self.proc.stdout.readline()  # blocks until the definitions are loaded and it listens
        assert line.startswith("listening") and time.monotonic() < deadline, f"Medplum router: {line!r}"
        self.port = int(line.split()[1])
        return self

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"{self.base}/{path}", timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
