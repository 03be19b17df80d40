"""What a pipeline stage is.

A stage is a function ``run(ctx, study) -> dict``. It must be idempotent: it may run again for the same
study version after a crash, so it writes its outputs with :meth:`StageContext.put_document`, which replaces
the previous output for the same key rather than adding a copy. The returned dict is stored on the job as its
result summary. Raise :class:`~gateway.errors.StageError` to retry with backoff, or
:class:`~gateway.errors.PermanentStageError` when retrying cannot help.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.index.models import Document, Instance, Series, Study, utcnow
from gateway.settings import Settings

StageFn = Callable[["StageContext", Study], dict[str, Any]]


@dataclass(frozen=True)
class Stage:
    """One row of the pipeline table."""

    name: str
    run: StageFn
    description: str


@dataclass
class StageContext:
    """What a stage may use: the settings, the index and the artifact store. Passed in, never global."""

    settings: Settings
    sessions: sessionmaker[Session]
    study_version: int
    stage: str

    def put_document(
        self,
        study: Study,
        *,
        key: str,
        kind: str,
        media_type: str,
        content: dict[str, Any] | None = None,
        data: bytes | None = None,
        instance_fk: int | None = None,
    ) -> Document:
        """Store (or replace) this stage's output ``key`` for the study's current version.

        Bytes go to a file under the artifact directory, written durably before the row points at it.
        """
        from gateway.store.artifacts import write_artifact

        path: str | None = None
        size = 0
        digest = ""
        if data is not None:
            written = write_artifact(
                self.settings.artifact_dir,
                study.study_instance_uid,
                self.study_version,
                self.stage,
                key,
                data,
                fsync=self.settings.dicom.fsync,
            )
            path, size, digest = str(written.path), written.size, written.sha256
        with self.sessions.begin() as session:
            row = session.scalars(
                select(Document).where(
                    Document.study_fk == study.id,
                    Document.stage == self.stage,
                    Document.key == key,
                    Document.study_version == self.study_version,
                )
            ).one_or_none()
            if row is None:
                row = Document(study_fk=study.id, stage=self.stage, key=key, study_version=self.study_version)
                session.add(row)
            row.kind = kind
            row.media_type = media_type
            row.content = content
            row.path = path
            row.size = size
            row.sha256 = digest
            row.instance_fk = instance_fk
            row.created_at = utcnow()
        return row

    def documents(self, study: Study, *, stage: str | None = None, kind: str | None = None) -> list[Document]:
        """This study version's documents, optionally of one stage or kind, oldest first."""
        query = select(Document).where(
            Document.study_fk == study.id, Document.study_version == self.study_version
        )
        if stage is not None:
            query = query.where(Document.stage == stage)
        if kind is not None:
            query = query.where(Document.kind == kind)
        with self.sessions() as session:
            return list(session.scalars(query.order_by(Document.id)))

    def previous_document(self, study: Study, *, stage: str, key: str) -> Document | None:
        """The newest output ``key`` of ``stage`` from an earlier version of the study, if any."""
        query = (
            select(Document)
            .where(
                Document.study_fk == study.id,
                Document.stage == stage,
                Document.key == key,
                Document.study_version < self.study_version,
            )
            .order_by(Document.study_version.desc())
            .limit(1)
        )
        with self.sessions() as session:
            return session.scalars(query).one_or_none()

    def instances(self, study: Study) -> list[tuple[Instance, Series]]:
        """The study's instances with their series, ordered by series and instance number."""
        query = (
            select(Instance, Series)
            .join(Series, Instance.series_fk == Series.id)
            .where(Instance.study_fk == study.id)
            .order_by(Series.series_number, Instance.instance_number, Instance.id)
        )
        with self.sessions() as session:
            return [(i, s) for i, s in session.execute(query).tuples()]
