"""The discrete-event loop: arrivals from a trace, routing by the router's ``rank``, the cluster, a policy.

Time advances from event to event (a heap, plus the sorted arrival array). Events: an arrival, a
request's completion (or its deadline), a replica becoming ready, and periodic ticks (Prometheus
scrapes, the policy's own control loops, timeline samples). Nothing sleeps; a run is deterministic for
a seed.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from functions.router.classifiers.base import Estimate

from .cluster import ModelState, Replica, Scrape, service_times
from .config import SimConfig
from .routing import RoutingVariant, SimRouter
from .trace import Trace

if TYPE_CHECKING:
    from .policies.base import Policy

PENDING, OK, TIMEOUT, REJECTED = 0, 1, 2, 3
_COMPLETE, _READY, _TICK = 0, 1, 2


@dataclass
class Workload:
    """A trace plus, per request, the prompt it carries (index into the pool)."""

    trace: Trace
    prompt_of: np.ndarray  # int64 per request
    estimates: Sequence[Estimate]  # per prompt, of the routing variant's classifier
    correct: np.ndarray | None  # (n_prompts, n_models) int8, -1 unknown


@dataclass
class RunResult:
    policy: str
    routing: str
    horizon_s: float
    status: np.ndarray
    latency: np.ndarray  # s, NaN unless answered
    ttft: np.ndarray
    tpot: np.ndarray
    model_of: np.ndarray
    cold: np.ndarray
    correct: np.ndarray | None  # 1/0/-1 per request for its served model, None without outcomes
    models: list[str]
    per_model: dict[str, dict[str, float]]
    timeline_t: np.ndarray
    timeline_replicas: np.ndarray  # (T, M) replicas alive at each sample
    timeline_ready: np.ndarray
    timeline_arrivals: np.ndarray  # (T, M) arrivals routed to each model since the previous sample
    wall_s: float
    measure_from: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    arrival: np.ndarray | None = None  # s, per request (measured window)


class Simulation:
    def __init__(self, cfg: SimConfig, work: Workload, variant: RoutingVariant, policy: Policy, *,
                 sample_s: float | None = None) -> None:
        self.cfg = cfg
        self.work = work
        tr = work.trace
        self.horizon = tr.duration_s
        self.t0 = tr.measure_from  # accounting and metrics cover [t0, horizon]
        self.timeout = cfg.cluster.request_timeout_s
        self.end_t = self.horizon + self.timeout + 1.0
        self.models = [ModelState(k, m.name, m, cfg.cluster.models[m.name]) for k, m in enumerate(cfg.matrix.models)]
        for ms in self.models:
            if len(ms.model.backends) != 1:
                raise ValueError(f"model {ms.name}: the simulator models one backend (a Knative URL) per model")
        self.now = 0.0
        self.router = SimRouter(cfg.matrix, variant, self.models, clock=lambda: self.now)
        self.policy = policy
        n = len(tr)
        self.n = n
        self.t_arr: list[float] = tr.t.tolist()
        self.in_tok: list[int] = tr.in_tok.tolist()
        self.out_tok: list[int] = tr.out_tok.tolist()
        self.prompt_of: list[int] = work.prompt_of.tolist()
        self.status = np.zeros(n, np.int8)
        self.t_first = np.full(n, np.nan)
        self.t_done = np.full(n, np.nan)
        self.t_admit = np.full(n, np.nan)
        self.model_of = np.full(n, -1, np.int64)
        self.cold = np.zeros(n, bool)
        self._doomed: set[int] = set()  # admitted, but will hit the deadline before finishing
        self.unresolved = 0
        self.now = 0.0
        self._heap: list[tuple[float, int, int, Any, Any]] = []
        self._seq = 0
        self.sample_s = sample_s or max(10.0, self.horizon / 720.0)
        self._tl_t: list[float] = []
        self._tl_rep: list[list[int]] = []
        self._tl_ready: list[list[int]] = []
        self._tl_arr: list[list[int]] = []
        self._tl_last = [0] * len(self.models)

    # -- scheduling -------------------------------------------------------------------------
    def _push(self, t: float, kind: int, a: Any, b: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, a, b))

    def every(self, interval: float, fn: Callable[[float], None], first: float | None = None) -> None:
        """Call ``fn(now)`` every ``interval`` seconds of simulated time (first at ``first``, default interval)."""
        self._push(interval if first is None else first, _TICK, fn, interval)

    # -- actuation (policies call this) -----------------------------------------------------
    def scale(self, ms: ModelState, n: int, now: float, *, warm: bool = False) -> None:
        """Set the model's scale to ``n`` replicas (starting + ready). ``warm``: ready at once, no cold start."""
        n = max(0, n)
        cur = [r for r in ms.replicas if not r.draining]
        k = len(cur)
        if n > k:
            cold = 0.0 if warm else ms.cluster.cold_start_s
            for _ in range(n - k):
                r = Replica(ms.idx, now, now + cold, cold == 0.0)
                ms.replicas.append(r)
                if not warm and now >= self.t0:
                    ms.starts += 1
                if cold > 0.0:
                    self._push(now + cold, _READY, r, None)
            if cold == 0.0:
                self._dispatch(ms)
        elif n < k:
            # Starting replicas first (newest first), then idle ready ones, then the least busy (they drain).
            for r in sorted(cur, key=lambda r: (r.ready, r.active, -r.t_created))[: k - n]:
                if not r.ready or r.active == 0:
                    self._remove(ms, r, now)
                else:
                    r.draining = True

    def _remove(self, ms: ModelState, r: Replica, now: float) -> None:
        r.gone = True
        r.t_end = now
        ms.replicas.remove(r)
        self._account(ms, r, now)

    def _clip(self, a: float, b: float) -> float:
        """Length of [a, b] inside the measured window [t0, horizon]."""
        return max(0.0, min(b, self.horizon) - max(a, self.t0))

    def _account(self, ms: ModelState, r: Replica, end: float) -> None:
        g = ms.cluster.gpus
        life = self._clip(r.t_created, end)
        if life <= 0.0:
            return
        ms.gpu_s += life * g
        ms.replica_s += life
        ms.cold_gpu_s += self._clip(r.t_created, min(r.t_ready, end)) * g
        busy = r.busy_s
        if r.active > 0:
            busy += self._clip(r.busy_since, end)
        ready_time = self._clip(r.t_ready, end) if r.t_ready < end else 0.0
        ms.idle_gpu_s += max(0.0, ready_time - busy) * g

    # -- request path -----------------------------------------------------------------------
    def _arrival(self, i: int) -> None:
        now = self.now
        est = self.work.estimates[self.prompt_of[i]]
        m = self.router.choose(est)
        if m is None:
            self.status[i] = REJECTED
            return
        ms = self.models[m]
        self.model_of[i] = m
        self.unresolved += 1
        ms.touch(now)
        ms.inflight += 1
        self.router.begin(ms)
        ms.arrival_t.append(now)
        ms.last_arrival = now
        if not any(r.ready and not r.draining for r in ms.replicas):
            if now >= self.t0:
                ms.cold_requests += 1
            self.cold[i] = True
        ms.pending.append(i)
        self.policy.on_arrival(self, ms, now)
        self._dispatch(ms)

    def _dispatch(self, ms: ModelState) -> None:
        pend = ms.pending
        if not pend:
            return
        ready = [r for r in ms.replicas if r.ready and not r.draining]
        if not ready:
            return
        now = self.now
        mc = ms.cluster
        cap = mc.max_batch
        timeout = self.timeout
        while pend:
            best = min(ready, key=lambda r: r.active) if len(ready) > 1 else ready[0]
            if best.active >= cap:
                return
            i = pend.popleft()
            deadline = self.t_arr[i] + timeout
            if now >= deadline:
                self._resolve(ms, i, False)
                continue
            best.active += 1
            if best.active == 1:
                best.busy_since = now
            ms.running += 1
            ttft, e2e = service_times(mc, self.in_tok[i], self.out_tok[i], best.active)
            self.t_admit[i] = now
            self.t_first[i] = now + ttft
            end = now + e2e
            if end > deadline:
                end = deadline
                self._doomed.add(i)
            self._push(end, _COMPLETE, best, i)

    def _complete(self, r: Replica, i: int) -> None:
        ms = self.models[r.model]
        now = self.now
        r.active -= 1
        if r.active == 0:
            r.busy_s += self._clip(r.busy_since, now)
        ms.running -= 1
        ok = i not in self._doomed
        if not ok:
            self._doomed.discard(i)
        self._resolve(ms, i, ok)
        if r.draining and r.active == 0 and not r.gone:
            self._remove(ms, r, now)
        self._dispatch(ms)

    def _resolve(self, ms: ModelState, i: int, ok: bool) -> None:
        now = self.now
        ms.touch(now)
        ms.inflight -= 1
        self.unresolved -= 1
        self.status[i] = OK if ok else TIMEOUT
        self.t_done[i] = now
        lat = now - self.t_arr[i]
        if self.cold[i] and self.t_admit[i] == self.t_admit[i]:  # admitted after a cold start (not NaN)
            lat = now - self.t_admit[i]  # the router leaves the held time out (X-PickSpin-Held-S)
        ms.done_t.append(now)
        ms.done_cum_lat.append((ms.done_cum_lat[-1] if ms.done_cum_lat else 0.0) + lat)
        self.router.end(ms, ok, lat)  # what the router's proxy reports to its telemetry

    def _purge(self, ms: ModelState) -> None:
        """Fail queued requests whose deadline has passed (the activator / queue-proxy timeout)."""
        pend = ms.pending
        limit = self.now - self.timeout
        while pend and self.t_arr[pend[0]] <= limit:
            self._resolve(ms, pend.popleft(), False)

    # -- periodic ---------------------------------------------------------------------------
    def _scrape(self, now: float) -> None:
        for ms in self.models:
            self._purge(ms)
            s = Scrape(now, len(ms.done_t), ms.done_cum_lat[-1] if ms.done_cum_lat else 0.0, ms.inflight,
                       ms.waiting, ms.running, len(ms.arrival_t))
            ms.scrapes.append(s)
            ms.scrape_t.append(now)

    def _sample(self, now: float) -> None:
        for ms in self.models:
            self._purge(ms)
        self._tl_t.append(now)
        self._tl_rep.append([ms.n_alive for ms in self.models])
        self._tl_ready.append([sum(1 for r in ms.replicas if r.ready) for ms in self.models])
        arr = [len(ms.arrival_t) for ms in self.models]
        self._tl_arr.append([a - b for a, b in zip(arr, self._tl_last, strict=True)])
        self._tl_last = arr

    # -- run --------------------------------------------------------------------------------
    def run(self, progress: Callable[[int], None] | None = None) -> RunResult:
        t0 = time.perf_counter()
        self.now = 0.0
        self._scrape(0.0)
        self.every(self.cfg.cluster.prometheus_scrape_s, self._scrape)
        self._sample(0.0)
        self.every(self.sample_s, self._sample)
        self.policy.attach(self)
        heap = self._heap
        t_arr = self.t_arr
        n = self.n
        i = 0
        end_t = self.end_t
        step = max(1, n // 50)
        while True:
            nxt = t_arr[i] if i < n else math.inf
            if heap and heap[0][0] <= nxt:
                t, _, kind, a, b = heapq.heappop(heap)
                if t > end_t:
                    break
                self.now = t
                if kind == _COMPLETE:
                    self._complete(a, b)
                elif kind == _READY:
                    if not a.gone:
                        a.ready = True
                        self._dispatch(self.models[a.model])
                else:
                    a(t)
                    if t + b <= end_t and (i < n or self.unresolved > 0 or t < self.horizon):
                        self._push(t + b, _TICK, a, b)
            elif i < n:
                self.now = nxt
                self._arrival(i)
                i += 1
                if progress is not None and i % step == 0:
                    progress(step)
            else:
                break
        if progress is not None:
            progress(n % step)
        # Whatever is still unanswered has run out of time.
        self.now = max(self.now, self.horizon)
        for ms in self.models:
            while ms.pending:
                self._resolve(ms, ms.pending.popleft(), False)
        for k in np.flatnonzero(self.status == PENDING):
            if self.model_of[k] >= 0:
                self.status[k] = TIMEOUT
        for ms in self.models:
            for r in list(ms.replicas):
                self._account(ms, r, self.horizon)
        return self._result(time.perf_counter() - t0)

    def _result(self, wall: float) -> RunResult:
        """Per-request arrays of the measured requests (arrival >= t0) and per-model accounting."""
        t_arr = self.work.trace.t
        keep = t_arr >= self.t0
        ok = self.status == OK
        lat = np.where(ok, self.t_done - t_arr, np.nan)
        ttft = np.where(ok, self.t_first - t_arr, np.nan)
        out = self.work.trace.out_tok
        decode = self.t_done - self.t_first
        tpot = np.where(ok & (out > 1), decode / np.maximum(out - 1, 1), 0.0)
        tpot = np.where(ok, tpot, np.nan)
        correct = None
        if self.work.correct is not None:
            c = self.work.correct
            m = self.model_of
            pr = self.work.prompt_of
            correct = np.where(m >= 0, c[pr, np.maximum(m, 0)], -1).astype(np.int8)[keep]
        model_of = self.model_of[keep]
        span = self.horizon - self.t0
        per_model: dict[str, dict[str, float]] = {}
        tl_rep = np.asarray(self._tl_rep, dtype=float) if self._tl_rep else np.zeros((0, len(self.models)))
        tl_t = np.asarray(self._tl_t)
        in_window = tl_t >= self.t0
        for ms in self.models:
            per_model[ms.name] = {
                "requests": int((model_of == ms.idx).sum()),
                "gpu_seconds": ms.gpu_s,
                "cold_start_gpu_seconds": ms.cold_gpu_s,
                "idle_gpu_seconds": ms.idle_gpu_s,
                "replica_seconds": ms.replica_s,
                "cold_starts": ms.starts,
                "cold_start_requests": ms.cold_requests,
                "mean_replicas": ms.replica_s / span if span > 0 else 0.0,
                "max_replicas": float(tl_rep[in_window, ms.idx].max()) if in_window.any() else 0.0,
                "usd": ms.gpu_s * self.cfg.cluster.gpu.usd_per_gpu_second,
            }
        return RunResult(
            policy=self.policy.name, routing=self.router.variant.name, horizon_s=self.horizon,
            status=self.status[keep].copy(), latency=lat[keep], ttft=ttft[keep], tpot=tpot[keep], model_of=model_of,
            cold=self.cold[keep].copy(), correct=correct, models=[ms.name for ms in self.models], per_model=per_model,
            timeline_t=tl_t, timeline_replicas=tl_rep,
            timeline_ready=np.asarray(self._tl_ready, dtype=float) if self._tl_ready else tl_rep.copy(),
            timeline_arrivals=np.asarray(self._tl_arr, dtype=float) if self._tl_arr else tl_rep.copy(),
            wall_s=wall, measure_from=self.t0, arrival=t_arr[keep].copy())
