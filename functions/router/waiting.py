"""Deadline-aware wait-or-downgrade: Pick when the best model is cold or waking.

Each request has a wait budget: how long it may wait for a backend to become ready (the
``X-PickSpin-Max-Wait`` header or ``max_wait_s`` body field, else the profile's ``max_wait_s``, else
``router.max_wait_s``; ``strict`` = as long as it takes). Pick then:

1. ranks the candidates as if every backend were warm - the model the request *should* get;
2. if that preferred backend's wait (its activator's ETA, else its ``cold_start_s`` while believed at
   zero) fits the budget, serves it (the request is held while it wakes);
3. else serves the best candidate whose wait fits (Eq. 2 with the wait in T), says which model it was
   downgraded from, and the caller wakes the preferred backend in the background so a later request
   gets it.

Pure: ``choose`` does no I/O and reads no clock; ``Waker`` does the background wake-ups.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import urllib3

from pickspin.config import Backend, Profile

from .classifiers.base import Estimate
from .scoring import Candidate, Scored, rank
from .telemetry import BackendStats, Telemetry

log = logging.getLogger("pickspin.router.waiting")

STRICT = math.inf  # wait as long as it takes


def wait_s(backend: Backend, stats: BackendStats | None) -> float:
    """Seconds a request sent now would wait before the backend serves it."""
    if stats is None:
        return 0.0
    if stats.eta_s is not None:
        return stats.eta_s
    return backend.cold_start_s if stats.cold else 0.0


@dataclass(frozen=True)
class Choice:
    table: list[Scored]  # eligible first, best first; what is served is the first eligible row
    downgraded_from: str | None = None  # the preferred model, when it was cold beyond the budget
    wake: str | None = None  # backend to wake in the background (the preferred one)


def choose(candidates: Sequence[Candidate], snapshot: Mapping[str, BackendStats], estimate: Estimate,
           profile: Profile, budget_s: float, *, max_error_rate: float | None = 0.5, now: float | None = None,
           half_open_requests: int = 1, max_held: int = 0) -> Choice:
    """Rank ``candidates`` and apply the wait budget (see the module docstring); the keywords go to
    :func:`~functions.router.scoring.rank`."""
    kw = {"max_error_rate": max_error_rate, "now": now, "half_open_requests": half_open_requests,
          "max_held": max_held}
    waits = {c.backend.name: wait_s(c.backend, snapshot.get(c.backend.name)) for c in candidates}
    table = rank(candidates, snapshot, estimate, profile, **kw)  # type: ignore[arg-type]
    if not any(waits.values()):
        return Choice(table)  # everything warm: the usual ranking
    warm_view = {n: replace(s, cold=False, eta_s=None) for n, s in snapshot.items()}
    preferred = next((s for s in rank(candidates, warm_view, estimate, profile, **kw)  # type: ignore[arg-type]
                      if s.eligible), None)
    if preferred is None:
        return Choice(table)
    if waits[preferred.backend] <= budget_s:
        # worth the wait: serve the preferred backend first, the rest in their usual order as failover
        first = next(s for s in table if s.backend == preferred.backend)
        return Choice([first, *(s for s in table if s is not first)])
    within = [s for s in table if s.eligible and waits[s.backend] <= budget_s]
    if not within:
        return Choice(table)  # nothing fits: the usual ranking, the request waits
    top = within[0]
    rest = [s for s in table if s is not top]
    downgraded = preferred.model if top.model != preferred.model else None
    return Choice([top, *rest], downgraded_from=downgraded, wake=preferred.backend)


class Waker:
    """Wakes backends in the background with one cheap request (a Knative revision at zero starts on any
    request; the local activator starts on any non-health request), at most one in flight per backend."""

    def __init__(self, backends: Sequence[Backend], telemetry: Telemetry, timeout_s: float) -> None:
        self._backends = {b.name: b for b in backends}
        self._telemetry = telemetry
        self._timeout = urllib3.Timeout(connect=5.0, read=timeout_s)
        self._http = urllib3.PoolManager(maxsize=2, retries=False)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pickspin-waker")
        self._lock = threading.Lock()
        self._waking: set[str] = set()
        self.sent = 0

    def wake(self, name: str) -> bool:
        """Start waking ``name`` unless a wake-up is already under way; True if one was sent."""
        with self._lock:
            if name in self._waking or name not in self._backends:
                return False
            self._waking.add(name)
            self.sent += 1
        b = self._backends[name]
        # Waking from now on: later requests see the wait still ahead (the activator's probe answers
        # refine it where there is one), not a backend at zero that nobody is starting.
        eta = wait_s(b, self._telemetry.snapshot.get(name))
        self._telemetry.set_readiness(name, cold=False, eta_s=eta or None)
        self._pool.submit(self._wake, b)
        return True

    def _wake(self, b: Backend) -> None:
        ok = False
        try:
            r = self._http.request("GET", b.url + "/v1/models", timeout=self._timeout)
            ok = r.status < 500
            log.info("backend %s woken (%d)", b.name, r.status)
        except urllib3.exceptions.HTTPError as e:
            log.warning("waking backend %s failed: %s", b.name, type(e).__name__)
        finally:
            if ok:  # it answered: warm, and used just now (the idle guess counts from here)
                self._telemetry.begin(b.name)
                self._telemetry.end(b.name, ok=True)
            self._telemetry.set_readiness(b.name, cold=not ok, eta_s=None)
            with self._lock:
                self._waking.discard(b.name)

    def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
