"""Micro-batching: concurrent callers share model calls and each gets exactly its own results."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from functions.scorer.batcher import MicroBatcher


class Recorder:
    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[list[str]] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> list[str]:
        with self.lock:
            self.calls.append(list(texts))
        time.sleep(self.delay)
        return [t.upper() for t in texts]


def test_each_caller_gets_its_own_results_and_batches_form() -> None:
    rec = Recorder(delay=0.01)
    b: MicroBatcher[str] = MicroBatcher(rec, max_batch=8, max_wait_s=0.05)
    n = 24
    start = threading.Barrier(n)
    results: dict[int, list[str]] = {}

    def call(i: int) -> None:
        texts = [f"caller{i}-a", f"caller{i}-b"] if i % 3 == 0 else [f"caller{i}"]
        start.wait()
        results[i] = b(texts, timeout=10)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    b.close()
    for i in range(n):
        want = [f"CALLER{i}-A", f"CALLER{i}-B"] if i % 3 == 0 else [f"CALLER{i}"]
        assert results[i] == want
    assert sum(len(c) for c in rec.calls) == n + n // 3
    assert all(len(c) <= 8 for c in rec.calls)
    assert max(len(c) for c in rec.calls) > 1, rec.calls  # concurrent requests were batched
    assert len(rec.calls) < n


def test_job_larger_than_max_batch_runs_in_chunks() -> None:
    rec = Recorder()
    b: MicroBatcher[str] = MicroBatcher(rec, max_batch=4, max_wait_s=0.0)
    texts = [f"t{i}" for i in range(10)]
    assert b(texts, timeout=5) == [t.upper() for t in texts]
    b.close()
    assert [len(c) for c in rec.calls] == [4, 4, 2]


def test_errors_reach_every_caller_of_the_batch() -> None:
    def boom(texts: Sequence[str]) -> list[str]:
        raise ValueError("model exploded")

    b: MicroBatcher[str] = MicroBatcher(boom, max_batch=4, max_wait_s=0.01)
    futs = [b.submit([f"x{i}"]) for i in range(3)]
    for f in futs:
        with pytest.raises(ValueError, match="exploded"):
            f.result(5)
    b.close()


def test_empty_submission_and_bad_settings() -> None:
    rec = Recorder()
    b: MicroBatcher[str] = MicroBatcher(rec, max_batch=2, max_wait_s=0.0)
    assert b([], timeout=1) == []
    b.close()
    assert rec.calls == []
    with pytest.raises(ValueError):
        MicroBatcher(rec, max_batch=0)


def test_lone_request_does_not_wait_when_nobody_else_is_inflight() -> None:
    rec = Recorder()
    # A 30 s max wait: without the in-flight hint the call below would block far past its 5 s timeout.
    b: MicroBatcher[str] = MicroBatcher(rec, max_batch=8, max_wait_s=30.0, inflight=lambda: 1)
    assert b(["solo"], timeout=5) == ["SOLO"]
    b.close()
    assert rec.calls == [["solo"]]
