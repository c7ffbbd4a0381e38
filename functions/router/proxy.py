"""Forwarding to the picked backend, with bounded failover before the first byte.

The proxy counts in-flight requests and records telemetry; it never decides where to go (that is
``scoring.rank``) and never retries once a byte has reached the client.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Response

from pickspin.config import Backend, Model, RouterSettings
from pickspin.contract import HELD_HEADER, HOP_BY_HOP_HEADERS
from pickspin.errors import APIError

from .metrics import RouterMetrics
from .telemetry import Telemetry
from .upstream import ConnectionPool, Upstream, UpstreamError

log = logging.getLogger("pickspin.router")

# Not passed back from a backend: hop-by-hop, and what the router's own server sets (length, encoding, date).
_DROP_RESPONSE_HEADERS = HOP_BY_HOP_HEADERS | {"content-length", "content-encoding", "server", "date"}
INTERNAL_HEADER_PREFIX = "x-pickspin-"


@dataclass(frozen=True)
class Target:
    model: Model
    backend: Backend


#: Streams of these paths end with ``data: [DONE]``; one that ends without it was cut short.
DONE_TERMINATED_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})


def _held_s(upstream: Upstream) -> float:
    """Seconds the activator held the request before the backend got it (0 when unknown)."""
    try:
        v = float(upstream.header(HELD_HEADER) or 0.0)
    except ValueError:
        return 0.0
    return v if 0.0 <= v < float("inf") else 0.0


class _Deadline(Exception):
    """The total deadline passed."""

    reason = "deadline"

    def __str__(self) -> str:
        return "total deadline exceeded"


class _Attempt(Exception):
    """A failure before the first byte: safe to try the next candidate."""

    def __init__(self, reason: str, status: int, message: str, mark_down: bool = False) -> None:
        super().__init__(message)
        self.reason, self.status, self.message, self.mark_down = reason, status, message, mark_down


class Forwarder:
    def __init__(self, settings: RouterSettings, telemetry: Telemetry, metrics: RouterMetrics,
                 pool_size: int = 64) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.metrics = metrics
        self.pool = ConnectionPool(maxsize_per_host=pool_size)

    def forward(self, path: str, body: dict[str, Any], targets: Sequence[Target], *, stream: bool,
                complexity: str, extra_headers: dict[str, str]) -> Response:
        """Send ``body`` to the first target that answers; fail over on errors before the first byte."""
        last: _Attempt | None = None
        attempts = 0
        for target in targets:
            if attempts >= self.settings.max_attempts:
                break
            b = target.backend
            if not self.telemetry.begin(b.name):
                continue  # its circuit refused (open, or its half-open trial slots are taken)
            attempts += 1
            payload = json.dumps({**body, "model": b.served_model_name}, separators=(",", ":")).encode()
            t0 = time.perf_counter()
            inflight = self.metrics.inflight.labels(target.model.name)
            inflight.inc()
            try:
                upstream, first = self._open(b, path, payload, stream, t0)
            except _Attempt as a:
                inflight.dec()
                self.telemetry.end(b.name, ok=False, mark_down=a.mark_down)
                self.metrics.retries.labels(b.name, a.reason).inc()
                self.metrics.requests.labels(target.model.name, b.name, str(a.status), complexity).inc()
                log.warning("backend %s failed before first byte (%s); trying next", b.name, a.reason)
                last = a
                continue
            ttft = time.perf_counter() - t0
            held = _held_s(upstream)
            self.telemetry.answered(b.name)
            self.metrics.ttft.labels(target.model.name, b.name).observe(ttft)
            headers = self._response_headers(upstream, target, extra_headers)
            # an event stream: relayed as it comes, errors in-band (a backend that answers a stream request
            # with a JSON body is passed through like any body)
            sse = stream and upstream.status < 400 and \
                (upstream.header("Content-Type") or "").startswith("text/event-stream")
            if not sse and upstream.done:
                upstream.release()
                self._finish(target, t0, ttft, upstream.status, complexity, inflight, held)
                return Response(first, status=upstream.status, headers=headers)
            if not sse:
                # a large non-streamed answer: pass it through piece by piece (memory stays bounded)
                length = upstream.header("Content-Length")
                if length is not None:
                    headers["Content-Length"] = length
            expect_done = sse and path in DONE_TERMINATED_PATHS
            return Response(self._relay(upstream, first, target, t0, ttft, complexity, inflight, sse=sse,
                                        expect_done=expect_done, held=held),
                            status=upstream.status, headers=headers, direct_passthrough=True)
        if last is None:  # every circuit refused between the decision and now
            raise APIError(503, "no healthy backend with free capacity (circuit open)", code="no_healthy_backend",
                           headers={"Retry-After": str(self.settings.retry_after_s)})
        status = last.status
        raise APIError(status, f"all attempted backends failed; last error: {last.message}",
                       code="upstream_timeout" if status == 504 else "upstream_error")

    def forward_waiting(self, path: str, body: dict[str, Any], targets: Sequence[Target], *, complexity: str,
                        extra_headers: dict[str, str], eta: Callable[[], float | None],
                        interval_s: float) -> Response:
        """A stream whose first backend is cold or waking: answer at once and, until the backend's first
        byte, send an SSE comment every ``interval_s`` (``: waking <model>, eta 18s``; valid SSE that
        clients ignore, and bytes that keep idle timeouts of clients and proxies at bay); then the
        stream itself. :meth:`forward` runs unchanged in a helper thread, failover included; a failure
        becomes an in-band error event, since the status line is already sent."""
        first = targets[0]
        done: queue.Queue[Response | APIError] = queue.Queue(maxsize=1)

        def run() -> None:
            try:
                done.put(self.forward(path, body, targets, stream=True, complexity=complexity,
                                      extra_headers=extra_headers))
            except APIError as e:
                done.put(e)
            except Exception as e:  # never leave the client hanging
                log.exception("waiting stream failed")
                done.put(APIError(502, f"upstream error: {type(e).__name__}", code="upstream_error"))

        threading.Thread(target=run, name="pickspin-wait", daemon=True).start()

        def events() -> Iterator[bytes]:
            wait = 0.0  # the first comment goes out at once
            while True:
                try:
                    out = done.get(timeout=wait)
                    break
                except queue.Empty:
                    wait = interval_s
                    left = eta()
                    yield (f": waking {first.model.name}" + ("" if left is None else f", eta {left:.0f}s")
                           + "\n\n").encode()
            if isinstance(out, APIError):
                yield b"data: " + json.dumps(out.body()).encode() + b"\n\n"
                return
            for piece in out.response:  # the relayed stream (its status line was ours)
                yield piece if isinstance(piece, bytes) else piece.encode()

        headers = {**extra_headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                   "X-Accel-Buffering": "no", "X-PickSpin-Model": first.model.name,
                   "X-PickSpin-Backend": first.backend.name}
        if first.backend.simulated:
            headers["X-PickSpin-Simulated"] = "true"
        return Response(events(), status=200, headers=headers, direct_passthrough=True)

    def _open(self, b: Backend, path: str, payload: bytes, stream: bool, t0: float) -> tuple[Upstream, bytes]:
        """Open the upstream request and read its first bytes; any failure here is retryable.

        A successful stream: its first piece. Anything else: the whole body up to
        ``max_buffered_response_bytes`` (``Upstream.done`` tells whether that was all of it)."""
        st = self.settings
        deadline = t0 + st.total_timeout_s
        try:
            r = self.pool.post(b.url, path, payload,
                               {"Content-Type": "application/json",
                                "Accept": "text/event-stream" if stream else "application/json"},
                               connect_timeout=min(st.connect_timeout_s, st.total_timeout_s),
                               read_timeout=min(st.first_byte_timeout_s, st.total_timeout_s))
        except UpstreamError as e:
            status = 504 if e.reason in ("timeout", "connect_timeout") else 502
            raise _Attempt(e.reason, status, f"{b.name}: {e}", mark_down=e.reason.startswith("connect")) from e
        if r.status >= 500:
            # only a snippet for the message, and no waiting for a body that hangs: fail over now
            try:
                r.settimeout(min(st.connect_timeout_s, st.stream_idle_timeout_s, 0.5))
                text = r.read1(200)
            except UpstreamError:
                text = b""
            r.release()
            raise _Attempt("status_5xx", 502, f"{b.name}: upstream status {r.status}: {text!r}")
        try:
            if stream and r.status < 400:
                r.settimeout(min(st.first_byte_timeout_s, self._left(deadline)))
                return r, r.read1(65536)
            # nothing has reached the client yet: read up to the buffer limit, every read under the idle
            # deadline (the first under the first-byte deadline) and all of it under the total deadline
            parts: list[bytes] = []
            size = 0
            timeout = st.first_byte_timeout_s
            while size < st.max_buffered_response_bytes:
                r.settimeout(min(timeout, self._left(deadline)))
                piece = r.read1(65536)
                if not piece:
                    break
                parts.append(piece)
                size += len(piece)
                timeout = st.stream_idle_timeout_s
            return r, b"".join(parts)
        except (UpstreamError, _Deadline) as e:
            r.release()
            reason = getattr(e, "reason", "timeout")
            status = 504 if reason in ("timeout", "deadline") else 502
            raise _Attempt(reason, status, f"{b.name}: {e} before first byte") from e

    @staticmethod
    def _left(deadline: float) -> float:
        left = deadline - time.perf_counter()
        if left <= 0:
            raise _Deadline()
        return left

    def _relay(self, upstream: Upstream, first: bytes, target: Target, t0: float, ttft: float, complexity: str,
               inflight: Any, *, sse: bool, expect_done: bool, held: float = 0.0) -> Iterator[bytes]:
        """Pass the rest of the answer through. Deadlines: ``stream_idle_timeout_s`` between reads,
        ``total_timeout_s`` for the whole exchange. An SSE stream that breaks, stalls or ends without
        ``[DONE]`` gets an in-band error event; a plain body that breaks is cut (the client sees a short
        body: Content-Length, or no final chunk)."""
        st = self.settings
        status = upstream.status
        deadline = t0 + st.total_timeout_s
        tail = first[-32:]
        problem: tuple[str, str] | None = None
        try:
            if first:
                yield first
            while True:
                try:
                    left = self._left(deadline)
                except _Deadline:
                    problem = ("upstream_deadline", f"total deadline of {st.total_timeout_s:g}s exceeded")
                    break
                idle = left >= st.stream_idle_timeout_s
                upstream.settimeout(min(st.stream_idle_timeout_s, left))
                try:
                    chunk = upstream.read1(65536)
                except UpstreamError as e:
                    if e.reason != "timeout":
                        problem = ("upstream_stream_error", f"upstream stream broke: {e}")
                    elif idle:
                        problem = ("upstream_idle_timeout",
                                   f"no data from the backend for {st.stream_idle_timeout_s:g}s")
                    else:
                        problem = ("upstream_deadline", f"total deadline of {st.total_timeout_s:g}s exceeded")
                    break
                if not chunk:
                    break
                tail = (tail + chunk)[-32:]
                yield chunk
            if problem is None and expect_done and not tail.rstrip().endswith(b"[DONE]"):
                problem = ("upstream_stream_incomplete", "upstream stream ended without [DONE]")
            if problem is not None:
                # Bytes already reached the client: no retry. Tell the client in-band (SSE) and stop.
                code, message = problem
                status = 504 if code in ("upstream_deadline", "upstream_idle_timeout") else 502
                log.warning("answer from %s cut short: %s", target.backend.name, code)
                if not sse:
                    raise UpstreamError("read", message)
                err = {"error": {"message": message, "type": "upstream_error", "param": None, "code": code}}
                yield b"data: " + json.dumps(err).encode() + b"\n\n"
        finally:
            upstream.release()
            self._finish(target, t0, ttft, status, complexity, inflight, held)

    def _finish(self, target: Target, t0: float, ttft: float, status: int, complexity: str, inflight: Any,
                held: float = 0.0) -> None:
        # service time: what the backend spent on it, not the wait for its cold start (Little's law input)
        elapsed = max(0.0, time.perf_counter() - t0 - held)
        inflight.dec()
        ok = status < 500
        self.telemetry.end(target.backend.name, ok=ok, latency_s=elapsed if ok else None, ttft_s=ttft)
        m, b = target.model.name, target.backend.name
        self.metrics.duration.labels(m, b).observe(elapsed)
        self.metrics.requests.labels(m, b, str(status), complexity).inc()

    @staticmethod
    def _response_headers(upstream: Upstream, target: Target, extra: dict[str, str]) -> dict[str, str]:
        # a backend never speaks for the router: its own X-PickSpin-* headers are dropped
        h = {k: v for k, v in upstream.headers
             if v and k.lower() not in _DROP_RESPONSE_HEADERS and not k.lower().startswith(INTERNAL_HEADER_PREFIX)}
        h.update(extra)
        h["X-PickSpin-Model"] = target.model.name
        h["X-PickSpin-Backend"] = target.backend.name
        if target.backend.simulated:
            h["X-PickSpin-Simulated"] = "true"
        if h.get("Content-Type", h.get("content-type", "")).startswith("text/event-stream"):
            h["Cache-Control"] = "no-cache"
            h["X-Accel-Buffering"] = "no"
        return h
