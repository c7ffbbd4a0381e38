"""Prometheus side of the scaler: an HTTP API client, a background poller and its cache.

The poller queries Prometheus every ``interval`` seconds for every model it has been asked about
(a *subscription*: the model's resolved PromQL plus the Prometheus address) and keeps the last
good :class:`Sample` per subscription. RPCs read the cache only; they never wait on Prometheus,
except once for a subscription never polled before (bounded, see ``server``).

NaN and empty results count as 0. When Prometheus is unreachable the last good sample stays in the
cache; its age is reported and callers stop using it after ``max_staleness`` seconds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from urllib.parse import urlencode

import urllib3
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .metadata import QUERY_KEYS, MetadataError, ScalerMetadata, normalize_address
from .policy import MIN_GAP_S, ColdStartCost, KeepWarm, KeepWarmLearner, Observation, Params, decide

log = logging.getLogger("pickspin.scaler.prom")

RPC_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0)
SubKey = tuple[str, tuple[tuple[str, str], ...]]  # (prometheus address, ((query name, promql), ...))


class PromError(RuntimeError):
    """Prometheus could not be queried (unreachable, timeout, HTTP or API error)."""


class AddressNotAllowed(MetadataError):
    """The trigger's ``prometheusAddress`` is not one the scaler was configured to query."""

    def __init__(self, address: str, allowed: Iterable[str]) -> None:
        super().__init__("prometheusAddress", f"{address!r} is not an allowed Prometheus address "
                         f"(allowed: {', '.join(sorted(allowed))}; see the scaler's --allow-prometheus)")


class PromClient:
    """Minimal Prometheus HTTP API client: instant queries reduced to one number."""

    def __init__(self, timeout_s: float = 2.0, http: urllib3.PoolManager | None = None, *,
                 bearer_token_file: str | None = None, token_addresses: Iterable[str] | None = None) -> None:
        # total bounds the whole request (connect + every read), not just each socket operation
        self.timeout = urllib3.Timeout(total=timeout_s, connect=timeout_s, read=timeout_s)
        self.http = http or urllib3.PoolManager(num_pools=8, maxsize=8, retries=False)
        self.bearer_token_file = bearer_token_file
        # The token goes only to these addresses (None: any address the caller asks for).
        self.token_addresses = None if token_addresses is None else frozenset(token_addresses)
        self._token: tuple[float, str] | None = None  # (file mtime, token): re-read when the file rotates

    def _headers(self, address: str) -> dict[str, str]:
        if not self.bearer_token_file:
            return {}
        if self.token_addresses is not None and address not in self.token_addresses:
            return {}
        try:
            mtime = os.stat(self.bearer_token_file).st_mtime
            if self._token is None or self._token[0] != mtime:
                with open(self.bearer_token_file) as f:
                    self._token = (mtime, f.read().strip())
        except OSError as e:
            raise PromError(f"cannot read the bearer token file {self.bearer_token_file}: {e}") from e
        return {"Authorization": f"Bearer {self._token[1]}"}

    def query(self, address: str, promql: str) -> float | None:
        """Evaluate ``promql`` now; the sum over the returned series, None if there are none.

        NaN stays NaN (the policy treats it as 0). Raises :class:`PromError` on any failure.
        """
        url = f"{address}/api/v1/query?{urlencode({'query': promql})}"
        try:
            r = self.http.request("GET", url, timeout=self.timeout, headers=self._headers(address))
        except urllib3.exceptions.HTTPError as e:
            raise PromError(f"{address}: {type(e).__name__}: {e}") from e
        if r.status != 200:
            raise PromError(f"{address}: HTTP {r.status}: {r.data[:200]!r}")
        try:
            doc = json.loads(r.data)
        except ValueError as e:
            raise PromError(f"{address}: response is not JSON") from e
        if not isinstance(doc, dict) or doc.get("status") != "success":
            raise PromError(f"{address}: query failed: {str(doc.get('error') if isinstance(doc, dict) else doc)[:200]}")
        try:
            return _reduce(doc.get("data") or {})
        except (TypeError, KeyError, IndexError, AttributeError) as e:
            raise PromError(f"{address}: unexpected response shape ({type(e).__name__})") from e


