from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pytest

from gateway.inference.batcher import RecognitionBatcher


def crops(n: int, value: int) -> list[np.ndarray]:
    return [np.full((4, 8, 3), value, np.uint8) for _ in range(n)]


def test_crops_of_concurrent_requests_share_one_run() -> None:
    calls: list[int] = []
    started = threading.Barrier(3)

    def recognize(batch: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        calls.append(len(batch))
        return [(str(int(c[0, 0, 0])), 1.0) for c in batch]

    batcher = RecognitionBatcher(recognize, max_batch=100, max_wait_s=0.3)
    results: dict[int, list[tuple[str, float]]] = {}

    def request(value: int, n: int) -> None:
        started.wait()
        results[value] = batcher(crops(n, value))

    threads = [threading.Thread(target=request, args=(v, n)) for v, n in ((1, 2), (2, 3), (3, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    batcher.close()
    assert sum(calls) == 6
    assert len(calls) < 3, "crops from several requests went into one run"
    assert results == {1: [("1", 1.0)] * 2, 2: [("2", 1.0)] * 3, 3: [("3", 1.0)]}


def test_errors_reach_every_waiting_request() -> None:
    def recognize(batch: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        raise RuntimeError("onnx failed")

    batcher = RecognitionBatcher(recognize, max_wait_s=0.0)
    with pytest.raises(RuntimeError, match="onnx failed"):
        batcher(crops(2, 1))
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher(crops(1, 1))


def test_empty_request_needs_no_run() -> None:
    batcher = RecognitionBatcher(lambda batch: [("x", 1.0)] * len(batch))
    assert batcher([]) == []
    batcher.close()
