"""The visit (PV1) of an order, for the PV1 segment of the ORU^R01

Revision ID: s2i12_order_visit
Revises: s2i10_accession_issuer
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "s2i12_order_visit"
down_revision = "s2i10_accession_issuer"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("visit", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("visit")
