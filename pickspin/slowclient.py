"""gunicorn's gthread worker, made so that a slow client costs a socket, not a worker thread.

Stock gthread (gunicorn 23-27) hands a new connection to a thread at once; the thread waits up to 5 s
for a first byte, and once one byte has come it parses the request with blocking reads and no
timeout. A client that sends one byte and then nothing (or one byte every few seconds) holds that
thread for as long as it likes; a few hundred of them starve the worker, health probes included.

Here the worker's event loop reads each request's head (and a body with a Content-Length up to
``max_prebuffer_bytes``) with non-blocking reads into a buffer, and only then gives the connection to
a thread, the bytes already in the parser. A client that has not sent all of that within
``request_timeout_s`` of its first chance to is closed by the event loop; it never held a thread.
Chunked bodies are read in the thread (the router bounds those reads: pickspin.errors).
"""

from __future__ import annotations

import contextlib
import re
import selectors
import time
from collections import deque
from functools import partial
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d{1,12})[ \t]*\r\n", re.IGNORECASE)
_EXPECT_CONTINUE = re.compile(rb"\r\nexpect:[ \t]*100-continue", re.IGNORECASE)
_HEAD_LIMIT = 64 * 1024  # more than gunicorn's own limits on request line + headers


def request_complete(buf: bytes, max_prebuffer: int) -> bool:
    """Whether ``buf`` holds a whole request head, and its body when it has a Content-Length of at most
    ``max_prebuffer`` bytes (a larger or chunked body is read by the thread)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return len(buf) > _HEAD_LIMIT  # let gunicorn's parser refuse it
    m = _CONTENT_LENGTH.search(buf, 0, end + 2)
    if m is None or _EXPECT_CONTINUE.search(buf, 0, end + 2):
        return True  # no body to wait for, or the client waits for "100 Continue" before sending it
    n = int(m.group(1))
    return n > max_prebuffer or len(buf) - (end + 4) >= n


class GuardedThreadWorker(ThreadWorker):
    """Set in the master (class attributes reach the forked workers)."""

    request_timeout_s: float = 30.0
    max_prebuffer_bytes: int = 1 << 20

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gathering: deque[Any] = deque()  # connections whose request is still coming in

    # -- connections wait in the event loop until their request is in --------------------------
    def _gather(self, conn: Any) -> None:
        conn.prebuf = bytearray()
        now = time.monotonic()
        # a stopping worker waits for a request on its way only briefly, as for kept-alive connections
        conn.timeout = now + (self.request_timeout_s if self.alive else min(self.request_timeout_s, 2.0))
        conn.sock.setblocking(False)
        self.gathering.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _drop(self, conn: Any) -> None:
        with contextlib.suppress(OSError, KeyError, ValueError):
            self.poller.unregister(conn.sock)
        with contextlib.suppress(ValueError):
            self.gathering.remove(conn)
        self.nr_conns -= 1
        conn.close()

    def _on_readable(self, conn: Any, client: Any) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        if not data:
            self._drop(conn)
            return
        conn.prebuf += data
        if request_complete(bytes(conn.prebuf), self.max_prebuffer_bytes):
            self.poller.unregister(conn.sock)
            self.gathering.remove(conn)
            conn.data_ready = True
            self.enqueue_req(conn)

    def accept(self, listener: Any) -> None:
        from gunicorn.workers.gthread import TConn

        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            import errno

            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self._gather(TConn(self.cfg, client_sock, client_addr, listener.getsockname()))

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        """A kept-alive connection has its next request coming: gather that one too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._gather(conn)

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c in self.gathering if c.timeout <= now]:
            self._drop(conn)

    def _cap_keepalive(self, deadline: float) -> None:
        """Stopping: connections still sending their request get as long as kept-alive ones."""
        super()._cap_keepalive(deadline)
        for conn in self.gathering:
            conn.timeout = min(conn.timeout, deadline)

    # -- in the thread: the bytes gathered go to the parser first --------------------------------
    def handle(self, conn: Any) -> Any:
        buf = getattr(conn, "prebuf", None)
        if buf:
            conn.prebuf = None
            conn.sock.setblocking(True)
            conn.init()
            if conn.parser is not None and not conn.is_http2:
                conn.parser.unreader.unread(bytes(buf))
        return super().handle(conn)
