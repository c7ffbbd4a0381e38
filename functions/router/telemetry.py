"""Live telemetry per backend, published as immutable snapshots.

Writers (the proxy after each request, the background prober) update per-backend state under a
lock and publish a new snapshot dict; the decision path only reads ``Telemetry.snapshot``, a plain
attribute read, so routing does no I/O and takes no lock.

Each backend has a circuit breaker driven by real traffic (it works with active probes off):

* ``closed``: traffic flows. It opens on ``breaker_consecutive_failures`` failures in a row, or when
  at least ``breaker_min_samples`` outcomes are in the error window and their error rate is over
  ``max_error_rate``.
* ``open``: no traffic until ``retry_at`` (``breaker_cooldown_s`` after opening). Once the cooldown
  is over the backend is eligible again, and ``begin`` admits up to ``breaker_half_open_requests``
  real requests as trials (the circuit is then ``half_open``); other requests are refused and go to
  the next candidate.
* ``half_open``: a trial that succeeds closes the circuit with a clean error window; one that fails
  opens it again for another cooldown.

Failures are what the proxy reports as ``ok=False`` (5xx, timeouts, broken connections); a 4xx that
a client caused is a successful answer and never counts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

import urllib3

from pickspin.config import Backend, RouterSettings, ServiceMatrix
from pickspin.contract import BACKEND_ETA_HEADER, BACKEND_STATE_HEADER, WARM_STATES

log = logging.getLogger("pickspin.telemetry")


@dataclass(frozen=True)
class BackendStats:
    """What the router knows of one backend at one moment."""

    healthy: bool
    inflight: int
    latency_s: float  # EWMA of end-to-end latency (prior until observed)
    ttft_s: float | None  # EWMA of time to first byte
    error_rate: float  # share of failures among the last N outcomes
    observations: int
    checked_at: float  # monotonic time of the last health signal
    cold: bool = False  # believed to be at zero replicas (a request would wait for a cold start)
    eta_s: float | None = None  # seconds until ready, as the local activator last said (None: unknown)
    circuit: str = "closed"  # CLOSED | OPEN | HALF_OPEN (module docstring)
    retry_at: float = 0.0  # while open: monotonic time from which a trial request is admitted
    trials: int = 0  # while half-open: trial requests in flight
    consecutive_failures: int = 0

    @property
    def readiness(self) -> str:
        """cold (at zero), waking (a start-up under way) or warm."""
        if self.cold:
            return "cold"
        return "waking" if self.eta_s else "warm"


CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
CIRCUIT_STATES = (CLOSED, HALF_OPEN, OPEN)  # the metric's value is the index


@dataclass
class _State:
    stats: BackendStats
    outcomes: deque[bool]
    observed_at: float = 0.0  # monotonic time of the last latency observation
    used_at: float | None = None  # monotonic time of the last request sent to it


Clock = Callable[[], float]
#: Called after a circuit changes state: (backend, old state, new state, why).
CircuitListener = Callable[[str, str, str, str], None]


def _seconds(v: str | None) -> float | None:
    """A non-negative number of seconds from a header, or None."""
    try:
        x = float(v) if v is not None else None
    except ValueError:
        return None
    return x if x is not None and 0 <= x < float("inf") else None


class Telemetry:
    def __init__(self, backends: Iterable[Backend], settings: RouterSettings,
                 idle_to_zero: Mapping[str, float] | None = None, *, clock: Clock = time.monotonic,
                 on_circuit: CircuitListener | None = None) -> None:
        """``idle_to_zero``: backend -> idle seconds after which its scaler takes it to zero (only
        backends whose model has no warm pool); used to guess which backends are cold. ``clock``: the
        one source of time for every method (the simulator passes its simulated clock)."""
        self.settings = settings
        self.idle_to_zero = dict(idle_to_zero or {})
        self.clock = clock
        self.on_circuit = on_circuit
        self._lock = threading.Lock()
        self._backends = {b.name: b for b in backends}
        now = clock()
        self._state = {
            name: _State(
                BackendStats(True, 0, b.expected_latency_s, None, 0.0, 0, now,
                             cold=b.cold_start_s > 0 and name in self.idle_to_zero),
                deque(maxlen=settings.error_window),
            )
            for name, b in self._backends.items()
        }
        self.snapshot: Mapping[str, BackendStats] = {n: s.stats for n, s in self._state.items()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_matrix(cls, matrix: ServiceMatrix, *, clock: Clock = time.monotonic) -> Telemetry:
        """Telemetry for every backend of ``matrix``; backends of models without a warm pool may be at zero."""
        idle_to_zero = {b.name: m.scaling.idle_seconds for m in matrix.models if matrix.warm_pool(m) == 0
                        for b in m.backends}
        return cls([b for m in matrix.models for b in m.backends], matrix.router, idle_to_zero, clock=clock)

    # -- writers ---------------------------------------------------------------------------
    def _publish(self, name: str, stats: BackendStats) -> None:
        # caller holds the lock
        self._state[name].stats = stats
        self.snapshot = {**self.snapshot, name: stats}

    def begin(self, name: str) -> bool:
        """Count a request on its way to ``name``; False (nothing counted) if its circuit refuses it:
        open and cooling down, or half-open with every trial slot taken."""
        event = None
        with self._lock:
            st = self._state[name]
            now = self.clock()
            s = st.stats
            trials = s.trials
            if s.circuit == OPEN:
                if now < s.retry_at:
                    return False
                event = (OPEN, HALF_OPEN, "cooldown over; admitting a trial request")
                s = replace(s, circuit=HALF_OPEN, trials=0)
                trials = 0
            admitted = s.circuit != HALF_OPEN or trials < self.settings.breaker_half_open_requests
            if admitted:
                if s.circuit == HALF_OPEN:
                    trials += 1
                st.used_at = now
                # a request on its way wakes a backend at zero; later ones need not pay the cold start again
                s = replace(s, inflight=s.inflight + 1, cold=False, trials=trials)
            if admitted or event is not None:
                self._publish(name, s)
        self._notify(name, event)
        return admitted

    def end(self, name: str, *, ok: bool, latency_s: float | None = None, ttft_s: float | None = None,
            mark_down: bool = False) -> None:
        """Record one finished request; ``mark_down`` on a connect failure (passive health).
        ``ok=False`` is a failure the backend caused (5xx, timeout, broken connection)."""
        a = self.settings.ewma_alpha
        cfg = self.settings
        event = None
        with self._lock:
            st = self._state[name]
            s = st.stats
            now = self.clock()
            st.outcomes.append(ok)
            err = 1.0 - (sum(st.outcomes) / len(st.outcomes))
            lat, tt, n = s.latency_s, s.ttft_s, s.observations
            if ok and latency_s is not None:
                lat = latency_s if n == 0 else (1 - a) * lat + a * latency_s
                n += 1
                st.observed_at = now
            if ok and ttft_s is not None:
                tt = ttft_s if tt is None else (1 - a) * tt + a * ttft_s
            healthy = s.healthy and not mark_down
            checked = now if mark_down else s.checked_at
            circuit, retry_at, trials = s.circuit, s.retry_at, s.trials
            consecutive = 0 if ok else s.consecutive_failures + 1
            if circuit == HALF_OPEN:
                trials = max(0, trials - 1)
                if ok:
                    st.outcomes.clear()
                    err, consecutive = 0.0, 0
                    circuit, trials = CLOSED, 0
                    event = (HALF_OPEN, CLOSED, "trial request succeeded")
                else:
                    circuit, retry_at, trials = OPEN, now + cfg.breaker_cooldown_s, 0
                    event = (HALF_OPEN, OPEN, "trial request failed")
            elif circuit == CLOSED and not ok:
                why = None
                if consecutive >= cfg.breaker_consecutive_failures:
                    why = f"{consecutive} consecutive failures"
                elif len(st.outcomes) >= min(cfg.breaker_min_samples, cfg.error_window) and err > cfg.max_error_rate:
                    why = f"error rate {err:.2f} over {len(st.outcomes)} requests"
                if why is not None:
                    circuit, retry_at = OPEN, now + cfg.breaker_cooldown_s
                    event = (CLOSED, OPEN, why)
            self._publish(name, replace(s, inflight=max(0, s.inflight - 1), latency_s=lat, ttft_s=tt,
                                        error_rate=err, observations=n, healthy=healthy, checked_at=checked,
                                        circuit=circuit, retry_at=retry_at, trials=trials,
                                        consecutive_failures=consecutive))
        self._notify(name, event)

    def answered(self, name: str) -> None:
        """The backend answered with a status below 500: a half-open trial has succeeded, so the circuit
        closes now rather than when a long stream ends (lock-free unless the circuit is half-open)."""
        if self.snapshot[name].circuit != HALF_OPEN:
            return
        event = None
        with self._lock:
            st = self._state[name]
            s = st.stats
            if s.circuit == HALF_OPEN:
                st.outcomes.clear()
                event = (HALF_OPEN, CLOSED, "trial request answered")
                self._publish(name, replace(s, circuit=CLOSED, trials=0, error_rate=0.0, consecutive_failures=0))
        self._notify(name, event)

    def _notify(self, name: str, event: tuple[str, str, str] | None) -> None:
        if event is None:
            return
        old, new, why = event
        log.info("backend %s: circuit %s -> %s (%s)", name, old, new, why)
        if self.on_circuit is not None:
            try:
                self.on_circuit(name, old, new, why)
            except Exception:  # a listener never breaks a request
                log.exception("circuit listener failed")

    def set_health(self, name: str, healthy: bool) -> None:
        with self._lock:
            s = self._state[name].stats
            if not healthy or not s.healthy:
                # A backend coming back starts with a clean error window.
                if healthy:
                    self._state[name].outcomes.clear()
                self._publish(name, replace(s, healthy=healthy, checked_at=self.clock(),
                                            error_rate=0.0 if healthy else s.error_rate))

    # -- the prober ------------------------------------------------------------------------
    def probe_once(self, http: urllib3.PoolManager) -> None:
        t = urllib3.Timeout(connect=self.settings.probe_timeout_s, read=self.settings.probe_timeout_s)
        for name, b in self._backends.items():
            state = eta = None
            try:
                r = http.request("GET", b.url + b.probe_path(), timeout=t, retries=False, preload_content=True)
                ok = r.status == 200
                state, eta = r.headers.get(BACKEND_STATE_HEADER), _seconds(r.headers.get(BACKEND_ETA_HEADER))
            except urllib3.exceptions.HTTPError:
                ok = False
            if state is not None:
                # the local activator knows for sure; it overrides the guess from traffic
                self.set_readiness(name, cold=state not in WARM_STATES, eta_s=eta)
            if ok != self.snapshot[name].healthy:
                log.info("backend %s is now %s", name, "up" if ok else "down")
            self.set_health(name, ok)

    def set_cold(self, name: str, cold: bool) -> None:
        with self._lock:
            s = self._state[name].stats
            if s.cold != cold:
                self._publish(name, replace(s, cold=cold))

    def set_readiness(self, name: str, *, cold: bool, eta_s: float | None) -> None:
        """What the backend's activator says: at zero or not, and seconds until ready."""
        with self._lock:
            s = self._state[name].stats
            if (s.cold, s.eta_s) != (cold, eta_s):
                self._publish(name, replace(s, cold=cold, eta_s=eta_s))

    def update_cold(self) -> None:
        """Guess from traffic alone which backends their scaler has taken to zero: no request for
        longer than the model's idle time (tau) and no warm pool. Only for backends with a cold_start_s."""
        now = self.clock()
        for name, idle in self.idle_to_zero.items():
            if self._backends[name].cold_start_s <= 0:
                continue
            st = self._state[name]
            if st.stats.inflight == 0 and (st.used_at is None or now - st.used_at >= idle):
                self.set_cold(name, True)

    def decay_latency(self) -> None:
        """Pull latency estimates that nobody refreshed back toward the configured prior.

        An EWMA only moves when the backend answers: a model that looked slow once would never get
        traffic again, so its estimate would never recover. With a half-life h, an estimate last
        refreshed dt seconds ago is prior + (ewma - prior) * 0.5 ** (dt / h).
        """
        h = self.settings.latency_half_life_s
        if h is None:
            return
        now = self.clock()
        with self._lock:
            for name, st in self._state.items():
                prior = self._backends[name].expected_latency_s
                s = st.stats
                dt = now - st.observed_at
                if s.observations == 0 or s.inflight > 0 or dt <= 0 or abs(s.latency_s - prior) < 1e-3 * prior:
                    continue
                lat = prior + (s.latency_s - prior) * 0.5 ** (dt / h)
                st.observed_at = now
                self._publish(name, replace(s, latency_s=lat))

    def revive_stale(self) -> None:
        """Passive health: give a backend marked down another chance after down_cooldown_s."""
        now = self.clock()
        for name, s in self.snapshot.items():
            if not s.healthy and now - s.checked_at >= self.settings.down_cooldown_s:
                log.info("backend %s: cooldown over, trying it again", name)
                self.set_health(name, True)

    def tick_interval_s(self) -> float:
        """How often the prober runs: the probe interval, or often enough to honour the down cooldown."""
        s = self.settings
        return s.probe_interval_s if s.active_probes else min(1.0, s.down_cooldown_s / 2)

    def tick(self) -> None:
        """What the prober does besides probing: the cold guess, passive revival (only without active
        probes, which decide health themselves) and latency decay. The simulator calls it too."""
        self.update_cold()
        if not self.settings.active_probes:
            self.revive_stale()
        self.decay_latency()

    def start_prober(self) -> None:
        if self._thread is not None:
            return
        http = urllib3.PoolManager(maxsize=2)
        active = self.settings.active_probes
        interval = self.tick_interval_s()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    if active:
                        self.probe_once(http)
                    self.tick()
                except Exception:  # never let the prober die
                    log.exception("probe round failed")
                self._stop.wait(interval)

        self._thread = threading.Thread(target=loop, name="pickspin-prober", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
