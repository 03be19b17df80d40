"""outbox delivery state: message ids, claims under a lease, per-patient order, dead letter

Revision ID: i12_delivery
Revises: 0001
Create Date: 2026-12-01 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i12_delivery"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
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


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint("uq_outbox_message", type_="unique")
        batch_op.drop_index("ix_outbox_order")
        batch_op.drop_index("ix_outbox_claim")
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
