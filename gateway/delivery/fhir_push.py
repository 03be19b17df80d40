"""Channel ``fhir``: each published report as one FHIR transaction Bundle POSTed to a configured server
(IHE IMR RAD-141 "Store Multimedia Report" style: report, observations, study, order, patient together).

The Bundle is built at publication time (pure: :func:`transaction`) and stored in the outbox row, so every
retry sends the same Bundle. Entries are ``PUT Type/id`` with the gateway's stable ids, which makes a
retried or duplicated transaction idempotent on the receiver; ``Bundle.identifier`` carries the outbox
message id so a receiver can also tell a duplicate. Response handling: 2xx with a ``transaction-response``
whose entries are all 2xx → sent; 408, 429 and 5xx, timeouts and refused connections → retry; any other 4xx
→ dead letter with the OperationOutcome's diagnostics.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import httpx
from sqlalchemy.orm import Session

from gateway.delivery import outbox
from gateway.delivery.errors import DeliveryError, PermanentDeliveryError
from gateway.delivery.settings import FhirDestination

KIND = "fhir"
IDENTIFIER_SYSTEM = "urn:ietf:rfc:3986"
# Referenced resources first, so a reader of the Bundle meets targets before references.
_ORDER = (
    "Patient", "Organization", "Practitioner", "Device", "Endpoint", "ServiceRequest", "ImagingStudy",
    "Binary", "Media", "ImagingSelection",
    "DocumentReference", "Observation", "DiagnosticReport", "Provenance",
)  # fmt: skip


def transaction(resources: Sequence[dict[str, Any]], base_url: str, message_id: str) -> dict[str, Any]:
    """A transaction Bundle of ``resources`` (pure). ``meta`` is dropped: the receiver keeps its own."""
    rank = {t: n for n, t in enumerate(_ORDER)}
    entries = []
    for res in sorted(resources, key=lambda r: rank.get(str(r["resourceType"]), len(rank))):
        body = copy.deepcopy(res)
        body.pop("meta", None)
        path = f"{body['resourceType']}/{body['id']}"
        entries.append(
            {
                "fullUrl": f"{base_url.rstrip('/')}/{path}",
                "resource": body,
                "request": {"method": "PUT", "url": path},
            }
        )
    return {
        "resourceType": "Bundle",
        "identifier": {"system": IDENTIFIER_SYSTEM, "value": f"urn:gateway-outbox:{message_id}"},
        "type": "transaction",
        "entry": entries,
    }


def enqueue_report(
    session: Session,
    destinations: Sequence[FhirDestination],
    *,
    study_fk: int,
    resources: Sequence[dict[str, Any]],
) -> int:
    """Queue one transaction per destination for the publication's report version."""
    report = next((r for r in resources if r["resourceType"] == "DiagnosticReport"), None)
    if report is None:
        return 0
    version = (report.get("meta") or {}).get("versionId", "1")
    order_key = str((report.get("subject") or {}).get("reference", ""))
    for dest in destinations:
        mid = outbox.message_id(KIND, dest.name, report["id"], version)
        outbox.enqueue(
            session,
            study_fk=study_fk,
            destination=dest.name,
            kind=KIND,
            message_id=mid,
            payload={"bundle": transaction(resources, dest.base_url, mid)},
            order_key=order_key,
        )
    return len(destinations)


def _outcome(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    issues = body.get("issue", []) if isinstance(body, dict) else []
    text = "; ".join(str(i.get("diagnostics") or i.get("code")) for i in issues)
    return text or str(body)[:300]


class FhirSender:
    """POSTs stored transaction Bundles, one HTTP client (connection pool) per destination."""

    def __init__(
        self, destinations: Sequence[FhirDestination], *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._destinations = {d.name: d for d in destinations}
        self._clients: dict[str, httpx.Client] = {}
        self._transport = transport

    def _client(self, dest: FhirDestination) -> httpx.Client:
        client = self._clients.get(dest.name)
        if client is None:
            headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
            if dest.token is not None:
                headers["Authorization"] = f"Bearer {dest.token.get_secret_value()}"
            client = httpx.Client(
                headers=headers,
                timeout=dest.timeout,
                verify=str(dest.ca) if dest.ca else True,
                transport=self._transport,
            )
            self._clients[dest.name] = client
        return client

    def send(self, destination: str, message_id: str, payload: dict[str, Any]) -> None:
        dest = self._destinations.get(destination)
        if dest is None:
            raise PermanentDeliveryError(f"FHIR destination {destination!r} is not configured")
        bundle = payload.get("bundle")
        if not isinstance(bundle, dict):
            raise PermanentDeliveryError("outbox row has no Bundle")
        try:
            response = self._client(dest).post(dest.base_url.rstrip("/") or "/", json=bundle)
        except httpx.HTTPError as exc:
            raise DeliveryError(
                f"FHIR server {dest.base_url} unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise DeliveryError(f"FHIR server answered {response.status_code}: {_outcome(response)}")
        if response.status_code >= 400:
            raise PermanentDeliveryError(
                f"FHIR server refused the transaction ({response.status_code}): {_outcome(response)}"
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise DeliveryError("FHIR server answered without a transaction-response") from exc
        if body.get("resourceType") != "Bundle" or body.get("type") != "transaction-response":
            raise DeliveryError("FHIR server answered without a transaction-response")
        bad = [
            e.get("response", {}).get("status", "")
            for e in body.get("entry", [])
            if not str(e.get("response", {}).get("status", "")).startswith("2")
        ]
        if bad or len(body.get("entry", [])) != len(bundle.get("entry", [])):
            raise DeliveryError(f"transaction-response does not confirm every entry: {bad}")

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
