"""A worker process whose only stage hangs, for the SIGKILL test. Run: python slow_worker.py URL DATA_DIR."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from gateway.index.db import open_index
from gateway.metrics import Metrics
from gateway.pipeline.stage import Stage
from gateway.pipeline.worker import Worker
from gateway.settings import Settings


def _hang(ctx, study):  # type: ignore[no-untyped-def]
    print("stage started", flush=True)
    time.sleep(600)
    return {}


if __name__ == "__main__":
    url, data_dir = sys.argv[1], Path(sys.argv[2])
    settings = Settings.load(
        None,
        data_dir=data_dir,
        database_url=url,
        stable_age=0.2,
        pipeline={"lease_seconds": 1.5, "poll_interval": 0.05},
    )
    worker = Worker(settings, open_index(url), Metrics(), [Stage("slow", _hang, "hangs")], owner="victim")
    while not worker.run_once():
        time.sleep(0.05)
