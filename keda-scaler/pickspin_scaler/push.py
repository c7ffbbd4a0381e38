"""Router -> scaler demand push: ``POST /v1/demand {"model": "m", "demand": 3}``.

Prometheus sees a request only after its next scrape (every 5-60 s) and the scaler after its next poll;
a model at zero would wait that long before KEDA is told to wake it. The router therefore also tells
the scaler directly when it sends or holds requests for a model that is cold or waking. The poller
records the demand (:meth:`Poller.push`) and the open ``StreamIsActive`` streams re-evaluate at once.

Answers: 204 taken; 404 no subscription for that model (KEDA has not asked about it); 400 bad body
(the field named); 413 body over 4 KiB. Plain HTTP on the scaler's own address; keep it cluster-internal
(the chart's NetworkPolicy admits only the router).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .prom import Poller

log = logging.getLogger("pickspin.scaler.push")
MAX_BODY = 4096
PATH = "/v1/demand"


def parse_push(raw: bytes) -> tuple[str, float, float]:
    """``(model, demand, held)`` from a push body, or ``ValueError`` naming the bad field. ``held`` (default 0)
    is how many of the ``demand`` requests wait for a replica to become ready: the backlog a wake sizes for."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise ValueError("body: not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("body: must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model) > 253:
        raise ValueError("model: must be a non-empty string")
    demand = body.get("demand", 1)
    if isinstance(demand, bool) or not isinstance(demand, int | float) or not math.isfinite(demand) or demand < 0:
        raise ValueError("demand: must be a number >= 0")
    held = body.get("held", 0)
    if isinstance(held, bool) or not isinstance(held, int | float) or not math.isfinite(held) or held < 0:
        raise ValueError("held: must be a number >= 0")
    if held > demand:
        raise ValueError("held: must not exceed demand")
    return model, float(demand), float(held)


class DemandEndpoint:
    def __init__(self, poller: Poller, host: str, port: int) -> None:
        poller_ = poller

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, code: int, message: str = "") -> None:
                data = json.dumps({"error": message}).encode() if message else b""
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                if data:
                    self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                if self.path != PATH:
                    self._answer(404, f"only POST {PATH}")
                    return
                try:
                    n = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    n = -1
                if n < 0 or n > MAX_BODY:
                    self.close_connection = True
                    self._answer(413, f"body must be 0..{MAX_BODY} bytes with a Content-Length")
                    return
                try:
                    model, demand, held = parse_push(self.rfile.read(n))
                except ValueError as e:
                    self._answer(400, str(e))
                    return
                if poller_.push(model, demand, held):
                    self._answer(204)
                else:
                    self._answer(404, f"no subscription for model {model!r}")

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="scaler-push", daemon=True)

    def start(self) -> int:
        self._thread.start()
        return self.port

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
