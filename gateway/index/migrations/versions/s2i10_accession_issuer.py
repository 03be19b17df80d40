"""The assigning authority of a study's accession number (IssuerOfAccessionNumberSequence)

Revision ID: s2i10_accession_issuer
Revises: i10_fhir
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "s2i10_accession_issuer"
down_revision = "i10_fhir"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("accession_issuer", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_column("accession_issuer")
