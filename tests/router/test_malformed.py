"""Malformed input gets a 4xx in OpenAI's error shape that names the problem, from the real server
(gunicorn gthread, as deployed): deep nesting, huge integers, NaN/Infinity, bad chunked encoding,
over-limit chunked bodies."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pickspin.procs import terminate_group, wait_http_ok
from tests.helpers import REPO, free_port, pickspin_cmd, sim_server, subprocess_env

LIMIT = 16384


@pytest.fixture(scope="module")
def router_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with sim_server("small-served", ttft_s=0.0, tpot_s=0.0) as s:
        cfg = {"models": [{"name": "small-model", "tier": "small",
                           "capability": {"low": 1, "medium": 0.5, "high": 0.1}, "cost": {"per_1k_tokens": 0.01},
                           "backends": [{"name": "s0", "kind": "vllm", "url": s.url,
                                         "served_model_name": "small-served", "simulated": True}]}],
               "router": {"max_body_bytes": LIMIT}}
        p: Path = tmp_path_factory.mktemp("malformed") / "matrix.yaml"
        p.write_text(yaml.safe_dump(cfg))
        port = free_port()
        proc = subprocess.Popen(pickspin_cmd("router", "--config", str(p), "--port", str(port), "--workers", "1",
                                             "--threads", "4"),
                                env=subprocess_env(), cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            assert wait_http_ok(f"http://127.0.0.1:{port}/readyz", timeout=60, proc=proc, interval=0.05)
            yield f"127.0.0.1:{port}"
        finally:
            terminate_group(proc)


def raw_post(addr: str, head: str, body: bytes, timeout: float = 10) -> tuple[int, dict[str, object]]:
    """One HTTP/1.1 request over a raw socket (so the body can be malformed); returns (status, JSON)."""
    host, port = addr.split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n"
                  f"Connection: close\r\n{head}\r\n".encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head_b, _, rest = data.partition(b"\r\n\r\n")
    status = int(head_b.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head_b.lower():
        out, buf = b"", rest
        while buf:
            size_s, _, buf = buf.partition(b"\r\n")
            n = int(size_s, 16)
            if n == 0:
                break
            out, buf = out + buf[:n], buf[n + 2:]
        rest = out
    return status, json.loads(rest)


def post_json_text(addr: str, text: str) -> tuple[int, dict[str, object]]:
    body = text.encode()
    return raw_post(addr, f"Content-Length: {len(body)}\r\n", body)


def err_of(status: int, doc: dict[str, object], want: int) -> dict[str, object]:
    assert status == want, doc
    err = doc["error"]
    assert isinstance(err, dict) and set(err) == {"message", "type", "param", "code"}
    return err


MSGS = '"messages": [{"role": "user", "content": "list a"}]'


@pytest.mark.parametrize("depth", [150, 5000])
def test_deep_nesting_is_400(router_url: str, depth: int) -> None:
    text = "{" + MSGS + ', "x": ' + "[" * depth + "]" * depth + "}"
    assert len(text) < LIMIT
    status, doc = post_json_text(router_url, text)
    err = err_of(status, doc, 400)
    assert "nested too deeply" in str(err["message"]) and err["code"] == "json_too_deep"


def test_integer_over_4300_digits_is_400(router_url: str) -> None:
    status, doc = post_json_text(router_url, "{" + MSGS + ', "max_tokens": ' + "9" * 4400 + "}")
    err = err_of(status, doc, 400)
    assert "out of range" in str(err["message"]) and "digits" in str(err["message"])


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_are_400(router_url: str, value: str) -> None:
    status, doc = post_json_text(router_url, "{" + MSGS + f', "temperature": {value}' + "}")
    err = err_of(status, doc, 400)
    msg = str(err["message"])
    assert (value in msg) or ("out of range" in msg and value == "1e999"), msg


def test_bad_chunk_size_is_400(router_url: str) -> None:
    status, doc = raw_post(router_url, "Transfer-Encoding: chunked\r\n", b"zz\r\n{}\r\n0\r\n\r\n")
    err = err_of(status, doc, 400)
    assert "chunk" in str(err["message"]).lower() or "transfer encoding" in str(err["message"]), err


def test_good_chunked_body_is_accepted(router_url: str) -> None:
    body = ("{" + MSGS + "}").encode()
    status, doc = raw_post(router_url, "Transfer-Encoding: chunked\r\n", b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    assert status == 200, doc


def test_chunked_body_over_the_limit_is_413(router_url: str) -> None:
    body = ("{" + MSGS + ', "pad": "' + "x" * (2 * LIMIT) + '"}').encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000]) for i in range(0, len(body), 1000))
    status, doc = raw_post(router_url, "Transfer-Encoding: chunked\r\n", chunks + b"0\r\n\r\n")
    err = err_of(status, doc, 413)
    assert "larger than the configured limit" in str(err["message"])
