"""Child processes of the local stack, the tests and the benchmarks: wait until one answers, stop one.

Children run in their own session (``start_new_session=True``), so a signal to the process group
reaches a server and everything it forked (gunicorn workers, llama.cpp threads' process).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import urllib3

_HTTP = urllib3.PoolManager(maxsize=4)


def wait_http_ok(url: str, *, timeout: float, proc: subprocess.Popen[bytes] | None = None,
                 interval: float = 0.1) -> bool:
    """Poll ``url`` until it answers 200 (True), ``timeout`` passes or ``proc`` exits (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            if _HTTP.request("GET", url, timeout=1.0, retries=False).status == 200:
                return True
        except urllib3.exceptions.HTTPError:
            pass
        time.sleep(interval)
    return False


def terminate_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the child's process group, wait up to ``timeout``, then SIGKILL it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
