"""Migrations build the schema the models describe, on SQLite and PostgreSQL, and can run again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from gateway.index.db import migrate
from gateway.index.models import Base


def engine_of(sessions: Any) -> Engine:
    bind = sessions.kw["bind"]
    assert isinstance(bind, Engine)
    return bind


def schema(engine: Engine) -> dict[str, Any]:
    insp = inspect(engine)
    out: dict[str, Any] = {}
    for table in insp.get_table_names():
        out[table] = {
            "columns": {c["name"]: bool(c["nullable"]) for c in insp.get_columns(table)},
            # PostgreSQL lists the index behind each unique constraint too; those are compared as constraints.
            "indexes": sorted(
                i["name"] or "" for i in insp.get_indexes(table) if not i.get("duplicates_constraint")
            ),
            "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
        }
    return out


class TestMigrations:
    def test_creates_schema_from_empty(self, empty_index_url: str, engines: Any) -> None:
        engine = engine_of(engines.open(empty_index_url))
        tables = set(inspect(engine).get_table_names())
        assert tables == set(Base.metadata.tables) | {"alembic_version"}
        with engine.connect() as conn:
            heads = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        cfg = Config()
        cfg.set_main_option("script_location", "gateway.index:migrations")
        assert heads == list(ScriptDirectory.from_config(cfg).get_heads())

    def test_idempotent(self, empty_index_url: str, engines: Any) -> None:
        engine = engine_of(engines.open(empty_index_url))
        before = schema(engine)
        migrate(engine)
        migrate(engine)
        engine2 = engine_of(engines.open(empty_index_url))
        assert schema(engine2) == before
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1

    def test_models_match_migrated_schema(self, empty_index_url: str, engines: Any) -> None:
        engine = engine_of(engines.open(empty_index_url))
        actual = schema(engine)
        for name, table in Base.metadata.tables.items():
            assert name in actual, f"table {name} missing from the migrations"
            assert actual[name]["columns"] == {c.name: bool(c.nullable) for c in table.columns}, name
            model_indexes = sorted(str(i.name) for i in table.indexes)
            assert [i for i in actual[name]["indexes"] if not i.startswith("sqlite_")] == model_indexes, name
        # Alembic's own comparison (what `alembic revision --autogenerate` would emit) must find nothing.
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []

    def test_sqlite_pragmas(self, tmp_path: Path, engines: Any) -> None:
        engine = engine_of(engines.open(f"sqlite:///{tmp_path / 'i.sqlite3'}"))
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
