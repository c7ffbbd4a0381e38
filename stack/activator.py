"""The local activator: per backend, the single-machine twin of Knative's activator with KEDA behind it.

For one backend with a ``launch`` block, :class:`LocalActivator` listens on the backend's configured URL
port and, like Knative's activator with KEDA behind it:

1. answers the router's health probe itself, without waking the backend;
2. on a request while the backend is cold, starts the backend process on an internal port and holds the
   request (bounded by ``router.cold_start_timeout_s``; then 503 + ``Retry-After`` in OpenAI's error
   shape) until the process is ready, then forwards it, streaming chunk by chunk;
3. counts demand (in flight + waiting) and the last-used time;
4. runs a control loop over the SAME policy functions as the gRPC scaler (:func:`policy.is_active` with
   tau and the warm floor): the process stops after tau of idleness unless the warm floor is above zero,
   and a backend whose floor is above zero is started at once and kept warm.

Usage (``pickspin up``)::

    act = LocalActivator(matrix, backend, lambda port: backend_command(backend, port))
    act.start()            # binds backend.url's port; pre-warms if the tier's floor > 0
    ...
    act.stop()             # stops the proxy and the backend process

or, for every backend with ``launch``: ``build_activators(matrix, backend_command, log_dir=...)``.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import urllib3

from pickspin.config import Backend, Model, ServiceMatrix
from pickspin.contract import (
    BACKEND_ETA_HEADER,
    BACKEND_STATE_HEADER,
    HELD_HEADER,
    HOP_BY_HOP_HEADERS,
    BackendState,
)
from pickspin.errors import error_body
from pickspin.procs import terminate_group
from pickspin_scaler.policy import ColdStartCost, KeepWarm, KeepWarmLearner, Observation, Params, decide

log = logging.getLogger("pickspin.activator")
LOAD_EWMA = 0.3  # weight of the newest observed start-up time

# Not relayed in either direction: hop-by-hop, and what each side's own HTTP stack sets.
_HOP = HOP_BY_HOP_HEADERS | {"host", "content-length", "server", "date"}
STATUS_PATH = "/_pickspin/activator"


@dataclass(frozen=True)
class LaunchSpec:
    """A backend process: argv, plus optional environment (merged over ours) and working directory."""

    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    cwd: str | None = None


#: Builds the backend's command for an internal port: ``lambda port: [...argv...]`` or a :class:`LaunchSpec`.
CommandFactory = Callable[[int], "Sequence[str] | LaunchSpec"]


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _expected_load_s(backend: Backend) -> float | None:
    """What the launch block says about load time before any start was seen (a simulated tier's)."""
    launch = backend.launch
    if launch is None or launch.type != "sim":
        return None
    from stack.simbackend import local_load_seconds

    return launch.load_s if launch.load_s is not None else local_load_seconds(launch.params_b)


class LocalActivator:
    """Scale-from-zero proxy + process supervisor for one backend. Thread-safe; ``start()``/``stop()``."""

    def __init__(self, matrix: ServiceMatrix, backend: Backend, command: CommandFactory, *,
                 listen_host: str | None = None, listen_port: int | None = None,
                 internal_port: int | None = None, cold_start_timeout_s: float | None = None,
                 startup_timeout_s: float | None = None, idle_seconds: float | None = None,
                 warm_pool: int | None = None, control_interval_s: float = 0.5, window_s: float = 300.0,
                 log_path: str | os.PathLike[str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        try:
            model = model_of(matrix, backend)
        except KeyError:
            raise ValueError(f"backend {backend.name!r} is not in the service matrix") from None
        self.matrix, self.model, self.backend, self.command = matrix, model, backend, command
        u = urlparse(backend.url)
        self.listen_host = listen_host or u.hostname or "127.0.0.1"
        self.listen_port = (u.port or 80) if listen_port is None else listen_port
        self.internal_port = internal_port
        self.cold_start_timeout_s = cold_start_timeout_s or matrix.router.cold_start_timeout_s
        launch = backend.launch
        self.startup_timeout_s = startup_timeout_s or (launch.startup_timeout_s if launch else 60.0)
        self.params = Params(
            concurrency=model.scaling.concurrency,
            floor=matrix.warm_pool(model) if warm_pool is None else warm_pool,
            idle_seconds=model.scaling.idle_seconds if idle_seconds is None else idle_seconds)
        self._configured = self.params
        self.control_interval_s = control_interval_s
        self.window_s = window_s
        self.log_path = Path(log_path) if log_path else None
        self.clock = clock
        self.retry_after_s = matrix.router.retry_after_s

        self._cv = threading.Condition()
        self._state: BackendState = BackendState.COLD
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._gen = 0  # start attempts
        self._failed_gen = 0  # last start attempt that failed
        self._failed_at: float | None = None
        self._failures = 0  # consecutive failed starts (warm-pool restart back-off)
        self._last_error: str | None = None
        self._inflight = 0  # requests being served or held (demand)
        self._last_used: float | None = None
        # Learned start-up time (EWMA over successful cold starts); the backend's cold_start_s is the prior.
        self._load_s: float | None = backend.cold_start_s or _expected_load_s(backend)
        self._starting_since: float | None = None
        # idle gaps and busy hours (adaptive keep-warm); no platform cooldown here, so every gap counts
        self._learner = KeepWarmLearner(min_gap_s=0.0)
        self.keep_warm: KeepWarm | None = None
        self._done: deque[tuple[float, float]] = deque(maxlen=100_000)  # (finish time, latency)
        self.starts = 0
        self.stops = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: Any = None
        self._http = urllib3.PoolManager(num_pools=2, maxsize=max(8, backend.max_concurrency * 2), retries=False)
        # Like Knative's activator with containerConcurrency: at most max_concurrency requests go to the backend
        # at once; the rest of a burst held through a cold start waits here for a slot, not in its accept queue.
        self._slots = threading.BoundedSemaphore(backend.max_concurrency)

    # -- public ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.listen_host}:{self.listen_port}"

    @property
    def state(self) -> BackendState:
        return self._state

    @property
    def backend_url(self) -> str | None:
        """The running process's internal URL, if any."""
        return None if self._port is None else f"http://127.0.0.1:{self._port}"

    def start(self) -> None:
        """Bind the proxy (OSError if the port is taken), start the control loop, pre-warm a floor > 0."""
        from werkzeug.serving import make_server

        try:
            self._server = make_server(self.listen_host, self.listen_port, self._wsgi, threaded=True)
        except SystemExit:  # werkzeug exits the process when it cannot bind; make it an ordinary error
            raise OSError(f"activator for {self.backend.name}: cannot listen on {self.url} "
                          "(port in use?)") from None
        self.listen_port = self._server.server_port
        self._server.daemon_threads = True
        t = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                             name=f"activator-{self.backend.name}", daemon=True)
        c = threading.Thread(target=self._control_loop, name=f"activator-ctl-{self.backend.name}", daemon=True)
        self._threads = [t, c]
        t.start()
        c.start()
        log.info("activator for %s on %s (floor %d, tau %.0fs)", self.backend.name, self.url, self.params.floor,
                 self.params.idle_seconds)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and stop the backend process (SIGTERM to its process group, then SIGKILL)."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for t in self._threads:
            t.join(timeout)
        with self._cv:
            proc = self._proc
            self._proc, self._port, self._state = None, None, BackendState.COLD
            self._cv.notify_all()
        if proc is not None:
            terminate_group(proc, timeout)

    def wake(self) -> None:
        """Start the backend now if it is cold (non-blocking)."""
        with self._cv:
            if self._state == BackendState.COLD and not self._stop.is_set():
                self._spawn_locked()

    def status(self) -> dict[str, Any]:
        now = self.clock()
        with self._cv:
            d = decide(self._observation(now), self.params, now)
            return {
                "backend": self.backend.name, "model": self.model.name, "state": self._state,
                "pid": self._proc.pid if self._proc else None, "internal_url": self.backend_url,
                "inflight": self._inflight, "idle_s": None if self._last_used is None else now - self._last_used,
                "starts": self.starts, "stops": self.stops, "last_error": self._last_error,
                "eta_s": self._eta_locked(now), "load_s": self._load_s,
                "policy": {"concurrency": self.params.concurrency, "floor": self.params.floor,
                           "idle_seconds": self.params.idle_seconds, "load": d.load, "target": d.target,
                           "desired": d.desired, "active": d.active, "keep_warm": self.model.scaling.keep_warm,
                           "gaps_seen": len(self._learner.gaps)},
            }

    def _eta_locked(self, now: float) -> float | None:
        """Seconds until the backend can serve: 0 when ready, what is left of the learned start-up time
        while starting, the whole of it when cold; None before any start-up time is known."""
        if self._state == BackendState.READY:
            return 0.0
        if self._load_s is None:
            return None
        if self._state == BackendState.STARTING and self._starting_since is not None:
            return max(0.0, self._load_s - (now - self._starting_since))
        return self._load_s

    # -- policy ----------------------------------------------------------------------------
    def _observation(self, now: float) -> Observation:
        while self._done and self._done[0][0] < now - self.window_s:
            self._done.popleft()
        n = len(self._done)
        rate = n / self.window_s
        lat = sum(x for _, x in self._done) / n if n else 0.0
        return Observation(rate=rate, latency=lat, demand=float(self._inflight), last_used=self._last_used)

    def _control_loop(self) -> None:
        while not self._stop.wait(self.control_interval_s):
            try:
                self._control_once()
            except Exception:
                log.exception("activator control loop for %s failed", self.backend.name)

    def _adapt_locked(self) -> None:
        """Adaptive keep-warm: the same choice the scaler and the simulator make, on this backend's own
        idle gaps and its learned start-up time."""
        s = self.model.scaling
        if s.keep_warm != "adaptive" or self._load_s is None:
            return
        n = len(self._done)
        cost = ColdStartCost(load_s=self._load_s, gpus=s.gpus, slo_miss_gpu_s=s.slo_miss_gpu_s,
                             rate=max(self._learner.busy_rate, n / self.window_s))
        default = KeepWarm(self._configured.floor, self._configured.idle_seconds, float("nan"), 0)
        self.keep_warm = self._learner.choose(cost, default, time.time())
        self.params = Params(self.params.concurrency, self.keep_warm.floor,
                             self.keep_warm.idle_seconds)

    def _control_once(self) -> None:
        now = self.clock()
        to_stop: subprocess.Popen[bytes] | None = None
        with self._cv:
            self._adapt_locked()
            if self._state == BackendState.READY and self._proc is not None and self._proc.poll() is not None:
                log.warning("backend %s exited unexpectedly (code %s)", self.backend.name, self._proc.returncode)
                self._last_error = f"exited with code {self._proc.returncode}"
                self._proc, self._port, self._state = None, None, BackendState.COLD
                self._cv.notify_all()
            active = decide(self._observation(now), self.params, now).active
            if self._state == BackendState.READY and not active and self._inflight == 0:
                to_stop, self._state = self._proc, BackendState.STOPPING
                log.info("backend %s idle for %.0fs (tau %.0fs): stopping", self.backend.name,
                         now - (self._last_used or now), self.params.idle_seconds)
            elif self._state == BackendState.COLD and self.params.floor > 0:
                backoff = min(60.0, 2.0 ** self._failures)  # 2, 4, 8 ... 60 s after failed starts
                if self._failed_at is None or now - self._failed_at > backoff:
                    self._spawn_locked()  # the warm pool: keep the floor running
        if to_stop is not None:
            terminate_group(to_stop, 10.0)
            with self._cv:
                self.stops += 1
                if self._proc is to_stop:
                    self._proc, self._port = None, None
                self._state = BackendState.COLD
                self._cv.notify_all()

    # -- process ---------------------------------------------------------------------------
    def _spawn_locked(self) -> int:
        """Caller holds the lock and saw state == cold. Starts a starter thread; returns the attempt number."""
        self._gen += 1
        self._state = BackendState.STARTING
        self._starting_since = self.clock()
        gen = self._gen
        threading.Thread(target=self._start_process, args=(gen,), name=f"activator-start-{self.backend.name}",
                         daemon=True).start()
        return gen

    def _start_process(self, gen: int) -> None:
        port = self.internal_port or _free_port()
        proc: subprocess.Popen[bytes] | None = None
        error: str | None = None
        t0 = time.monotonic()
        try:
            spec = self.command(port)
            if not isinstance(spec, LaunchSpec):
                spec = LaunchSpec(list(spec))
            env = {**os.environ, **spec.env} if spec.env else None
            out: Any = subprocess.DEVNULL
            if self.log_path is not None:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                out = self.log_path.open("ab")
            try:
                proc = subprocess.Popen(list(spec.argv), env=env, cwd=spec.cwd, stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            finally:
                if out is not subprocess.DEVNULL:
                    out.close()
            log.info("cold start of %s: pid %d on internal port %d", self.backend.name, proc.pid, port)
            with self._cv:
                self._proc = proc
            error = self._wait_process_ready(proc, port)
        except Exception as e:  # bad command, exec failure
            error = f"could not start: {type(e).__name__}: {e}"
        with self._cv:
            if error is None and not self._stop.is_set() and self._state == BackendState.STARTING:
                self._state, self._port = BackendState.READY, port
                if self._starting_since is not None:
                    took = self.clock() - self._starting_since
                    self._load_s = took if self._load_s is None else (1 - LOAD_EWMA) * self._load_s + LOAD_EWMA * took
                self.starts += 1
                self._failures = 0
                self._last_error = None
                log.info("backend %s ready after %.2fs", self.backend.name, time.monotonic() - t0)
                self._cv.notify_all()
                return
            error = error or "stopped while starting"
            self._last_error, self._failed_gen, self._failed_at = error, gen, self.clock()
            self._failures += 1
            if self._proc is proc:
                self._proc = None
            self._state, self._port = BackendState.COLD, None
            self._cv.notify_all()
        log.warning("cold start of %s failed: %s", self.backend.name, error)
        if proc is not None:
            terminate_group(proc, 5.0)

    def _wait_process_ready(self, proc: subprocess.Popen[bytes], port: int) -> str | None:
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"http://127.0.0.1:{port}{self.backend.probe_path()}"
        while time.monotonic() < deadline and not self._stop.is_set():
            if proc.poll() is not None:
                return f"exited with code {proc.returncode} before becoming ready"
            try:
                r = self._http.request("GET", url, timeout=urllib3.Timeout(connect=0.5, read=2.0))
                if r.status == 200:
                    return None
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.05)
        return f"not ready within {self.startup_timeout_s:.0f}s"

    # -- demand ----------------------------------------------------------------------------
    def _begin(self) -> None:
        with self._cv:
            now = self.clock()
            if self._inflight == 0:  # the idle gap this request ends, if any
                self._learner.used(now, time.time(), len(self._done) / self.window_s)
            self._inflight += 1
            self._last_used = now

    def _end(self, t0: float | None) -> None:
        with self._cv:
            self._inflight -= 1
            now = self.clock()
            self._last_used = now
            self._learner.busy_until(now)
            if t0 is not None:
                self._done.append((now, now - t0))

    def _wait_ready(self) -> str | None:
        """Hold until the backend is ready; None when ready, else why not (timeout or failed start)."""
        deadline = time.monotonic() + self.cold_start_timeout_s
        mine: int | None = None
        with self._cv:
            while True:
                if self._stop.is_set():
                    return "the activator is shutting down"
                if self._state == BackendState.READY:
                    return None
                if self._state == BackendState.COLD:
                    if mine is not None and self._failed_gen >= mine:
                        return f"backend failed to start: {self._last_error}"
                    mine = self._spawn_locked()
                elif self._state == BackendState.STARTING and mine is None:
                    mine = self._gen
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return f"backend not ready within {self.cold_start_timeout_s:g}s (cold start)"
                self._cv.wait(remaining)

    # -- HTTP ------------------------------------------------------------------------------
    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == STATUS_PATH:
            return _json(start_response, 200, self.status())
        if method == "GET" and path in {"/health", self.backend.probe_path()}:
            return self._probe(environ, start_response, path)
        body = _read_body(environ)
        arrived = self.clock()
        self._begin()  # counted as demand from here: held requests keep the model active
        try:
            why = self._wait_ready()
        except BaseException:
            self._end(None)
            raise
        if why is not None:
            self._end(None)
            code = "cold_start_timeout" if "within" in why else "backend_unavailable"
            with self._cv:
                eta = self._eta_locked(self.clock())
            retry = self.retry_after_s if not eta else max(1, math.ceil(eta))  # derived from the ETA when known
            return _json(start_response, 503, error_body(503, why, code=code), [("Retry-After", str(retry))])
        t0 = self.clock()
        try:
            return self._forward(environ, start_response, body, t0, arrived)  # ends the demand exactly once
        except BaseException:
            self._end(t0)
            raise

    def _probe(self, environ: dict[str, Any], start_response: Any, path: str) -> Any:
        with self._cv:
            state, port, err, failed_at = self._state, self._port, self._last_error, self._failed_at
            eta = self._eta_locked(self.clock())
        if state == BackendState.READY and port is not None:
            try:
                r = self._http.request("GET", f"http://127.0.0.1:{port}{path}", timeout=urllib3.Timeout(2.0, 5.0))
                return _raw(start_response, r.status, {**r.headers, BACKEND_STATE_HEADER: BackendState.READY.value}, r.data)
            except urllib3.exceptions.HTTPError as e:
                return _json(start_response, 503, error_body(503, f"backend probe failed: {type(e).__name__}"))
        if err is not None and failed_at is not None and self.clock() - failed_at < 30 and state == BackendState.COLD:
            return _json(start_response, 503, error_body(503, f"last cold start failed: {err}",
                                                         code="backend_unavailable"))
        # the router's telemetry reads these (readiness-aware Pick)
        said = [(BACKEND_STATE_HEADER, BackendState(state).value)]
        if eta is not None:
            said.append((BACKEND_ETA_HEADER, f"{eta:.1f}"))
        if path == "/v1/models":
            return _json(start_response, 200, {"object": "list", "data": [
                {"id": self.backend.served_model_name, "object": "model", "owned_by": "pickspin-activator"}]}, said)
        return _json(start_response, 200, {"status": "ok", "activator": state, "eta_s": eta}, said)

    def _forward(self, environ: dict[str, Any], start_response: Any, body: bytes, t0: float, arrived: float) -> Any:
        port = self._port
        path = environ.get("PATH_INFO", "") + (f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING") else "")
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items()
                   if k.startswith("HTTP_") and k[5:].replace("_", "-").lower() not in _HOP}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        if not self._slots.acquire(timeout=self.cold_start_timeout_s):
            self._end(t0)
            return _json(start_response, 503, error_body(503, f"backend {self.backend.name}: no free slot within "
                                                              f"{self.cold_start_timeout_s:g}s", code="overloaded"),
                         [("Retry-After", str(self.retry_after_s))])
        t0_sent = self.clock()
        try:
            up = self._http.request(environ.get("REQUEST_METHOD", "GET"), f"http://127.0.0.1:{port}{path}", body=body,
                                    headers=headers, preload_content=False,
                                    timeout=urllib3.Timeout(connect=5.0, read=self.matrix.router.first_byte_timeout_s))
        except urllib3.exceptions.HTTPError as e:
            self._slots.release()
            self._end(t0)
            return _json(start_response, 502, error_body(502, f"backend {self.backend.name}: {type(e).__name__}",
                                                         code="upstream_error"))
        out_headers = [(k, v) for k, v in up.headers.items() if k.lower() not in _HOP]
        if up.headers.get("Content-Length"):
            out_headers.append(("Content-Length", up.headers["Content-Length"]))
        out_headers.append(("X-PickSpin-Activator", self.backend.name))
        out_headers.append((HELD_HEADER, f"{max(0.0, t0_sent - arrived):.3f}"))
        start_response(f"{up.status} {_reason(up.status)}", out_headers)
        def done() -> None:
            self._slots.release()
            self._end(t0)

        return _Relay(up, done)


class _Relay:
    """Streams the upstream body chunk by chunk; ``close()`` (called by the WSGI server) ends the demand."""

    def __init__(self, upstream: Any, on_close: Callable[[], None]) -> None:
        self.up, self.on_close, self.closed = upstream, on_close, False

    def __iter__(self) -> Iterator[bytes]:
        while True:
            try:
                chunk = self.up.read1(65536)
            except urllib3.exceptions.HTTPError:
                break
            if not chunk:
                break
            yield chunk

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.up.release_conn()
            finally:
                self.on_close()


def _read_body(environ: dict[str, Any]) -> bytes:
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH")
    if length:
        return bytes(stream.read(int(length)))
    if environ.get("wsgi.input_terminated"):
        return bytes(stream.read())
    return b""


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _json(start_response: Any, status: int, obj: Any, extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    data = json.dumps(obj).encode()
    start_response(f"{status} {_reason(status)}", [("Content-Type", "application/json"),
                                                   ("Content-Length", str(len(data))), *(extra or [])])
    return [data]


def _raw(start_response: Any, status: int, headers: Any, data: bytes) -> list[bytes]:
    hs = [(k, v) for k, v in headers.items() if k.lower() not in _HOP]
    start_response(f"{status} {_reason(status)}", [*hs, ("Content-Length", str(len(data)))])
    return [data]


def build_activators(matrix: ServiceMatrix, command: Callable[[Backend, int], Sequence[str] | LaunchSpec], *,
                     log_dir: str | os.PathLike[str] | None = None, **kw: Any) -> list[LocalActivator]:
    """One activator per backend that has a ``launch`` block (not started).

    ``command(backend, port)`` builds the backend's argv for an internal port, e.g.
    ``stack.localstack.backend_command``; logs go to ``<log_dir>/<backend>.log``; ``kw`` is passed on.
    """
    out = []
    for m in matrix.models:
        for b in m.backends:
            if b.launch is None:
                continue
            log_path = Path(log_dir) / f"{b.name}.log" if log_dir is not None else None
            out.append(LocalActivator(matrix, b, functools.partial(command, b), log_path=log_path, **kw))
    return out


def model_of(matrix: ServiceMatrix, backend: Backend) -> Model:
    for m in matrix.models:
        if any(b.name == backend.name for b in m.backends):
            return m
    raise KeyError(backend.name)
