"""The audit trail of the FHIR API: every read, vread, history and search is recorded in the index (who:
the client id; what: the resources and patients returned; when; outcome), and served back as FHIR
AuditEvent (R4 or R5) to auditors only. Nothing of it is logged: the trail lives in the index, which holds
patient data anyway, and the log file at INFO stays free of it.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Literal

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.index.models import AuditEvent

log = logging.getLogger(__name__)
MAX_ENTITIES = 1000
#: restful-interaction codes (http://hl7.org/fhir/restful-interaction) per API action.
INTERACTIONS = {
    "read": "read",
    "vread": "vread",
    "history": "history-instance",
    "history-type": "history-type",
    "search": "search-type",
    "metadata": "capabilities",
}


def returned(content: Any) -> tuple[list[str], list[str]]:
    """("Type/id" of every resource in a response body, "Patient/id" of every patient they concern)."""
    resources: list[dict[str, Any]] = []
    if isinstance(content, dict) and content.get("resourceType") == "Bundle":
        resources = [e["resource"] for e in content.get("entry", []) if isinstance(e.get("resource"), dict)]
    elif isinstance(content, dict) and content.get("resourceType") not in (None, "OperationOutcome"):
        resources = [content]
    entities: dict[str, None] = {}
    patients: dict[str, None] = {}
    for r in resources:
        key = f"{r.get('resourceType')}/{r.get('id')}"
        entities[key] = None
        if r.get("resourceType") == "Patient":
            patients[key] = None
        for element in ("subject", "patient"):
            ref = r.get(element)
            if isinstance(ref, dict) and str(ref.get("reference", "")).startswith("Patient/"):
                patients[str(ref["reference"])] = None
    return list(entities)[:MAX_ENTITIES], list(patients)[:MAX_ENTITIES]


def record(
    sessions: sessionmaker[Session],
    *,
    client_id: str,
    action: str,
    resource_type: str | None,
    query: str | None,
    outcome: int,
    content: Any,
    durable: bool = False,
) -> None:
    """Write one AuditEvent row in its own short transaction, committed before the answer leaves. A failure
    to record is logged (without the request's data) and does not fail the request.

    Unless ``durable``, the commit does not wait for the disk (SQLite ``synchronous=NORMAL`` in WAL mode,
    PostgreSQL ``synchronous_commit=off``): the row survives a crash of the gateway, but an operating-system
    crash or power loss may lose the last fraction of a second of rows. Waiting for the disk costs about
    10 ms a request here; ``[fhir] audit_durable`` chooses.
    """
    entities, patients = returned(content) if outcome < 400 else ([], [])
    values = {
        "client_id": client_id[:128],
        "action": action[:32],
        "resource_type": (resource_type or None) and resource_type[:64],
        "query": (query or None) and query[:4096],
        "outcome": outcome,
        "entities": "\n".join(entities) or None,
        "patients": "\n".join(patients) or None,
    }
    engine = sessions.kw["bind"]
    try:
        with engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            raw = conn.connection.dbapi_connection
            before = None
            if sqlite and not durable and raw is not None:
                # A connection-level setting, changeable only outside a transaction; restored below.
                before = raw.execute("PRAGMA synchronous").fetchone()[0]
                raw.execute("PRAGMA synchronous=NORMAL")
            try:
                with conn.begin():
                    if not sqlite and not durable:
                        conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                    conn.execute(insert(AuditEvent).values(**values))
            finally:
                if before is not None and raw is not None:
                    raw.execute(f"PRAGMA synchronous={int(before)}")
    except Exception as exc:  # the audit store is down: say so, without patient data
        log.error("could not record an audit event: %s", type(exc).__name__)


def _outcome(status: int, version: Literal["R4", "R5"]) -> Any:
    code = "0" if status < 400 else "4" if status < 500 else "8"
    if version == "R4":
        return code
    return {"code": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-outcome", "code": code}}


def audit_event_resource(row: AuditEvent, version: Literal["R4", "R5"]) -> dict[str, Any]:
    """The row as a FHIR AuditEvent (R4 4.0.1 or R5 5.0.0)."""
    rest = {
        "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
        "code": "rest",
        "display": "RESTful Operation",
    }
    interaction = {
        "system": "http://hl7.org/fhir/restful-interaction",
        "code": INTERACTIONS.get(row.action, "read"),
    }
    action = "E" if row.action.startswith(("search", "history")) else "R"
    who = {"identifier": {"system": "urn:gateway:client-id", "value": row.client_id}}
    entity: list[dict[str, Any]] = []
    for ref in (row.entities or "").splitlines():
        entity.append({"what": {"reference": ref}})
    for ref in (row.patients or "").splitlines():
        item: dict[str, Any] = {"what": {"reference": ref}}
        if version == "R4":
            item["type"] = {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"}
            item["role"] = {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}
        entity.append(item)
    if row.query:
        entity.append({"query": _b64(row.query)})
    res: dict[str, Any] = {"resourceType": "AuditEvent", "id": str(row.id)}
    recorded = row.recorded.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if version == "R4":
        res.update(
            {
                "type": rest,
                "subtype": [interaction],
                "action": action,
                "recorded": recorded,
                "outcome": _outcome(row.outcome, version),
                "agent": [{"who": who, "requestor": True}],
                "source": {"observer": {"display": "gateway FHIR API"}},
            }
        )
    else:
        res.update(
            {
                "category": [{"coding": [rest]}],
                "code": {"coding": [interaction]},
                "action": action,
                "recorded": recorded,
                "outcome": _outcome(row.outcome, version),
                "agent": [{"who": who, "requestor": True}],
                "source": {"observer": {"display": "gateway FHIR API"}},
            }
        )
    if entity:
        res["entity"] = entity
    return res


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def search_audit(
    session: Session,
    *,
    patient: str | None,
    agent: str | None,
    since: dt.datetime | None,
    before: dt.datetime | None,
    count: int,
    offset: int,
) -> list[AuditEvent]:
    q = select(AuditEvent)
    if patient:
        q = q.where(AuditEvent.patients.contains(patient, autoescape=True))
    if agent:
        q = q.where(AuditEvent.client_id == agent)
    if since is not None:
        q = q.where(AuditEvent.recorded >= since)
    if before is not None:
        q = q.where(AuditEvent.recorded < before)
    return list(session.scalars(q.order_by(AuditEvent.id.desc()).limit(count).offset(offset)))
