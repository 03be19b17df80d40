"""FHIR name search column and the audit trail of FHIR reads and searches

Revision ID: i10_fhir
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i10_fhir"
down_revision = "i12_delivery"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fhir_resources", schema=None) as batch_op:
        batch_op.add_column(sa.Column("names", sa.Text(), nullable=True))
        batch_op.create_index("ix_fhir_effective", ["resource_type", "effective"], unique=False)
    _backfill_names()
    op.create_table(
        "fhir_identifiers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("resource_fk", sa.Integer(), nullable=False),
        sa.Column("system", sa.String(length=256), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(["resource_fk"], ["fhir_resources.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("fhir_identifiers", schema=None) as batch_op:
        batch_op.create_index("ix_fhir_identifier_value", ["value", "system"], unique=False)
        batch_op.create_index(batch_op.f("ix_fhir_identifiers_resource_fk"), ["resource_fk"], unique=False)
    _backfill_identifiers()
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recorded", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=True),
        sa.Column("query", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Integer(), nullable=False),
        sa.Column("entities", sa.Text(), nullable=True),
        sa.Column("patients", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_recorded"), ["recorded"], unique=False)


def _backfill_names() -> None:
    """Name parts of the Patient and Practitioner rows already published (as gateway.fhir.store writes)."""
    rows = sa.table(
        "fhir_resources",
        sa.column("id", sa.Integer()),
        sa.column("resource_type", sa.String()),
        sa.column("body", sa.JSON()),
        sa.column("names", sa.Text()),
    )
    bind = op.get_bind()
    found = bind.execute(
        sa.select(rows.c.id, rows.c.body).where(rows.c.resource_type.in_(["Patient", "Practitioner"]))
    ).all()
    for row_id, body in found:
        parts: list[str] = []
        for name in (body or {}).get("name") or []:
            parts += [
                str(name.get("text", "")),
                str(name.get("family", "")),
                *map(str, name.get("given", [])),
            ]
        words = list(dict.fromkeys(p.casefold().strip() for p in parts if p and p.strip()))
        if words:
            value = "\n" + "\n".join(words) + "\n"
            bind.execute(sa.update(rows).where(rows.c.id == row_id).values(names=value))


def _backfill_identifiers() -> None:
    """Tokens of the rows already published, from their ``identifiers`` column ("\\nsystem|value\\n...")."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.text("SELECT id, identifiers FROM fhir_resources WHERE identifiers IS NOT NULL")
    ).all()
    table = sa.table(
        "fhir_identifiers",
        sa.column("resource_fk", sa.Integer()),
        sa.column("system", sa.String()),
        sa.column("value", sa.String()),
    )
    values = []
    for row_id, tokens in rows:
        for token in str(tokens).split("\n"):
            if "|" in token:
                system, _, value = token.partition("|")
                values.append({"resource_fk": row_id, "system": system[:256], "value": value[:256]})
    if values:
        bind.execute(sa.insert(table), values)


def downgrade() -> None:
    op.drop_table("fhir_identifiers")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_recorded"))
    op.drop_table("audit_events")
    with op.batch_alter_table("fhir_resources", schema=None) as batch_op:
        batch_op.drop_index("ix_fhir_effective")
        batch_op.drop_column("names")
