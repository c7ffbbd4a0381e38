"""Slow clients cost a socket, not a worker thread: the real server (gunicorn, as deployed) keeps
answering /healthz while 200 slow-loris connections are open, and closes them at the deadline."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from pickspin.procs import terminate_group, wait_http_ok
from pickspin.slowclient import request_complete
from tests.helpers import REPO, free_port, pickspin_cmd, sim_server, subprocess_env

N_SLOW = 200


@pytest.fixture(scope="module")
def router_addr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    with sim_server("small-served", ttft_s=0.0, tpot_s=0.0) as s:
        cfg = {"models": [{"name": "small-model", "tier": "small",
                           "capability": {"low": 1, "medium": 0.5, "high": 0.1}, "cost": {"per_1k_tokens": 0.01},
                           "backends": [{"name": "s0", "kind": "vllm", "url": s.url,
                                         "served_model_name": "small-served", "simulated": True}]}],
               "router": {"client_request_timeout_s": 3.0}}
        p: Path = tmp_path_factory.mktemp("slow") / "matrix.yaml"
        p.write_text(yaml.safe_dump(cfg))
        port = free_port()
        # few threads on purpose: 200 slow clients are many times the thread pool
        proc = subprocess.Popen(pickspin_cmd("router", "--config", str(p), "--port", str(port), "--workers", "2",
                                             "--threads", "8"),
                                env=subprocess_env(), cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            assert wait_http_ok(f"http://127.0.0.1:{port}/readyz", timeout=60, proc=proc, interval=0.05)
            yield ("127.0.0.1", port)
        finally:
            terminate_group(proc)


def test_request_complete() -> None:
    assert not request_complete(b"GET / HTTP/1.1\r\nHost: x\r\n", 100)
    assert request_complete(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 100)
    head = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"
    assert not request_complete(head + b"abc", 100) and request_complete(head + b"abcde", 100)
    assert request_complete(b"POST / HTTP/1.1\r\ncontent-length: 500\r\n\r\n", 100)  # too big: the thread reads it
    # curl waits for "100 Continue" before sending a body over 1 KB: do not wait for that body here
    assert request_complete(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", 100)


def test_healthz_answers_within_1s_under_200_slow_loris_connections(router_addr: tuple[str, int]) -> None:
    url = f"http://{router_addr[0]}:{router_addr[1]}"
    socks: list[socket.socket] = []
    try:
        for i in range(N_SLOW):
            s = socket.create_connection(router_addr, timeout=5)
            # half send one byte and go silent; half are "mid-body" with a Content-Length never satisfied
            s.sendall(b"G" if i % 2 else b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
            socks.append(s)
        worst = 0.0
        deadline = time.monotonic() + 2.5  # bounded: about five probes while they are all open
        with httpx.Client(timeout=5) as c:
            while time.monotonic() < deadline:
                t0 = time.monotonic()
                assert c.get(url + "/healthz", headers={"Connection": "close"}).status_code == 200
                worst = max(worst, time.monotonic() - t0)
                # the trickling ones: one more byte each round
                for s in socks[1::2][:20]:
                    s.sendall(b"x")
                time.sleep(0.4)
        print(f"worst /healthz latency under {N_SLOW} slow clients: {worst * 1000:.0f} ms")
        assert worst < 1.0, f"/healthz took {worst:.2f}s"
        # and the server closes them at client_request_timeout_s (3 s) rather than holding them forever
        socks[0].settimeout(6)
        assert socks[0].recv(1024) == b""
    finally:
        for s in socks:
            s.close()


def test_a_normal_request_still_works(router_addr: tuple[str, int]) -> None:
    url = f"http://{router_addr[0]}:{router_addr[1]}"
    with httpx.Client(timeout=10) as c:
        for i in range(3):  # keep-alive: the same connection, gathered each time
            r = c.post(url + "/v1/chat/completions",
                       json={"messages": [{"role": "user", "content": f"list {i}"}], "max_tokens": 2})
            assert r.status_code == 200, r.text


def test_expect_100_continue_is_answered_before_the_body(router_addr: tuple[str, int]) -> None:
    body = b'{"messages": [{"role": "user", "content": "list a"}], "max_tokens": 2}'
    with socket.create_connection(router_addr, timeout=5) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n" % len(body))
        s.settimeout(3)  # curl gives up waiting after 1 s and sends anyway; the server must not wait for it
        assert s.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data[:200]


def test_a_silent_client_does_not_hold_up_a_graceful_stop(tmp_path: Path) -> None:
    with sim_server("small-served", ttft_s=0.0, tpot_s=0.0) as s:
        cfg = {"models": [{"name": "small-model", "tier": "small",
                           "capability": {"low": 1, "medium": 0.5, "high": 0.1}, "cost": {"per_1k_tokens": 0.01},
                           "backends": [{"name": "s0", "kind": "vllm", "url": s.url,
                                         "served_model_name": "small-served"}]}]}
        p = tmp_path / "m.yaml"
        p.write_text(yaml.safe_dump(cfg))
        port = free_port()
        proc = subprocess.Popen(pickspin_cmd("router", "--config", str(p), "--port", str(port), "--workers", "1"),
                                env=subprocess_env(), cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            assert wait_http_ok(f"http://127.0.0.1:{port}/readyz", timeout=60, proc=proc, interval=0.05)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as silent:
                silent.sendall(b"POST /v1/chat/completions HTTP/1.1\r\n")  # and nothing more (30 s allowed)
                time.sleep(0.3)
                t0 = time.monotonic()
                terminate_group(proc, timeout=20)  # SIGTERM: gunicorn's graceful stop (up to 30 s)
                took = time.monotonic() - t0
            assert took < 8, f"graceful stop took {took:.1f} s"
        finally:
            terminate_group(proc)
