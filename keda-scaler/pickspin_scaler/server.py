"""The gRPC external scaler (``externalscaler.ExternalScaler``), thin over the poller's cache.

* ``GetMetricSpec``: one metric, target ``c`` per replica (int and float fields).
* ``GetMetrics``: max(r * lat, floor * c, demand now) from the cache (int and float fields).
* ``IsActive``: demand now, or used within tau, or floor > 0.
* ``StreamIsActive`` (``external-push``): the current state when the stream opens, then every change.

Bad metadata -> ``INVALID_ARGUMENT`` naming the key. No usable Prometheus data (never polled
successfully, or older than ``max_staleness``) -> ``UNAVAILABLE`` so KEDA's ``fallback`` applies; the
one exception is IsActive for a model with a warm floor, which is known to be true without data.
Also serves ``grpc.health.v1.Health`` and the scaler's own metrics over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from . import SERVICE_NAME
from ._generated import externalscaler_pb2 as pb
from ._generated import externalscaler_pb2_grpc as pb_grpc
from .metadata import MetadataError, ScalerMetadata, parse_metadata
from .policy import is_active, metric_value
from .prom import CacheView, Poller, PollerConfig, ScalerMetrics, SubKey
from .push import DemandEndpoint
from .reachability import Reachability

log = logging.getLogger("pickspin.scaler")
_INT64_CAP = 2**62
#: Largest scalerMetadata map accepted (sum of key and value lengths, in characters); larger is INVALID_ARGUMENT.
MAX_METADATA_CHARS = 16 * 1024


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class ExternalScalerServicer(pb_grpc.ExternalScalerServicer):
    """KEDA's ExternalScaler over a :class:`Poller` cache. RPCs never call Prometheus."""

    def __init__(self, poller: Poller, metrics: ScalerMetrics, *, first_poll_wait_s: float = 3.0,
                 stream_tick_s: float = 1.0, clock: Callable[[], float] | None = None,
                 md_cache_entries: int = 4096, md_cache_chars: int = 4 * 1024 * 1024,
                 reachability: Reachability | None = None) -> None:
        self.poller = poller
        # Knative revisions no route sends traffic to get 0 / inactive (None: every revision is routable)
        self.reachability = reachability
        self.metrics = metrics
        self.first_poll_wait_s = first_poll_wait_s
        self.stream_tick_s = stream_tick_s
        self.clock = clock or poller.clock
        # Parsed metadata per distinct map, least recently used first; bounded in entries and in characters.
        self._md_cache: OrderedDict[frozenset[tuple[str, str]], tuple[ScalerMetadata, SubKey, int]] = OrderedDict()
        self._md_cache_entries = md_cache_entries
        self._md_cache_chars = md_cache_chars
        self.md_cache_size = 0  # characters held by the cache's keys (metadata maps)
        self._rpc_counters: dict[tuple[str, str], Any] = {}
        self._rpc_timers = {m: metrics.rpc_seconds.labels(m) for m in ("GetMetricSpec", "GetMetrics", "IsActive")}
        self._streams: set[asyncio.Event] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        poller.add_listener(self._on_poll)

    # -- helpers ---------------------------------------------------------------------------
    def _resolve(self, raw: Mapping[str, str]) -> tuple[ScalerMetadata, SubKey]:
        """Parsed metadata and its cache key, memoised per distinct metadata map (KEDA resends the same)."""
        k = frozenset(raw.items())
        hit = self._md_cache.get(k)
        if hit is not None:
            self._md_cache.move_to_end(k)
            return hit[0], hit[1]
        size = sum(len(a) + len(b) for a, b in k)
        if size > MAX_METADATA_CHARS:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT,
                         f"scalerMetadata: {size} characters, more than the {MAX_METADATA_CHARS} accepted")
        try:
            md = parse_metadata(raw)
            key = self.poller.key_for(md)  # AddressNotAllowed is a MetadataError naming prometheusAddress
        except MetadataError as e:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        self._md_cache[k] = (md, key, size)
        self.md_cache_size += size
        while self._md_cache and (len(self._md_cache) > self._md_cache_entries
                                  or self.md_cache_size > self._md_cache_chars):
            _, (_, _, old) = self._md_cache.popitem(last=False)
            self.md_cache_size -= old
        return md, key

    def _unroutable(self, ref: pb.ScaledObjectRef) -> bool:
        """The ScaledObject is a revision Knative routes no traffic to (its PodAutoscaler is Unreachable)."""
        return self.reachability is not None and self.reachability.unreachable(ref.namespace, ref.name)

    def _count(self, method: str, code: str) -> None:
        c = self._rpc_counters.get((method, code))
        if c is None:
            c = self._rpc_counters[(method, code)] = self.metrics.rpcs.labels(method, code)
        c.inc()

    async def _view(self, md: ScalerMetadata, key: SubKey | None = None) -> tuple[SubKey, CacheView]:
        key = self.poller.subscribe(md, key=key)
        v = self.poller.view(key)
        if not v.attempted:  # first request for this model: wait (bounded) for the first poll
            deadline = time.monotonic() + self.first_poll_wait_s
            while not v.attempted and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
                v = self.poller.view(key)
        return key, v

    @staticmethod
    def _unavailable(md: ScalerMetadata, v: CacheView, max_staleness: float) -> _Abort:
        if v.sample is None:
            why = f"no Prometheus data yet for model {md.model!r}"
        else:
            why = f"Prometheus data for model {md.model!r} is {v.age:.0f}s old (max {max_staleness:.0f}s)"
        if v.error:
            why += f"; last error: {v.error}"
        return _Abort(grpc.StatusCode.UNAVAILABLE, why)

    def _active_now(self, md: ScalerMetadata, key: SubKey, v: CacheView) -> bool | None:
        """True/False, or None if it cannot be known (no fresh data and no warm floor)."""
        p = self.poller.params(key, md)
        if p.floor > 0:
            return True
        if not v.fresh or v.sample is None:
            return None
        return is_active(v.sample.observation(), p, self.clock())

    async def _run(self, method: str, context: grpc.aio.ServicerContext, coro: Any) -> Any:
        t0 = time.perf_counter()
        try:
            out = await coro
        except _Abort as a:
            self._count(method, a.code.name)
            await context.abort(a.code, a.message)
        self._rpc_timers[method].observe(time.perf_counter() - t0)
        self._count(method, "OK")
        return out

    # -- RPCs ------------------------------------------------------------------------------
    async def GetMetricSpec(self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext
                            ) -> pb.GetMetricSpecResponse:
        async def body() -> pb.GetMetricSpecResponse:
            md, key = self._resolve(request.scalerMetadata)
            self.poller.subscribe(md, key=key)  # start polling early; the spec itself needs no data
            spec = pb.MetricSpec(metricName=md.metric_name(), targetSize=md.concurrency,
                                 targetSizeFloat=float(md.concurrency))
            return pb.GetMetricSpecResponse(metricSpecs=[spec])
        return await self._run("GetMetricSpec", context, body())

    async def GetMetrics(self, request: pb.GetMetricsRequest, context: grpc.aio.ServicerContext
                         ) -> pb.GetMetricsResponse:
        async def body() -> pb.GetMetricsResponse:
            md, key = self._resolve(request.scaledObjectRef.scalerMetadata)
            if self._unroutable(request.scaledObjectRef):  # an old revision: no floor, no share of the load
                return pb.GetMetricsResponse(metricValues=[pb.MetricValue(
                    metricName=request.metricName or md.metric_name(), metricValue=0, metricValueFloat=0.0)])
            _, v = await self._view(md, key)
            if not v.fresh or v.sample is None:
                raise self._unavailable(md, v, self.poller.config.max_staleness_s)
            value = metric_value(v.sample.observation(), self.poller.params(key, md))
            as_int = min(_INT64_CAP, math.ceil(value - 1e-9)) if value > 0 else 0  # the deprecated int64 field
            mv = pb.MetricValue(metricName=request.metricName or md.metric_name(), metricValue=as_int,
                                metricValueFloat=value)
            return pb.GetMetricsResponse(metricValues=[mv])
        return await self._run("GetMetrics", context, body())

    async def IsActive(self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext
                       ) -> pb.IsActiveResponse:
        async def body() -> pb.IsActiveResponse:
            md, key = self._resolve(request.scalerMetadata)
            if self._unroutable(request):
                return pb.IsActiveResponse(result=False)
            _, v = await self._view(md, key)
            active = self._active_now(md, key, v)
            if active is None:
                raise self._unavailable(md, v, self.poller.config.max_staleness_s)
            return pb.IsActiveResponse(result=active)
        return await self._run("IsActive", context, body())

    async def StreamIsActive(self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext
                             ) -> AsyncIterator[pb.IsActiveResponse]:
        try:
            md, key = self._resolve(request.scalerMetadata)
        except _Abort as a:
            self._count("StreamIsActive", a.code.name)
            await context.abort(a.code, a.message)
        self._loop = asyncio.get_running_loop()
        changed = asyncio.Event()
        self._streams.add(changed)
        self._count("StreamIsActive", "OPENED")
        last: bool | None = None
        try:
            key, v = await self._view(md, key)
            while not self._closing:
                state = False if self._unroutable(request) else self._active_now(md, key, v)
                # Unknown (no fresh data): send nothing; the last state stands and the pull RPCs report
                # UNAVAILABLE, so KEDA's fallback governs replicas meanwhile.
                if state is not None and state != last:
                    last = state
                    yield pb.IsActiveResponse(result=state)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), self.stream_tick_s)
                changed.clear()
                self.poller.subscribe(md, key=key)
                v = self.poller.view(key)
        finally:
            self._streams.discard(changed)

    def _on_poll(self) -> None:
        """Poller thread: wake every open stream so it re-evaluates its state."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._wake_streams)

    def close_streams(self) -> None:
        """Graceful shutdown: end every open stream with OK (KEDA reopens it, e.g. on another replica)."""
        self._closing = True
        self._wake_streams()

    def _wake_streams(self) -> None:
        for ev in list(self._streams):
            ev.set()


def tune_process(switch_interval_s: float = 0.001) -> None:
    """Process-wide settings for a dedicated scaler process (``pickspin scaler`` calls this).

    The poller's threads and gRPC's own threads share the GIL with the asyncio loop that answers RPCs;
    a shorter switch interval (Python's default is 5 ms) bounds how long an RPC can wait for it.
    """
    sys.setswitchinterval(switch_interval_s)


@dataclass
class ServerConfig:
    # Loopback by default: nothing outside the host can reach the scaler unless asked. In a pod, bind the
    # pod IP (the chart passes status.podIP) so KEDA reaches it through the Service and nothing else listens.
    host: str = "127.0.0.1"
    port: int = 6000
    metrics_host: str | None = None  # None: the same address as host
    metrics_port: int | None = 9102  # None: no metrics HTTP server
    push_port: int | None = None  # router -> scaler demand push (push.py), on the metrics host; None: off
    grace_s: float = 5.0
    first_poll_wait_s: float = 3.0
    stream_tick_s: float = 1.0
    # TLS for the gRPC port (KEDA's trigger then sets caCert / tlsClientCert): PEM files; with a client CA,
    # clients must present a certificate signed by it (mutual TLS).
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None

    def bind(self) -> str:
        return _hostport(self.host, self.port)

    def metrics_bind_host(self) -> str:
        return self.metrics_host if self.metrics_host is not None else self.host


def _hostport(host: str, port: int) -> str:
    """host:port for gRPC, IPv6 literals in brackets."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials from the config's PEM files, or None (plaintext) when no certificate is set."""
    if not config.tls_cert_file and not config.tls_key_file:
        if config.tls_client_ca_file:
            raise ValueError("a TLS client CA needs a server certificate and key as well")
        return None
    if not (config.tls_cert_file and config.tls_key_file):
        raise ValueError("TLS needs both a certificate and a key file")
    with open(config.tls_key_file, "rb") as f:
        key = f.read()
    with open(config.tls_cert_file, "rb") as f:
        cert = f.read()
    ca = None
    if config.tls_client_ca_file:
        with open(config.tls_client_ca_file, "rb") as f:
            ca = f.read()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


class ScalerServer:
    """The running scaler: gRPC server + health + poller + metrics endpoint. Use inside an event loop."""

    def __init__(self, config: ServerConfig, poller_config: PollerConfig | None = None, *,
                 poller: Poller | None = None, metrics: ScalerMetrics | None = None,
                 reachability: Reachability | None = None) -> None:
        self.config = config
        self.metrics = metrics or (poller.metrics if poller else ScalerMetrics())
        self.poller = poller or Poller(poller_config, metrics=self.metrics)
        self.reachability = reachability
        self.servicer = ExternalScalerServicer(self.poller, self.metrics, first_poll_wait_s=config.first_poll_wait_s,
                                               stream_tick_s=config.stream_tick_s, reachability=reachability)
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._http: Any = None
        self._push: DemandEndpoint | None = None
        self.push_port: int | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> int:
        """Start serving; returns the bound gRPC port (useful with port 0)."""
        self.servicer._loop = asyncio.get_running_loop()
        server = grpc.aio.server(options=[
            ("grpc.so_reuseport", 0),
            # Keep KEDA's long-lived StreamIsActive connection alive through NAT/conntrack idle timeouts.
            ("grpc.keepalive_time_ms", 60_000), ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.http2.max_pings_without_data", 0), ("grpc.keepalive_permit_without_calls", 1)])
        pb_grpc.add_ExternalScalerServicer_to_server(self.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        creds = server_credentials(self.config)
        bind = self.config.bind()
        port = server.add_secure_port(bind, creds) if creds is not None else server.add_insecure_port(bind)
        if port == 0:
            raise OSError(f"cannot bind gRPC port {bind}")
        await server.start()
        self.server, self.port = server, port
        for svc in ("", SERVICE_NAME):
            await self.health.set(svc, health_pb2.HealthCheckResponse.SERVING)
        if self.config.metrics_port is not None:
            from prometheus_client import start_http_server
            self._http, _ = start_http_server(self.config.metrics_port, self.config.metrics_bind_host(),
                                              registry=self.metrics.registry)
            self.metrics_port = self._http.server_port
        if self.config.push_port is not None:
            self._push = DemandEndpoint(self.poller, self.config.metrics_bind_host(), self.config.push_port)
            self.push_port = self._push.start()
        self.poller.start()
        if self.reachability is not None:
            self.reachability.start()
        # Everything allocated so far lives as long as the server: keep it out of the GC's scans, so the
        # collector's pauses (a tail-latency source in a Python RPC server) stay short.
        gc.collect()
        gc.freeze()
        log.info("scaler listening on %s (port %d, %s; metrics %s:%s, Prometheus %s, poll every %.1fs)",
                 bind, port, "TLS" if creds is not None else "plaintext", self.config.metrics_bind_host(),
                 self.metrics_port, self.poller.config.default_address, self.poller.config.interval_s)
        return port

    async def stop(self) -> None:
        """Graceful: NOT_SERVING, let RPCs finish for ``grace_s``, close streams, stop the poller."""
        if self.server is None:
            return
        await self.health.enter_graceful_shutdown()
        self.servicer.close_streams()
        await self.server.stop(self.config.grace_s)
        self.server = None
        self.poller.stop()
        if self.reachability is not None:
            self.reachability.stop()
        if self._push is not None:
            self._push.stop()
            self._push = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        self._stopped.set()
        log.info("scaler stopped")

    async def serve_until_signal(self) -> None:
        """Start, then stop gracefully on SIGTERM or SIGINT."""
        await self.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("signal received, shutting down")
        await self.stop()
