"""`pickspin up` (the main job) as a process: activators, backends and router; serves; stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import psutil
import yaml

from tests.helpers import REPO, TRIO_CAPS, TRIO_COST, free_port, pickspin_cmd, subprocess_env, wait_until


def test_up_starts_the_stack_and_stops_it(tmp_path: Path) -> None:
    ports = {t: free_port() for t in ("small", "large")}
    cfg = {"models": [
        {"name": f"{t}-model", "tier": t, "capability": TRIO_CAPS[t], "cost": {"per_1k_tokens": TRIO_COST[t]},
         "scaling": {"warm_pool": 1 if t == "small" else 0},
         "backends": [{"name": f"{t}-sim", "kind": "vllm", "url": f"http://127.0.0.1:{p}",
                       "served_model_name": f"{t}-served", "simulated": True,
                       "launch": {"type": "sim", "params_b": 1 if t == "small" else 70,
                                  "load_s": 0 if t == "small" else 2}}]}
        for t, p in ports.items()]}
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rport = free_port()
    proc = subprocess.Popen(pickspin_cmd("up", "--config", str(path), "--port", str(rport), "--no-scorer",
                                         "--workers", "1", "--log-dir", str(tmp_path / "logs")),
                            env=subprocess_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{rport}"
    try:
        def ready() -> bool:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                return httpx.get(url + "/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(ready, 90)
        # the large tier has no warm pool: its activator holds the port, the backend is not running
        act = f"http://127.0.0.1:{ports['large']}/_pickspin/activator"
        assert httpx.get(act).json()["state"] == "cold"
        r1 = httpx.post(url + "/v1/chat/completions", timeout=30,
                        json={"messages": [{"role": "user", "content": "summarise three colours"}], "max_tokens": 3})
        r2 = httpx.post(url + "/v1/chat/completions", timeout=30, headers={"X-PickSpin-Profile": "quality"},
                        json={"messages": [{"role": "user", "content": "a rigorous proof, please"}], "max_tokens": 3})
        assert r1.status_code == 200 and r2.status_code == 200
        assert r1.headers["X-PickSpin-Model"] == "small-model"
        assert r2.headers["X-PickSpin-Model"] == "large-model"
        assert r2.headers["X-PickSpin-Simulated"] == "true"
        st = httpx.get(act).json()
        assert st["state"] == "ready" and st["starts"] == 1  # cold-started by the first request
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3  # two backends and the router (plus its worker)
    finally:
        os.kill(proc.pid, signal.SIGINT)
        out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, out
    assert "PickSpin is up" in out and "(SIMULATED)" in out
    assert wait_until(lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children), 10)
