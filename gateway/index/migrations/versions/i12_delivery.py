"""outbox delivery state: message ids, claims under a lease, per-patient order, dead letter

Revision ID: i12_delivery
Revises: 0001
Create Date: 2026-12-01 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i12_delivery"
down_revision = "i11_web"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stable_reason", sa.Text(), nullable=True))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        # Subscription handshakes and heartbeats belong to no study.
        batch_op.alter_column("study_fk", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("message_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("order_key", sa.String(length=128), nullable=False, server_default=""))
        batch_op.add_column(
            sa.Column("state", sa.String(length=16), nullable=False, server_default="pending")
        )
        batch_op.add_column(sa.Column("available_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_outbox_claim", ["state", "available_at"], unique=False)
        batch_op.create_index("ix_outbox_order", ["destination", "order_key", "id"], unique=False)
        batch_op.create_unique_constraint("uq_outbox_message", ["destination", "message_id"])

    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("accession_number", sa.String(length=64), nullable=True),
        sa.Column("placer_number", sa.String(length=64), nullable=True),
        sa.Column("filler_number", sa.String(length=64), nullable=True),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=64), nullable=False),
        sa.Column("requested_procedure_id", sa.String(length=64), nullable=True),
        sa.Column("requested_procedure", sa.String(length=256), nullable=True),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("order_control", sa.String(length=8), nullable=True),
        sa.Column("message_type", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_accession_number", ["accession_number"], unique=False)
        batch_op.create_index("ix_orders_study_instance_uid", ["study_instance_uid"], unique=False)
    op.create_table(
        "mpps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("referenced", sa.JSON(), nullable=False),
        sa.Column("calling_ae", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sop_instance_uid", name="uq_mpps_sop_instance_uid"),
    )
    with op.batch_alter_table("mpps", schema=None) as batch_op:
        batch_op.create_index("ix_mpps_study_instance_uid", ["study_instance_uid"], unique=False)
    op.create_table(
        "patient_merges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=64), nullable=False),
        sa.Column("prior_patient_id", sa.String(length=64), nullable=False),
        sa.Column("prior_issuer", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("endpoint", sa.String(length=1024), nullable=False),
        sa.Column("payload", sa.String(length=16), nullable=False),
        sa.Column("filter_patient", sa.String(length=128), nullable=True),
        sa.Column("filter_category", sa.String(length=256), nullable=True),
        sa.Column("heartbeat_period", sa.Integer(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("last_queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("subscriptions")
    op.drop_table("patient_merges")
    with op.batch_alter_table("mpps", schema=None) as batch_op:
        batch_op.drop_index("ix_mpps_study_instance_uid")
    op.drop_table("mpps")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_study_instance_uid")
        batch_op.drop_index("ix_orders_accession_number")
    op.drop_table("orders")
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_column("stable_reason")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint("uq_outbox_message", type_="unique")
        batch_op.drop_index("ix_outbox_order")
        batch_op.drop_index("ix_outbox_claim")
        batch_op.alter_column("study_fk", existing_type=sa.Integer(), nullable=False)
        for column in (
            "updated_at",
            "lease_expires_at",
            "lease_owner",
            "available_at",
            "state",
            "order_key",
            "message_id",
        ):
            batch_op.drop_column(column)
