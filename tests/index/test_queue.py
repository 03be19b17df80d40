"""The leased-queue helper's pure part; its claims, leases and kill -9 recovery are exercised through the
job table (tests/pipeline/test_jobs.py, test_worker.py) and the outbox (tests/delivery/)."""

from __future__ import annotations

from gateway.index.queue import backoff_seconds


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_seconds(n, 5.0, 30.0) for n in range(0, 6)] == [5.0, 5.0, 10.0, 20.0, 30.0, 30.0]
