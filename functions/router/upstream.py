"""A small keep-alive connection pool for upstream backends, on the standard library's http.client.

Why not urllib3: http.client writes the request line, headers and a bytes body in one send, which
saves a write and a wake-up of the backend per request; on a 2-core machine that is a measurable
part of the router's added latency (bench/bench_router.py). Failures are reported as
``UpstreamError`` with a reason the proxy maps to retry/502/504.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections import defaultdict
from urllib.parse import urlsplit


class UpstreamError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason  # connect | connect_timeout | timeout | read


class Upstream:
    """One response being read; give the connection back with ``release``."""

    def __init__(self, pool: ConnectionPool, key: tuple[str, int], conn: http.client.HTTPConnection,
                 resp: http.client.HTTPResponse, sock: socket.socket | None = None) -> None:
        self._pool, self._key, self._conn, self._resp = pool, key, conn, resp
        # http.client hands a close-delimited response the socket and forgets it (conn.sock = None)
        self._sock = sock or conn.sock
        self.status = resp.status
        self.headers = resp.getheaders()
        self._released = False

    def settimeout(self, seconds: float) -> None:
        """The socket timeout for the next reads (each read, not the whole body)."""
        if self._sock is not None and self._sock.fileno() >= 0:
            self._sock.settimeout(max(0.001, seconds))

    @property
    def done(self) -> bool:
        """The whole response has been read."""
        r = self._resp
        if not r.isclosed() and r.length == 0 and not r.chunked:
            r.close()  # every byte of a Content-Length body is in: the connection can be reused
        return bool(r.isclosed())

    def header(self, name: str) -> str | None:
        return self._resp.getheader(name)

    def read1(self, n: int = 65536) -> bytes:
        try:
            return self._resp.read1(n)
        except TimeoutError as e:
            raise UpstreamError("timeout", "read timed out") from e
        except (OSError, http.client.HTTPException) as e:
            raise UpstreamError("read", type(e).__name__) from e

    def read(self) -> bytes:
        try:
            return self._resp.read()
        except TimeoutError as e:
            raise UpstreamError("timeout", "read timed out") from e
        except (OSError, http.client.HTTPException) as e:
            raise UpstreamError("read", type(e).__name__) from e

    def release(self) -> None:
        """Back to the pool if the response was read to the end; closed otherwise."""
        if self._released:
            return
        self._released = True
        if self.done and not self._resp.will_close:
            self._pool.put(self._key, self._conn)
        else:
            self._conn.close()


class ConnectionPool:
    def __init__(self, maxsize_per_host: int = 64) -> None:
        self.maxsize = maxsize_per_host
        self._idle: dict[tuple[str, int], list[http.client.HTTPConnection]] = defaultdict(list)
        self._lock = threading.Lock()

    def put(self, key: tuple[str, int], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle[key]
            if len(idle) < self.maxsize:
                idle.append(conn)
                return
        conn.close()

    def _take(self, key: tuple[str, int]) -> http.client.HTTPConnection | None:
        with self._lock:
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def post(self, base_url: str, path: str, body: bytes, headers: dict[str, str], *, connect_timeout: float,
             read_timeout: float) -> Upstream:
        u = urlsplit(base_url)
        key = (u.hostname or "127.0.0.1", u.port or (443 if u.scheme == "https" else 80))
        prefix = u.path.rstrip("/")
        fresh_only = False
        while True:
            conn = None if fresh_only else self._take(key)
            reused = conn is not None
            if conn is None:
                cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
                conn = cls(key[0], key[1], timeout=connect_timeout)
                try:
                    conn.connect()
                except TimeoutError as e:
                    conn.close()
                    raise UpstreamError("connect_timeout", f"connect timeout after {connect_timeout}s") from e
                except OSError as e:
                    conn.close()
                    raise UpstreamError("connect", f"{type(e).__name__}: {e.strerror or e}") from e
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.sock.settimeout(read_timeout)
            sock = conn.sock
            try:
                conn.request("POST", prefix + path, body=body, headers=headers)
                resp = conn.getresponse()
            except TimeoutError as e:
                conn.close()
                raise UpstreamError("timeout", f"no response within {read_timeout}s") from e
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                conn.close()
                if reused:
                    # The backend closed an idle keep-alive connection (it restarted, or timed the connection
                    # out) before reading the request, so the request never reached it. Its other idle
                    # connections are as old: drop them all and retry once on a fresh one.
                    self.discard(key)
                    fresh_only = True
                    continue
                raise UpstreamError("read", f"connection closed by backend ({type(e).__name__})") from e
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise UpstreamError("read", type(e).__name__) from e
            return Upstream(self, key, conn, resp, sock)

    def discard(self, key: tuple[str, int]) -> int:
        """Close every idle connection to ``key``; returns how many there were."""
        with self._lock:
            idle = self._idle.pop(key, [])
        for c in idle:
            c.close()
        return len(idle)

    def close(self) -> None:
        with self._lock:
            for idle in self._idle.values():
                for c in idle:
                    c.close()
            self._idle.clear()
