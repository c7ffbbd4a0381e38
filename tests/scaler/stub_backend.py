"""A tiny OpenAI-compatible backend for the activator tests (stdlib only, starts in ~50 ms).

python stub_backend.py --port P [--startup-delay S] [--gate FILE]
  GET /health                -> 200 once started
  POST /v1/chat/completions  -> a chat completion; with "stream": true, SSE chunks. With --gate, the stream
                                sends its first chunk, then waits (<= 20 s) for FILE to exist before the rest:
                                a client that sees the first chunk before creating FILE proves passthrough.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--startup-delay", type=float, default=0.0)
    p.add_argument("--gate", default=None)
    a = p.parse_args()
    time.sleep(a.startup_delay)  # "loading the model"

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _send(self, code: int, obj: object) -> None:
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, {"status": "ok", "pid": os.getpid()})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if not body.get("stream"):
                self._send(200, {"object": "chat.completion", "model": body.get("model"), "pid": os.getpid(),
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

            def chunk(data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            chunk(b'data: {"n": 0}\n\n')
            if a.gate:
                deadline = time.monotonic() + 20
                while not os.path.exists(a.gate) and time.monotonic() < deadline:
                    time.sleep(0.01)
            for i in range(1, 4):
                chunk(b'data: {"n": %d}\n\n' % i)
            chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", a.port), H).serve_forever()


if __name__ == "__main__":
    main()
