"""Forwarding to the picked backend, with bounded failover before the first byte.

The proxy counts in-flight requests and records telemetry; it never decides where to go (that is
``scoring.rank``) and never retries once a byte has reached the client.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Response

from pickspin.config import Backend, Model, RouterSettings
from pickspin.contract import HOP_BY_HOP_HEADERS
from pickspin.errors import APIError

from .metrics import RouterMetrics
from .telemetry import Telemetry
from .upstream import ConnectionPool, Upstream, UpstreamError

log = logging.getLogger("pickspin.router")

# Not passed back from a backend: hop-by-hop, and what the router's own server sets (length, encoding, date).
_DROP_RESPONSE_HEADERS = HOP_BY_HOP_HEADERS | {"content-length", "content-encoding", "server", "date"}


@dataclass(frozen=True)
class Target:
    model: Model
    backend: Backend


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
                upstream, first = self._open(b, path, payload, stream)
            except _Attempt as a:
                inflight.dec()
                self.telemetry.end(b.name, ok=False, mark_down=a.mark_down)
                self.metrics.retries.labels(b.name, a.reason).inc()
                self.metrics.requests.labels(target.model.name, b.name, str(a.status), complexity).inc()
                log.warning("backend %s failed before first byte (%s); trying next", b.name, a.reason)
                last = a
                continue
            ttft = time.perf_counter() - t0
            self.metrics.ttft.labels(target.model.name, b.name).observe(ttft)
            headers = self._response_headers(upstream, target, extra_headers)
            if not stream or upstream.status >= 400:
                upstream.release()
                self._finish(target, t0, ttft, upstream.status, complexity, inflight)
                return Response(first, status=upstream.status, headers=headers)
            return Response(self._relay(upstream, first, target, t0, ttft, complexity, inflight),
                            status=upstream.status, headers=headers, direct_passthrough=True)
        if last is None:  # every circuit refused between the decision and now
            raise APIError(503, "no healthy backend with free capacity (circuit open)", code="no_healthy_backend",
                           headers={"Retry-After": str(self.settings.retry_after_s)})
        status = last.status
        raise APIError(status, f"all attempted backends failed; last error: {last.message}",
                       code="upstream_timeout" if status == 504 else "upstream_error")

    def _open(self, b: Backend, path: str, payload: bytes, stream: bool) -> tuple[Upstream, bytes]:
        """Open the upstream request and read its first bytes; any failure here is retryable."""
        st = self.settings
        try:
            r = self.pool.post(b.url, path, payload,
                               {"Content-Type": "application/json",
                                "Accept": "text/event-stream" if stream else "application/json"},
                               connect_timeout=st.connect_timeout_s, read_timeout=st.first_byte_timeout_s)
        except UpstreamError as e:
            status = 504 if e.reason in ("timeout", "connect_timeout") else 502
            raise _Attempt(e.reason, status, f"{b.name}: {e}", mark_down=e.reason.startswith("connect")) from e
        if r.status >= 500:
            try:
                text = r.read()[:200]
            except UpstreamError:
                text = b""
            r.release()
            raise _Attempt("status_5xx", 502, f"{b.name}: upstream status {r.status}: {text!r}")
        try:
            # Whole body unless it is a successful stream: nothing has reached the client yet.
            first = r.read1(65536) if stream and r.status < 400 else r.read()
        except UpstreamError as e:
            r.release()
            status = 504 if e.reason == "timeout" else 502
            raise _Attempt(e.reason, status, f"{b.name}: {e} before first byte") from e
        return r, first

    def _relay(self, upstream: Upstream, first: bytes, target: Target, t0: float, ttft: float, complexity: str,
               inflight: Any) -> Iterator[bytes]:
        status = upstream.status
        try:
            if first:
                yield first
            while True:
                chunk = upstream.read1(65536)
                if not chunk:
                    break
                yield chunk
        except UpstreamError as e:
            # Bytes already reached the client: no retry. Tell the client in-band and stop.
            status = 502
            log.warning("stream from %s broke after first byte: %s", target.backend.name, type(e).__name__)
            err = {"error": {"message": f"upstream stream broke: {type(e).__name__}", "type": "upstream_error",
                             "param": None, "code": "upstream_stream_error"}}
            yield b"data: " + json.dumps(err).encode() + b"\n\n"
        finally:
            upstream.release()
            self._finish(target, t0, ttft, status, complexity, inflight)

    def _finish(self, target: Target, t0: float, ttft: float, status: int, complexity: str, inflight: Any) -> None:
        elapsed = time.perf_counter() - t0
        inflight.dec()
        ok = status < 500
        self.telemetry.end(target.backend.name, ok=ok, latency_s=elapsed if ok else None, ttft_s=ttft)
        m, b = target.model.name, target.backend.name
        self.metrics.duration.labels(m, b).observe(elapsed)
        self.metrics.requests.labels(m, b, str(status), complexity).inc()

    @staticmethod
    def _response_headers(upstream: Upstream, target: Target, extra: dict[str, str]) -> dict[str, str]:
        h = {k: v for k, v in upstream.headers if v and k.lower() not in _DROP_RESPONSE_HEADERS}
        h.update(extra)
        h["X-PickSpin-Model"] = target.model.name
        h["X-PickSpin-Backend"] = target.backend.name
        if target.backend.simulated:
            h["X-PickSpin-Simulated"] = "true"
        if h.get("Content-Type", h.get("content-type", "")).startswith("text/event-stream"):
            h["Cache-Control"] = "no-cache"
            h["X-Accel-Buffering"] = "no"
        return h
