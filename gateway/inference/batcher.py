"""Cross-request batching of recognition crops.

Each in-flight read hands its line crops to :class:`RecognitionBatcher`; one thread gathers the crops of
several requests (until ``max_batch`` crops or ``max_wait_s`` after the first arrives) and recognises them in
one engine call, which buckets them by width. With concurrent requests this fills GPU batches that a single
page could not.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gateway.reading.engines.rapidocr import Recognizer

log = logging.getLogger(__name__)

Crop = npt.NDArray[np.uint8]


@dataclass
class _Job:
    crops: Sequence[Crop]
    future: Future[list[tuple[str, float]]]


class RecognitionBatcher:
    """A callable with the recogniser's signature that batches across calling threads."""

    def __init__(
        self,
        recognize: Recognizer,
        *,
        max_batch: int = 64,
        max_wait_s: float = 0.005,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self._recognize = recognize
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._on_batch = on_batch  # (requests, crops) of each run, for metrics
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="recognition-batcher", daemon=True)
        self._thread.start()

    def __call__(self, crops: Sequence[Crop]) -> list[tuple[str, float]]:
        if not crops:
            return []
        if self._closed.is_set():
            raise RuntimeError("recognition batcher is closed")
        job = _Job(crops=crops, future=Future())
        self._jobs.put(job)
        return job.future.result()

    def close(self) -> None:
        self._closed.set()
        self._jobs.put(None)
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                break
            jobs = [first]
            count = len(first.crops)
            deadline = time.monotonic() + self._max_wait_s
            stop = False
            while count < self._max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    nxt = self._jobs.get(timeout=remaining)
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                jobs.append(nxt)
                count += len(nxt.crops)
            self._run(jobs)
            if stop:
                break
        while True:  # fail whatever is still queued after close
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.future.set_exception(RuntimeError("recognition batcher is closed"))

    def _run(self, jobs: list[_Job]) -> None:
        crops = [c for job in jobs for c in job.crops]
        try:
            results = self._recognize(crops)
        except Exception as exc:
            log.exception("recognition batch of %d crops failed", len(crops))
            for job in jobs:
                job.future.set_exception(exc)
            return
        if self._on_batch is not None:
            self._on_batch(len(jobs), len(crops))
        start = 0
        for job in jobs:
            job.future.set_result(results[start : start + len(job.crops)])
            start += len(job.crops)
