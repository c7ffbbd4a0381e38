"""Run the real grpc.aio scaler server in a background thread (its own event loop) for tests and benches."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any

from pickspin_scaler.prom import PollerConfig
from pickspin_scaler.server import ScalerServer, ServerConfig


class ServerThread:
    def __init__(self, poller_config: PollerConfig, *, metrics_port: int | None = 0, grace_s: float = 1.0,
                 stream_tick_s: float = 0.2, first_poll_wait_s: float = 3.0, push_port: int | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="scaler-loop", daemon=True)
        self.thread.start()
        cfg = ServerConfig(host="127.0.0.1", port=0, metrics_host="127.0.0.1", metrics_port=metrics_port,
                           grace_s=grace_s, stream_tick_s=stream_tick_s, first_poll_wait_s=first_poll_wait_s,
                           push_port=push_port)
        self.server = self.call(self._make(cfg, poller_config))
        self.port: int = self.call(self.server.start())
        self.address = f"127.0.0.1:{self.port}"

    @staticmethod
    async def _make(cfg: ServerConfig, pc: PollerConfig) -> ScalerServer:
        return ScalerServer(cfg, pc)

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        try:
            self.call(self.server.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
