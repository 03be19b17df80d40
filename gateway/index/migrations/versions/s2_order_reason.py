"""The reason for study (OBR-31) of an order, for ServiceRequest.reasonCode and the findings context

Revision ID: s2_order_reason
Revises: s2i12_order_visit
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "s2_order_reason"
down_revision = "s2i12_order_visit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("reason", sa.String(length=256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("reason")