def _num(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _reduce(data: dict[str, object]) -> float | None:
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return _num(result[1])
    if kind == "vector" and isinstance(result, list):
        vals = [_num(s.get("value", [None, None])[1]) for s in result if isinstance(s, dict)]
        return sum(vals) if vals else None
    if kind == "matrix":
        raise PromError("range vector result: the query must return an instant vector or a scalar")
    return None


@dataclass(frozen=True)
class Sample:
    """One successful poll of one subscription."""

    rate: float
    latency: float
    demand: float
    recent: float
    total: float
    polled_at: float  # poller clock
    last_used: float | None  # poller clock; when a request or demand was last seen
    held: float = 0.0  # of ``demand``, waiting for a replica to become ready (the router's push)

    def observation(self) -> Observation:
        return Observation(rate=self.rate, latency=self.latency, demand=self.demand, held=self.held,
                           recent=self.recent, last_used=self.last_used)


@dataclass(frozen=True)
class CacheView:
    """What an RPC sees: the last good sample (if any), its age, and whether it may be used."""

    sample: Sample | None
    age: float  # seconds since the sample was polled (inf if none)
    fresh: bool  # sample present and age <= max_staleness
    attempted: bool  # at least one poll attempt finished (success or failure)
    error: str | None  # last poll error, if the last attempt failed


@dataclass
class _Entry:
    key: SubKey
    md: ScalerMetadata  # the latest metadata seen for this subscription (for the scaler's own gauges)
    pinned: bool
    last_requested: float
    sample: Sample | None = None
    last_total: float | None = None
    last_used: float | None = None
    attempted: bool = False
    error: str | None = None
    errors: int = 0
    pushed: tuple[float, float, float] | None = None  # (demand, held, poller time) the router last pushed
    learner: KeepWarmLearner | None = None  # idle gaps and busy hours (adaptive keep-warm), made on first use
    keep_warm: KeepWarm | None = None  # the adaptive choice in force, if the trigger asks for one


class ScalerMetrics:
    """The scaler's own Prometheus metrics, on a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.polls = Counter("pickspin_scaler_polls_total", "Poll cycles of Prometheus, by result.", ["result"],
                             registry=r)
        self.poll_errors = Counter("pickspin_scaler_poll_errors_total",
                                   "Failed polls of Prometheus, per model.", ["model"], registry=r)
        self.poll_seconds = Histogram("pickspin_scaler_poll_seconds", "Duration of one poll cycle.",
                                      buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                      registry=r)
        self.target = Gauge("pickspin_scaler_target_replicas",
                            "Replicas the policy asks for (max(target, floor), 0 when inactive).", ["model"],
                            registry=r)
        self.metric = Gauge("pickspin_scaler_metric_value", "Value reported to the HPA (concurrency units).",
                            ["model"], registry=r)
        self.active = Gauge("pickspin_scaler_active", "1 if IsActive is true for the model.", ["model"],
                            registry=r)
        self.load = Gauge("pickspin_scaler_load", "r * lat (Little's law) per model.", ["model"], registry=r)
        self.rpcs = Counter("pickspin_scaler_rpcs_total", "RPCs answered, by method and status code.",
                            ["method", "code"], registry=r)
        self.rpc_seconds = Histogram("pickspin_scaler_rpc_seconds",
                                     "Time in the RPC handler (cache read + policy), by method.", ["method"],
                                     buckets=RPC_BUCKETS, registry=r)
        self.subscriptions = Gauge("pickspin_scaler_subscriptions", "Models being polled.", registry=r)
        self.pushes = Counter("pickspin_scaler_demand_pushes_total", "Demand pushed by the router, per model.",
                              ["model"], registry=r)


class _StalenessCollector(Collector):
    def __init__(self, poller: Poller) -> None:
        self.poller = poller

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily("pickspin_scaler_staleness_seconds",
                              "Age of the last good Prometheus sample per model (+Inf if none).", labels=["model"])
        for model, age in self.poller.staleness().items():
            g.add_metric([model], age)
        yield g


@dataclass
class PollerConfig:
    default_address: str = "http://127.0.0.1:9090"
    interval_s: float = 2.0
    max_staleness_s: float = 60.0
    query_timeout_s: float = 2.0
    bearer_token_file: str | None = None  # sent as "Authorization: Bearer <token>" (e.g. a service-account token)
    expire_after_s: float = 900.0  # forget subscriptions not asked about for this long (unless pinned)
    max_subscriptions: int = 1000
    workers: int = 4  # concurrent polls per Prometheus address
    # Prometheus addresses a trigger's prometheusAddress may name, besides default_address. Nothing else is
    # ever queried (the bearer token goes only to these): a trigger cannot point the scaler elsewhere.
    allowed_addresses: tuple[str, ...] = ()
    # Bound on one poll cycle: a subscription whose poll has not finished by then counts as failed for this
    # cycle and is not polled again until that poll returns. None: query_timeout_s * queries + 1 s.
    poll_timeout_s: float | None = None
    # Demand the router pushes directly (held and routed requests) counts for this long: a model at zero
    # wakes on the push, not on the next Prometheus scrape and poll.
    push_ttl_s: float = 15.0

    def allowed(self) -> frozenset[str]:
        return frozenset(normalize_address(a) for a in (self.default_address, *self.allowed_addresses))

    def cycle_timeout(self) -> float:
        if self.poll_timeout_s is not None:
            return self.poll_timeout_s
        return self.query_timeout_s * len(QUERY_KEYS) + 1.0


class Poller:
    """Background thread: poll Prometheus for every subscription, cache the results."""

    def __init__(self, config: PollerConfig | None = None, *, metrics: ScalerMetrics | None = None,
                 client: PromClient | None = None, clock: Callable[[], float] = time.monotonic,
                 day_clock: Callable[[], float] = time.time) -> None:
        self.config = config or PollerConfig()
        self.metrics = metrics or ScalerMetrics()
        self._allowed = self.config.allowed()
        self.client = client or PromClient(self.config.query_timeout_s,
                                           bearer_token_file=self.config.bearer_token_file,
                                           token_addresses=self._allowed)
        self.clock = clock
        self.day_clock = day_clock  # UTC seconds: the time of day adaptive keep-warm learns busy hours on
        self._entries: dict[SubKey, _Entry] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[], None]] = []
        # One pool per Prometheus address (their number is bounded by the allow-list): a hung address
        # ties up its own workers only, never the polls of the others.
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._inflight: dict[SubKey, Future[bool]] = {}  # polls that outlived their cycle, still running
        self.metrics.registry.register(_StalenessCollector(self))

    # -- subscriptions ---------------------------------------------------------------------
    def key_for(self, md: ScalerMetadata) -> SubKey:
        """The cache key of ``md``; raises :class:`AddressNotAllowed` for an address not allow-listed."""
        address = normalize_address(md.prometheus_address or self.config.default_address)
        if address not in self._allowed:
            raise AddressNotAllowed(address, self._allowed)
        return address, tuple(md.queries().items())

    def subscribe(self, md: ScalerMetadata, *, pinned: bool = False, key: SubKey | None = None) -> SubKey:
        """Make sure ``md``'s model is polled; returns the cache key. Cheap when already subscribed.

        ``key``, if given, must be ``key_for(md)`` (callers on a hot path cache it).
        """
        key = key or self.key_for(md)
        now = self.clock()
        e = self._entries.get(key)
        if e is not None:
            e.last_requested = now
            if e.md is not md:
                e.md = md
            return key
        with self._lock:
            if key not in self._entries:
                if len(self._entries) >= self.config.max_subscriptions:
                    self._expire(now, force=True)
                self._entries[key] = _Entry(key=key, md=md, pinned=pinned, last_requested=now)
                self.metrics.subscriptions.set(len(self._entries))
        self._wake.set()
        return key

    def push(self, model: str, demand: float, held: float = 0.0) -> int:
        """Demand the router reports for ``model`` right now (requests held for a cold start or routed
        there): until ``push_ttl_s`` passes, every subscription of that model sees at least this demand
        and counts as used now, even before Prometheus has scraped anything. Listeners (the open
        StreamIsActive streams) run at once. Returns how many subscriptions it touched."""
        now = self.clock()
        touched = 0
        for e in list(self._entries.values()):
            if e.md.model == model:
                e.pushed = (max(0.0, demand), max(0.0, min(held, demand)), now)
                e.last_used = now
                touched += 1
        if touched:
            self.metrics.pushes.labels(model).inc()
            for fn in self._listeners:
                fn()
        return touched

    def _with_push(self, e: _Entry, s: Sample | None, now: float) -> Sample | None:
        if e.pushed is None or now - e.pushed[2] > self.config.push_ttl_s:
            return s
        demand, held, at = e.pushed
        if s is None:  # nothing scraped yet: the push alone says this model is wanted
            return Sample(rate=0.0, latency=0.0, demand=demand, recent=0.0, total=0.0, polled_at=at, last_used=at,
                          held=held)
        return replace(s, demand=max(s.demand, demand), held=held, last_used=max(s.last_used or at, at),
                       polled_at=max(s.polled_at, at))

    def view(self, key: SubKey) -> CacheView:
        e = self._entries.get(key)
        if e is None:
            return CacheView(None, math.inf, False, False, "not subscribed")
        s = self._with_push(e, e.sample, self.clock())
        age = math.inf if s is None else max(0.0, self.clock() - s.polled_at)
        return CacheView(s, age, s is not None and age <= self.config.max_staleness_s, e.attempted, e.error)

    def staleness(self) -> dict[str, float]:
        out: dict[str, float] = {}
        now = self.clock()
        for e in list(self._entries.values()):
            age = math.inf if e.sample is None else max(0.0, now - e.sample.polled_at)
            out[e.md.model] = min(out.get(e.md.model, math.inf), age)
        return out

    def add_listener(self, fn: Callable[[], None]) -> None:
        """``fn()`` runs on the poller thread after every poll cycle (keep it short and thread-safe)."""
        self._listeners.append(fn)

    # -- polling ---------------------------------------------------------------------------
    def _pool_for(self, address: str) -> ThreadPoolExecutor:
        pool = self._pools.get(address)
        if pool is None:
            with self._lock:
                pool = self._pools.get(address)
                if pool is None:
                    pool = self._pools[address] = ThreadPoolExecutor(
                        max_workers=self.config.workers, thread_name_prefix="scaler-poll")
        return pool

    def poll_once(self) -> None:
        """Poll every subscription once: concurrently, ``workers`` at a time per Prometheus address.

        Returns when every poll of this cycle has finished, or after ``cycle_timeout()``; a poll still
        running then counts as a failure of its subscription (the others keep their results) and that
        subscription is skipped until the poll returns. One failing or hanging subscription never stops
        the others from being polled.
        """
        t0 = time.perf_counter()
        self._expire(self.clock())
        timeout = self.config.cycle_timeout()
        deadline = time.monotonic() + timeout
        futures: dict[Future[bool], _Entry] = {}
        ok = True
        for e in list(self._entries.values()):
            running = self._inflight.get(e.key)
            if running is not None:
                if not running.done():
                    ok = False
                    self._fail(e, PromError(f"the previous poll has not returned after {timeout:.1f}s"))
                    continue
                self._inflight.pop(e.key, None)  # _expire may drop it from an RPC thread meanwhile
            futures[self._pool_for(e.key[0]).submit(self._poll_entry, e, deadline)] = e
        done, pending = wait(futures, timeout=timeout)
        for f in done:
            if f.exception() is not None or not f.result():
                ok = False
        for f in pending:
            ok = False
            e = futures[f]
            if not f.cancel():  # running: remember it, do not start another poll of it meanwhile
                self._inflight[e.key] = f
            self._fail(e, PromError(f"poll did not finish within {timeout:.1f}s"))
        self.metrics.polls.labels("ok" if ok else "error").inc()
        self.metrics.poll_seconds.observe(time.perf_counter() - t0)
        for fn in list(self._listeners):
            try:
                fn()
            except Exception:  # a listener must not kill the poller
                log.exception("poll listener failed")

    def _fail(self, e: _Entry, err: Exception) -> None:
        e.errors += 1
        if e.error is None or e.errors % 30 == 1:  # first failure of a run, then every 30th
            log.warning("poll of %s failed (%d so far): %s", e.md.model, e.errors, err)
        e.error = str(err)
        e.attempted = True
        if self._entries.get(e.key) is e:  # not for a subscription that has gone away meanwhile
            self.metrics.poll_errors.labels(e.md.model).inc()

    def _poll_entry(self, e: _Entry, deadline: float | None = None) -> bool:
        address = e.key[0]
        values: dict[str, float | None] = {}
        try:
            for name, promql in e.key[1]:
                if deadline is not None and time.monotonic() > deadline:
                    raise PromError("poll cycle deadline passed before every query ran")
                values[name] = self.client.query(address, promql)
        except Exception as exc:  # PromError, or anything unexpected: one bad model must not stop the others
            self._fail(e, exc if isinstance(exc, PromError) else PromError(f"{type(exc).__name__}: {exc}"))
            return False
        now = self.clock()
        total = values.get("total")
        demand = values.get("demand")
        rate = values.get("rate")
        # Last used: demand now, or the request counter moved since the previous poll. This also sees the
        # first request of a brand-new series, which increase() over tau cannot (it needs two samples). On the
        # first poll, a counter with no increase() result yet is a series younger than tau: count it as used.
        if total is None or not math.isfinite(total):
            moved = False
        elif e.last_total is None:
            moved = total > 0 and values.get("recent") is None
        else:
            moved = total != e.last_total
        if _pos(demand) or moved:
            if e.md.keep_warm == "adaptive":
                if e.learner is None:
                    e.learner = KeepWarmLearner(min_gap_s=max(MIN_GAP_S, 2 * self.config.interval_s))
                e.learner.used(now, self.day_clock(), rate)
            e.last_used = now
        if total is not None and math.isfinite(total):
            e.last_total = total
        sample = Sample(rate=_f(rate), latency=_f(values.get("latency")), demand=_f(demand),
                        recent=_f(values.get("recent")), total=_f(total), polled_at=now, last_used=e.last_used)
        e.sample = sample
        if e.error is not None:
            log.info("poll of %s recovered", e.md.model)
        e.error = None
        e.attempted = True
        if e.md.keep_warm == "adaptive":
            md = e.md
            lr = e.learner or KeepWarmLearner(min_gap_s=max(MIN_GAP_S, 2 * self.config.interval_s))
            cost = ColdStartCost(load_s=md.load_seconds, gpus=md.gpus, slo_miss_gpu_s=md.slo_miss_gpu_seconds,
                                 rate=lr.busy_rate)
            e.keep_warm = lr.choose(cost, KeepWarm(md.floor(), md.idle_seconds, math.nan, 0), self.day_clock())
        if self._entries.get(e.key) is e:  # a late poll must not bring back a removed model's series
            self._update_gauges(e.md, sample, now, self.params(e.key, e.md))
        return True

    def params(self, key: SubKey, md: ScalerMetadata) -> Params:
        """The policy parameters in force for a subscription: the trigger's, or with adaptive keep-warm
        the floor and tau learned from its gaps and busy hours (the trigger's until enough are seen)."""
        e = self._entries.get(key)
        kw = None if e is None or md.keep_warm != "adaptive" else e.keep_warm
        if kw is None:
            return params_of(md)
        return Params(concurrency=md.concurrency, floor=kw.floor, idle_seconds=kw.idle_seconds)

    def _update_gauges(self, md: ScalerMetadata, s: Sample, now: float, p: Params) -> None:
        d = decide(s.observation(), p, now)
        m = md.model
        self.metrics.target.labels(m).set(d.desired)
        self.metrics.metric.labels(m).set(d.metric_value)
        self.metrics.active.labels(m).set(1 if d.active else 0)
        self.metrics.load.labels(m).set(d.load)

    def _expire(self, now: float, force: bool = False) -> None:
        with self._lock:
            drop = [k for k, e in self._entries.items()
                    if not e.pinned and now - e.last_requested > self.config.expire_after_s]
            if force and not drop:
                unpinned = sorted((e.last_requested, k) for k, e in self._entries.items() if not e.pinned)
                drop = [k for _, k in unpinned[:1]]
            gone = {self._entries[k].md.model for k in drop}
            for k in drop:
                del self._entries[k]
                self._inflight.pop(k, None)
            gone -= {e.md.model for e in self._entries.values()}
            for model in gone:  # drop the per-model series of models nobody asks about any more
                for g in (self.metrics.target, self.metrics.metric, self.metrics.active, self.metrics.load,
                          self.metrics.poll_errors, self.metrics.pushes):
                    with contextlib.suppress(KeyError):
                        g.remove(model)
            self.metrics.subscriptions.set(len(self._entries))

    # -- thread ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="scaler-poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                log.exception("poll cycle failed")
            self._wake.wait(self.config.interval_s)
            self._wake.clear()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for pool in list(self._pools.values()):
            pool.shutdown(wait=False, cancel_futures=True)

    def entries(self) -> Iterable[ScalerMetadata]:
        return [e.md for e in list(self._entries.values())]


def params_of(md: ScalerMetadata) -> Params:
    return Params(concurrency=md.concurrency, floor=md.floor(), idle_seconds=md.idle_seconds)


def _pos(x: float | None) -> bool:
    return x is not None and math.isfinite(x) and x > 0


def _f(x: float | None) -> float:
    return math.nan if x is None else float(x)


__all__ = ["QUERY_KEYS", "AddressNotAllowed", "CacheView", "Poller", "PollerConfig", "PromClient", "PromError", "Sample",
           "ScalerMetrics", "params_of"]
