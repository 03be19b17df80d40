"""FHIR R4 Subscriptions per the Subscriptions R5 Backport IG 1.1: rest-hook notifications of one topic,
"a DiagnosticReport was published or changed", from the outbox.

A client creates a Subscription with ``POST /fhir/Subscription`` (the API's bearer token):

- ``criteria`` is the topic's canonical URL (:data:`TOPIC`); filters go in the ``backport-filter-criteria``
  extension on ``_criteria``, as ``DiagnosticReport?patient=Patient/x`` and/or ``category=system|code``;
- ``channel.type`` is ``rest-hook`` with ``channel.endpoint``; ``channel.header`` lines are sent along;
- ``channel._payload`` carries ``backport-payload-content``: ``empty``, ``id-only`` (the default, the safe
  choice for PHI) or ``full-resource``; ``channel`` may carry ``backport-heartbeat-period`` (seconds).

A handshake notification is queued at creation. Each publication that adds a DiagnosticReport version queues,
in its own transaction, one ``event-notification`` per matching active Subscription, numbered by
``events-since-subscription-start``. Heartbeats are queued when a Subscription has been quiet for its period.
``GET /fhir/Subscription/{id}/$status`` answers a ``query-status`` Bundle. Notifications are history Bundles
whose first entry is a ``backport-subscription-status-r4`` Parameters resource.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.delivery import outbox
from gateway.delivery.errors import DeliveryError, PermanentDeliveryError
from gateway.index.models import Outbox, Subscription, utcnow

log = logging.getLogger(__name__)

KIND = "subscription"
TOPIC = "http://gateway.local/fhir/SubscriptionTopic/diagnosticreport-published"
_IG = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
FILTER = _IG + "backport-filter-criteria"
PAYLOAD = _IG + "backport-payload-content"
HEARTBEAT = _IG + "backport-heartbeat-period"
STATUS_PROFILE = _IG + "backport-subscription-status-r4"
NOTIFICATION_PROFILE = _IG + "backport-subscription-notification-r4"
PAYLOADS = ("empty", "id-only", "full-resource")


class SubscriptionRejected(ValueError):
    """The Subscription cannot be accepted (400 with an OperationOutcome)."""


def _ext(element: dict[str, Any] | None, url: str) -> Any:
    for ext in (element or {}).get("extension", []):
        if ext.get("url") == url:
            return next((v for k, v in ext.items() if k.startswith("value")), None)
    return None


def parse_subscription(body: dict[str, Any]) -> dict[str, Any]:
    """Validate a Subscription and return its columns (pure). Raises :class:`SubscriptionRejected`."""
    if body.get("resourceType") != "Subscription":
        raise SubscriptionRejected("resourceType must be Subscription")
    if body.get("criteria") != TOPIC:
        raise SubscriptionRejected(f"criteria must be the topic {TOPIC}")
    channel = body.get("channel") or {}
    if channel.get("type") != "rest-hook":
        raise SubscriptionRejected("only the rest-hook channel is supported")
    endpoint = str(channel.get("endpoint") or "")
    if not endpoint.startswith(("http://", "https://")):
        raise SubscriptionRejected("channel.endpoint must be an http(s) URL")
    if channel.get("payload", "application/fhir+json") not in ("application/fhir+json", "application/json"):
        raise SubscriptionRejected("channel.payload must be application/fhir+json")
    content = _ext(channel.get("_payload"), PAYLOAD) or "id-only"
    if content not in PAYLOADS:
        raise SubscriptionRejected(f"payload content must be one of {', '.join(PAYLOADS)}")
    patient = category = None
    filters = [
        str(e.get("valueString", ""))
        for e in (body.get("_criteria") or {}).get("extension", [])
        if e.get("url") == FILTER
    ]
    for text in filters:
        resource, _, query = text.partition("?")
        if resource not in ("DiagnosticReport", ""):
            raise SubscriptionRejected(f"filters apply to DiagnosticReport, not {resource}")
        for pair in filter(None, query.split("&")):
            name, _, value = pair.partition("=")
            if name == "patient" and value:
                patient = value if "/" in value else f"Patient/{value}"
            elif name == "category" and value:
                category = value
            else:
                raise SubscriptionRejected(f"unsupported filter {pair!r}: use patient= or category=")
    heartbeat = _ext(channel, HEARTBEAT)
    if heartbeat is not None and (not isinstance(heartbeat, int) or heartbeat < 1):
        raise SubscriptionRejected("heartbeat period must be a positive integer of seconds")
    return {
        "endpoint": endpoint,
        "payload": content,
        "filter_patient": patient,
        "filter_category": category,
        "heartbeat_period": heartbeat,
        "headers": [str(h) for h in channel.get("header", [])],
    }


def matches(sub: Subscription, report: dict[str, Any]) -> bool:
    subject = str((report.get("subject") or {}).get("reference", ""))
    if sub.filter_patient and sub.filter_patient != subject:
        return False
    if sub.filter_category:
        system, _, code = sub.filter_category.rpartition("|")
        codings = [c for cat in report.get("category", []) for c in cat.get("coding", [])]
        if not any(c.get("code") == code and (not system or c.get("system") == system) for c in codings):
            return False
    return True


def notification(
    sub: Subscription,
    kind: str,
    base_url: str,
    *,
    events: int,
    focus: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """A notification Bundle (pure): handshake, heartbeat, event-notification or query-status."""
    now = now or utcnow()
    params: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"{base_url}/Subscription/{sub.id}"}},
        {"name": "topic", "valueCanonical": TOPIC},
        {"name": "status", "valueCode": sub.status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(events)},
    ]
    entries: list[dict[str, Any]] = []
    if focus is not None:
        ref = f"{focus['resourceType']}/{focus['id']}"
        params.append(
            {
                "name": "notification-event",
                "part": [
                    {"name": "event-number", "valueString": str(events)},
                    {"name": "timestamp", "valueInstant": now.isoformat(timespec="seconds")},
                    {"name": "focus", "valueReference": {"reference": f"{base_url}/{ref}"}},
                ],
            }
        )
        if sub.payload == "id-only":
            entries.append(
                {
                    "fullUrl": f"{base_url}/{ref}",
                    "request": {"method": "PUT", "url": ref},
                    "response": {"status": "200"},
                }
            )
        elif sub.payload == "full-resource":
            entries.append(
                {
                    "fullUrl": f"{base_url}/{ref}",
                    "resource": focus,
                    "request": {"method": "PUT", "url": ref},
                    "response": {"status": "200"},
                }
            )
    status = {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": {
            "resourceType": "Parameters",
            "id": str(uuid.uuid4()),
            "meta": {"profile": [STATUS_PROFILE]},
            "parameter": params,
        },
        "request": {"method": "GET", "url": f"Subscription/{sub.id}/$status"},
        "response": {"status": "200"},
    }
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": now.isoformat(timespec="seconds"),
        "entry": [status, *entries],
    }


def _queue(
    session: Session, sub: Subscription, kind: str, mid: str, bundle: dict[str, Any], study_fk: int | None
) -> None:
    outbox.enqueue(
        session,
        study_fk=study_fk,
        destination=sub.id,
        kind=KIND,
        message_id=mid,
        payload={"bundle": bundle, "type": kind},
        order_key=sub.id,
    )
    sub.last_queued_at = utcnow()


def enqueue_report(
    session: Session, base_url: str, *, study_fk: int, resources: Sequence[dict[str, Any]]
) -> int:
    """Queue an event notification per matching active Subscription (inside the publication's transaction)."""
    report = next((r for r in resources if r["resourceType"] == "DiagnosticReport"), None)
    if report is None:
        return 0
    version = (report.get("meta") or {}).get("versionId", "1")
    queued = 0
    for sub in session.scalars(select(Subscription).where(Subscription.status == "active").with_for_update()):
        if not matches(sub, report):
            continue
        mid = outbox.message_id(KIND, sub.id, report["id"], version)
        if session.scalars(
            select(Outbox.id).where(Outbox.destination == sub.id, Outbox.message_id == mid)
        ).first():
            continue  # this report version was already notified
        sub.events += 1
        _queue(
            session,
            sub,
            "event-notification",
            mid,
            notification(sub, "event-notification", base_url, events=sub.events, focus=report),
            study_fk,
        )
        queued += 1
    return queued


def queue_heartbeats(sessions: sessionmaker[Session], base_url: str) -> int:
    """Queue a heartbeat for each active Subscription quiet for its heartbeat period."""
    now = utcnow()
    queued = 0
    with sessions.begin() as session:
        for sub in session.scalars(
            select(Subscription).where(
                Subscription.status == "active", Subscription.heartbeat_period.is_not(None)
            )
        ):
            assert sub.heartbeat_period is not None
            last = sub.last_queued_at or sub.created_at
            if now - last < dt.timedelta(seconds=sub.heartbeat_period):
                continue
            mid = outbox.message_id(KIND, sub.id, "heartbeat", now.isoformat())
            _queue(
                session,
                sub,
                "heartbeat",
                mid,
                notification(sub, "heartbeat", base_url, events=sub.events),
                None,
            )
            queued += 1
    return queued


class SubscriptionSender:
    """POSTs notification Bundles to each Subscription's endpoint with its headers."""

    def __init__(
        self, sessions: sessionmaker[Session], *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._sessions = sessions
        self._client = httpx.Client(timeout=30.0, transport=transport)

    def send(self, destination: str, message_id: str, payload: dict[str, Any]) -> None:
        with self._sessions() as session:
            sub = session.get(Subscription, destination)
            if sub is None or sub.status not in ("active", "requested"):
                raise PermanentDeliveryError(f"subscription {destination} is off or deleted")
            endpoint, header_lines = sub.endpoint, list(sub.headers or [])
        headers = {"Content-Type": "application/fhir+json"}
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip():
                headers[name.strip()] = value.strip()
        try:
            response = self._client.post(endpoint, json=payload["bundle"], headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"subscription endpoint unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 300:
            raise DeliveryError(f"subscription endpoint answered {response.status_code}")

    def close(self) -> None:
        self._client.close()


# -- HTTP routes (mounted before the FHIR API's catch-all) ------------------------------------------------


def build_subscription_routes(
    sessions: sessionmaker[Session], base_url: str, token: str, settings: Any
) -> list[BaseRoute]:
    """``/fhir/Subscription`` routes, authorised like the rest of ``/fhir`` (:mod:`gateway.auth`): reading a
    Subscription or its ``$status`` needs read access (``system/Subscription.r``, v1 ``read``); creating
    one needs ``system/Subscription.c`` and deleting ``system/Subscription.d`` (v1 ``write``)."""
    from gateway.auth import AuthError, authenticator
    from gateway.auth.core import Interaction
    from gateway.fhir.api import FhirResponse, _guard, operation_outcome
    from gateway.fhir.errors import Forbidden, NotFound, Unauthorized

    auth = authenticator(settings, token)

    def allowed(interaction: Interaction) -> Callable[[Request, str | None], str]:
        def who(request: Request, action: str | None) -> str:
            try:
                return auth.principal_for(request, "Subscription", interaction).client_id
            except AuthError as exc:
                raise (Unauthorized if exc.status == 401 else Forbidden)(str(exc)) from exc

        return who

    def g(
        _token: str, handler: Callable[[Request], Response], interaction: Interaction = "read"
    ) -> Callable[[Request], Response]:
        return _guard(allowed(interaction), handler)

    async def create(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return operation_outcome(400, "invalid", "the body is not JSON")
        return g(token, lambda r: _create(body), "create")(request)

    def _create(body: dict[str, Any]) -> Response:
        try:
            columns = parse_subscription(body)
        except SubscriptionRejected as exc:
            return operation_outcome(400, "invalid", str(exc))
        sub_id = str(uuid.uuid4())
        now = utcnow()
        stored = {**body, "id": sub_id, "status": "active"}
        with sessions.begin() as session:
            sub = Subscription(id=sub_id, status="active", events=0, body=stored, created_at=now, **columns)
            session.add(sub)
            session.flush()
            _queue(
                session,
                sub,
                "handshake",
                outbox.message_id(KIND, sub_id, "handshake"),
                notification(sub, "handshake", base_url, events=0),
                None,
            )
        log.info("subscription created", extra={"subscription": sub_id, "payload": columns["payload"]})
        return FhirResponse(
            stored, status_code=201, headers={"Location": f"{base_url}/Subscription/{sub_id}"}
        )

    def _get(sub_id: str) -> Subscription:
        with sessions() as session:
            sub = session.get(Subscription, sub_id)
        if sub is None:
            raise NotFound(f"Subscription/{sub_id} not found")
        return sub

    def read(request: Request) -> Response:
        sub = _get(request.path_params["sid"])
        return FhirResponse({**sub.body, "status": sub.status})

    def status(request: Request) -> Response:
        sub = _get(request.path_params["sid"])
        bundle = notification(sub, "query-status", base_url, events=sub.events)
        bundle["type"] = "searchset"
        for entry in bundle["entry"]:
            entry.pop("request", None)
            entry.pop("response", None)
            entry["search"] = {"mode": "match"}
        bundle.pop("meta")
        return FhirResponse(bundle)

    def delete(request: Request) -> Response:
        sid = request.path_params["sid"]
        with sessions.begin() as session:
            sub = session.get(Subscription, sid)
            if sub is None:
                raise NotFound(f"Subscription/{sid} not found")
            sub.status = "off"
        return Response(status_code=204)

    return [
        Route("/fhir/Subscription", create, methods=["POST"]),
        Route("/fhir/Subscription/{sid}/$status", g(token, status), methods=["GET"]),
        Route("/fhir/Subscription/{sid}", g(token, read), methods=["GET"]),
        Route("/fhir/Subscription/{sid}", g(token, delete, "delete"), methods=["DELETE"]),
    ]
