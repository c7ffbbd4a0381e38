"""Micro-batching: concurrent requests share one model call.

Callers (one per request thread) ``submit`` a list of texts and wait on a future. One worker thread
takes the first waiting job, then keeps collecting jobs until it has ``max_batch`` texts or
``max_wait_s`` has passed since that first job, runs the model once and hands every caller back its
own slice of the result, in order. A job larger than ``max_batch`` runs in chunks of ``max_batch``.

``inflight`` (optional) tells how many requests are currently inside the server; when every one of
them is already in the batch, nobody else can join, so the batch runs at once instead of waiting -
a lone request never pays ``max_wait_s``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Job(Generic[T]):
    texts: list[str]
    future: Future[list[T]] = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)


class BatcherClosed(RuntimeError):
    pass


class MicroBatcher(Generic[T]):
    def __init__(self, predict: Callable[[Sequence[str]], list[T]], *, max_batch: int = 16,
                 max_wait_s: float = 0.002,
                 on_batch: Callable[[int, float, float], None] | None = None,
                 inflight: Callable[[], int] | None = None) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if max_wait_s < 0:
            raise ValueError("max_wait_s must be >= 0")
        self._predict = predict
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch  # (texts in batch, seconds the oldest job waited, model seconds)
        self._inflight = inflight
        self._q: queue.Queue[_Job[T] | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="scorer-batcher", daemon=True)
        self._thread.start()

    def submit(self, texts: Sequence[str]) -> Future[list[T]]:
        if self._closed:
            raise BatcherClosed("batcher is closed")
        job: _Job[T] = _Job(list(texts))
        if not job.texts:
            job.future.set_result([])
            return job.future
        self._q.put(job)
        return job.future

    def __call__(self, texts: Sequence[str], timeout: float | None = None) -> list[T]:
        return self.submit(texts).result(timeout)

    def close(self) -> None:
        self._closed = True
        self._q.put(None)
        self._thread.join(timeout=5)

    # -- worker ---------------------------------------------------------------------------
    def _run(self) -> None:
        pending: _Job[T] | None = None
        while True:
            first = pending if pending is not None else self._q.get()
            pending = None
            if first is None:
                return
            jobs = [first]
            n = len(first.texts)
            deadline = time.perf_counter() + self.max_wait_s
            stop = False
            while n < self.max_batch:
                if self._inflight is not None and self._q.empty() and len(jobs) >= self._inflight():
                    break  # every request in the server is already in this batch
                left = deadline - time.perf_counter()
                try:
                    nxt = self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if n + len(nxt.texts) > self.max_batch and n > 0:
                    pending = nxt  # starts the next batch
                    break
                jobs.append(nxt)
                n += len(nxt.texts)
            self._execute(jobs)
            if stop:
                return

    def _execute(self, jobs: list[_Job[T]]) -> None:
        texts = [t for j in jobs for t in j.texts]
        waited = time.perf_counter() - min(j.enqueued for j in jobs)
        t0 = time.perf_counter()
        try:
            results: list[T] = []
            for s in range(0, len(texts), self.max_batch):
                results += self._predict(texts[s:s + self.max_batch])
        except BaseException as e:
            for j in jobs:
                if not j.future.done():
                    j.future.set_exception(e)
            return
        if self._on_batch is not None:
            self._on_batch(len(texts), waited, time.perf_counter() - t0)
        i = 0
        for j in jobs:
            j.future.set_result(results[i:i + len(j.texts)])
            i += len(j.texts)
