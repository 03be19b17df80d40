"""review page: accounts, sessions, link corrections, draft reviews, audit

Revision ID: i11_web
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i11_web"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ui_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "ui_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("user_fk", sa.Integer(), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_fk"], ["ui_users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_sha256"),
    )
    op.create_index("ix_ui_sessions_user_fk", "ui_sessions", ["user_fk"])
    op.create_table(
        "link_corrections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_fk", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("paragraph", sa.Integer(), nullable=True),
        sa.Column("sentence", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("original_sop", sa.String(length=64), nullable=True),
        sa.Column("new_sop", sa.String(length=64), nullable=True),
        sa.Column("new_series", sa.String(length=64), nullable=True),
        sa.Column("user_fk", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_fk"], ["studies.id"]),
        sa.ForeignKeyConstraint(["user_fk"], ["ui_users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_link_corrections_study_fk", "link_corrections", ["study_fk"])
    op.create_table(
        "draft_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_fk", sa.Integer(), nullable=False),
        sa.Column("study_version", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("sentences", sa.JSON(), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=False),
        sa.Column("user_fk", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_fk"], ["studies.id"]),
        sa.ForeignKeyConstraint(["user_fk"], ["ui_users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_draft_reviews_study_fk", "draft_reviews", ["study_fk"])
    op.create_table(
        "ui_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_fk", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("study_fk", sa.Integer(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["study_fk"], ["studies.id"]),
        sa.ForeignKeyConstraint(["user_fk"], ["ui_users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ui_audit_at", "ui_audit", ["at"])
    op.create_index("ix_ui_audit_study_fk", "ui_audit", ["study_fk"])


def downgrade() -> None:
    op.drop_table("ui_audit")
    op.drop_table("draft_reviews")
    op.drop_table("link_corrections")
    op.drop_table("ui_sessions")
    op.drop_table("ui_users")
