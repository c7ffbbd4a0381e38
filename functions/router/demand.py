"""Router -> scaler demand push: tell the scaler at once when requests go to a model that is cold or
waking, so KEDA wakes it without waiting for a Prometheus scrape (the scaler side is
``pickspin_scaler/push.py``). Fire-and-forget from a small background pool: the request path never
waits on it, a push is skipped while the previous one for that model is under a second old, and a
failing scaler only costs a log line. The push URL's host may resolve to several addresses (the
chart's headless Service: one per scaler replica); each gets the push, since KEDA's stream may be
held by any of them."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import urllib3

log = logging.getLogger("pickspin.router.demand")
MIN_INTERVAL_S = 1.0


class DemandPusher:
    def __init__(self, url: str, *, timeout_s: float = 1.0) -> None:
        u = urlsplit(url)
        self.scheme, self.host, self.port = u.scheme, u.hostname or "127.0.0.1", u.port or 80
        self._http = urllib3.PoolManager(maxsize=2, retries=False, timeout=urllib3.Timeout(timeout_s, timeout_s))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pickspin-push")
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self.sent = 0

    def push(self, model: str, demand: float, held: float = 0.0) -> bool:
        """Queue a push of ``demand`` for ``model``, ``held`` of them waiting for a replica to become ready;
        False when one went out for it less than a second ago."""
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(model, -MIN_INTERVAL_S) < MIN_INTERVAL_S:
                return False
            self._last[model] = now
            self.sent += 1
        self._pool.submit(self._send, model, demand, held)
        return True

    def addresses(self) -> list[str]:
        """Every address the push host resolves to (each scaler replica behind a headless Service)."""
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except OSError as e:
            log.warning("demand push: cannot resolve %s: %s", self.host, e)
            return []
        return sorted({str(i[4][0]) for i in infos})

    def _send(self, model: str, demand: float, held: float) -> None:
        body = json.dumps({"model": model, "demand": demand, "held": held}).encode()
        for ip in self.addresses():
            host = f"[{ip}]" if ":" in ip else ip
            try:
                r = self._http.request("POST", f"{self.scheme}://{host}:{self.port}/v1/demand", body=body,
                                       headers={"Content-Type": "application/json", "Host": self.host})
                if r.status not in (204, 404):  # 404: that replica has no subscription for the model
                    log.warning("demand push for %s to %s: scaler answered %d", model, ip, r.status)
            except urllib3.exceptions.HTTPError as e:
                log.warning("demand push for %s to %s failed: %s", model, ip, type(e).__name__)

    def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
