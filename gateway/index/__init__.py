"""The index: patients, studies, series, instances, documents, jobs and the outbox (SQLAlchemy 2)."""
