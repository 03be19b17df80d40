"""An EMR's side of SMART Backend Services for the client tests: key pairs registered by their public JWKS,
access tokens obtained with a signed client assertion, and fhir-kit-client
(``tests/node/fhir_kit_client.mjs``) run on Node with one of the keys. Used by
``tests/auth/test_clients_with_smart.py`` (FHIR routes over a seeded index) and
``tests/e2e/test_smart_clients_e2e.py`` (a whole ``gateway serve``)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

NODE_SCRIPT = Path(__file__).resolve().parents[1] / "node" / "fhir_kit_client.mjs"
CLIENT_ID = "emr"


@dataclass(frozen=True)
class ClientKeys:
    """An RS384 key (kid ``k1``) and an ES384 key (kid ``k2``): the public JWKS to register, the private
    keys as PKCS#8 PEM files for Node."""

    rsa: Any
    jwks: dict[str, Any]
    pems: dict[str, Path]


def client_keys(folder: Path) -> ClientKeys:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP384R1())
    jwks = {
        "keys": [
            {
                **json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key())),
                "kid": "k1",
                "alg": "RS384",
            },
            {
                **json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key())),
                "kid": "k2",
                "alg": "ES384",
            },
        ]
    }
    pems = {}
    for alg, private in (("RS384", rsa_key), ("ES384", ec_key)):
        pem = folder / f"{alg}.pem"
        pem.write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        pems[alg] = pem
    return ClientKeys(rsa_key, jwks, pems)


def smart_token(server: str, keys: ClientKeys, scope: str) -> str:
    """An access token for ``scope`` from the gateway at ``server`` (its root URL), found through
    ``/fhir/.well-known/smart-configuration`` and obtained with an RS384 client assertion."""
    conf = httpx.get(f"{server}/fhir/.well-known/smart-configuration").json()
    assertion = jwt.encode(
        {
            "iss": CLIENT_ID,
            "sub": CLIENT_ID,
            "aud": conf["token_endpoint"],
            "exp": int(time.time()) + 240,
            "jti": str(uuid.uuid4()),
        },
        keys.rsa,
        algorithm="RS384",
        headers={"kid": "k1"},
    )
    answer = httpx.post(
        conf["token_endpoint"],
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            "scope": scope,
        },
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def run_fhir_kit_client(
    fhir_base: str, keys: ClientKeys, alg: str, patient: str, report: str
) -> dict[str, Any]:
    """What fhir-kit-client saw (see the script's header), signing its own assertion with ``alg``."""
    if not (NODE_SCRIPT.parent / "node_modules" / "fhir-kit-client").is_dir():
        raise AssertionError(
            "tests/node/node_modules is missing: run scripts/setup.sh (npm ci --prefix tests/node)"
        )
    run = subprocess.run(
        ["node", str(NODE_SCRIPT)],
        env={
            **os.environ,
            "FHIR_BASE": fhir_base,
            "CLIENT_ID": CLIENT_ID,
            "KEY_FILE": str(keys.pems[alg]),
            "KID": "k1" if alg == "RS384" else "k2",
            "ALG": alg,
            "PATIENT": patient,
            "REPORT": report,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    seen: dict[str, Any] = json.loads(run.stdout)
    assert seen["tokenUrl"].endswith("/auth/token")
    assert seen["token"]["type"].lower() == "bearer" and 0 < seen["token"]["expiresIn"] <= 300
    assert set(seen["token"]["scope"].split()) == {"system/DiagnosticReport.rs", "system/Observation.rs"}
    assert seen["withoutToken"] == 401
    assert seen["outOfScope"] == 403  # a Patient read with DiagnosticReport and Observation scopes only
    return seen
