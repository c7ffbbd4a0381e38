"""The local activator: cold start on first request, held requests, stop after tau, warm floor, streaming."""

from __future__ import annotations

import concurrent.futures
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from pickspin.config import ServiceMatrix, parse_config
from stack.activator import STATUS_PATH, LocalActivator
from tests.scaler.conftest import free_port, wait_until

STUB = Path(__file__).parents[1] / "scaler" / "stub_backend.py"
HTTP = urllib3.PoolManager(maxsize=16, retries=False)
CHAT = json.dumps({"model": "x", "messages": [{"role": "user", "content": "hi"}]}).encode()


def matrix(port: int, *, idle: float = 1.5, tier: str = "large", warm_pool: int | None = None,
           cold_start_timeout: float = 20.0) -> ServiceMatrix:
    scaling: dict[str, Any] = {"concurrency": 2, "idle_seconds": idle}
    if warm_pool is not None:
        scaling["warm_pool"] = warm_pool
    return parse_config({
        "models": [{"name": "m", "tier": tier, "capability": {"low": 1, "medium": 1, "high": 1},
                    "cost": {"per_1k_tokens": 0.1}, "scaling": scaling,
                    "backends": [{"name": "m-local", "kind": "vllm", "url": f"http://127.0.0.1:{port}",
                                  "served_model_name": "m-served",
                                  "launch": {"type": "sim", "startup_timeout_s": 20}}]}],
        "router": {"cold_start_timeout_s": cold_start_timeout, "retry_after_s": 3}})


def stub_command(*extra: str) -> Any:
    return lambda port: [sys.executable, str(STUB), "--port", str(port), *extra]


def make(tmp_path: Path, *extra: str, **kw: Any) -> LocalActivator:
    port = free_port()
    m = matrix(port, **kw)
    return LocalActivator(m, m.models[0].backends[0], stub_command(*extra), control_interval_s=0.1,
                          log_path=tmp_path / "backend.log")


@pytest.fixture
def activators() -> Iterator[list[LocalActivator]]:
    made: list[LocalActivator] = []
    yield made
    for a in made:
        a.stop()


def post(url: str, body: bytes = CHAT, timeout: float = 30.0) -> urllib3.BaseHTTPResponse:
    return HTTP.request("POST", f"{url}/v1/chat/completions", body=body,
                        headers={"Content-Type": "application/json"}, timeout=timeout)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive either
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_cold_start_on_first_request_holds_a_burst_then_stops_after_tau(
        tmp_path: Path, activators: list[LocalActivator]) -> None:
    act = make(tmp_path, "--startup-delay", "0.8", idle=3.0)
    activators.append(act)
    act.start()
    # The router's health probe is answered by the activator: it does not wake the backend.
    r = HTTP.request("GET", f"{act.url}/health", timeout=5)
    assert r.status == 200 and json.loads(r.data)["activator"] == "cold"
    assert act.state == "cold" and act.starts == 0
    # A burst arrives while cold: every request is held until the one process is ready, none fails.
    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        results = list(ex.map(lambda _: post(act.url), range(6)))
    assert [x.status for x in results] == [200] * 6
    pids = {json.loads(x.data)["pid"] for x in results}
    assert len(pids) == 1 and act.starts == 1
    pid = pids.pop()
    assert act.state == "ready" and alive(pid)
    assert results[0].headers["X-PickSpin-Activator"] == "m-local"
    # Warm now: health is the backend's own.
    assert json.loads(HTTP.request("GET", f"{act.url}/health", timeout=5).data)["pid"] == pid
    # Idle past tau (3 s), floor 0 (large tier): the process is stopped.
    wait_until(lambda: act.state == "cold", 15, 0.05, "stop after tau")
    assert act.stops == 1
    wait_until(lambda: not alive(pid), 10, 0.05, "backend process gone")
    # ...and the next request cold-starts it again.
    again = post(act.url)
    assert again.status == 200 and json.loads(again.data)["pid"] != pid and act.starts == 2


def test_status_reports_policy_and_demand(tmp_path: Path, activators: list[LocalActivator]) -> None:
    act = make(tmp_path, idle=30)
    activators.append(act)
    act.start()
    assert post(act.url).status == 200

    def status() -> dict[str, Any]:
        return dict(json.loads(HTTP.request("GET", f"{act.url}{STATUS_PATH}", timeout=5).data))

    # the client has the whole answer a moment before the activator's relay counts it as done
    st = wait_until(lambda: (s := status())["inflight"] == 0 and s, 5, what="inflight back to 0")
    assert st["state"] == "ready" and st["starts"] == 1
    assert st["policy"]["active"] is True and st["policy"]["floor"] == 0 and st["policy"]["idle_seconds"] == 30


def test_warm_floor_prestarts_and_is_never_stopped(tmp_path: Path, activators: list[LocalActivator]) -> None:
    act = make(tmp_path, idle=0.3, tier="small")  # the small tier's default warm pool is 1
    activators.append(act)
    assert act.params.floor == 1
    act.start()
    wait_until(lambda: act.state == "ready", 15, 0.05, "pre-warm of the floor")
    assert post(act.url).status == 200
    # Many control cycles past tau: still running, never stopped.
    wait_until(lambda: act.status()["idle_s"] is not None and act.status()["idle_s"] > 1.5, 10, 0.05, "idle > 5 tau")
    assert act.state == "ready" and act.stops == 0 and act.starts == 1


def test_cold_start_timeout_is_503_with_retry_after(tmp_path: Path, activators: list[LocalActivator]) -> None:
    act = make(tmp_path, "--startup-delay", "3", cold_start_timeout=0.5, idle=30)
    activators.append(act)
    act.start()
    r = post(act.url)
    assert r.status == 503
    assert r.headers["Retry-After"] == "3"
    err = json.loads(r.data)["error"]
    assert err["code"] == "cold_start_timeout" and err["type"] == "service_unavailable"
    assert "cold start" in err["message"]
    # The start goes on in the background: a later request is served.
    wait_until(lambda: act.state == "ready", 15, 0.05, "backend ready")
    assert post(act.url).status == 200


def test_failed_start_fails_fast_and_probe_says_so(tmp_path: Path, activators: list[LocalActivator]) -> None:
    port = free_port()
    m = matrix(port, idle=30)
    act = LocalActivator(m, m.models[0].backends[0], lambda p: [sys.executable, "-c", "raise SystemExit(3)"],
                         control_interval_s=0.1)
    activators.append(act)
    act.start()
    r = post(act.url, timeout=15)
    assert r.status == 503
    err = json.loads(r.data)["error"]
    assert err["code"] == "backend_unavailable" and "code 3" in err["message"]
    assert HTTP.request("GET", f"{act.url}/health", timeout=5).status == 503  # the router fails over


def test_streaming_is_passed_through_chunk_by_chunk(tmp_path: Path, activators: list[LocalActivator]) -> None:
    gate = tmp_path / "gate"
    act = make(tmp_path, "--gate", str(gate), idle=30)
    activators.append(act)
    act.start()
    body = json.dumps({"model": "x", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    r = HTTP.request("POST", f"{act.url}/v1/chat/completions", body=body, preload_content=False,
                     headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    first = r.read1(65536)
    # The backend holds the rest until the gate exists: the first chunk can only be here if it was relayed
    # on its own, before the backend finished.
    assert first == b'data: {"n": 0}\n\n'
    assert act.status()["inflight"] == 1  # a stream in progress is demand
    gate.write_text("open")
    rest = r.read()
    assert rest == b'data: {"n": 1}\n\ndata: {"n": 2}\n\ndata: {"n": 3}\n\ndata: [DONE]\n\n'
    r.release_conn()
    wait_until(lambda: act.status()["inflight"] == 0, 5, 0.05, "demand released")


def test_stop_terminates_the_backend(tmp_path: Path) -> None:
    act = make(tmp_path, idle=300)
    act.start()
    try:
        pid = json.loads(post(act.url).data)["pid"]
        assert alive(pid)
    finally:
        act.stop()
    wait_until(lambda: not alive(pid), 10, 0.05, "backend terminated by stop()")
    with pytest.raises(urllib3.exceptions.HTTPError):
        HTTP.request("GET", f"{act.url}/health", timeout=2)


def test_build_activators_covers_backends_with_launch() -> None:
    from stack.activator import build_activators

    m = parse_config({
        "models": [{"name": "m", "tier": "small", "capability": {"low": 1, "medium": 1, "high": 1},
                    "cost": {"per_1k_tokens": 0.1},
                    "backends": [
                        {"name": "local", "url": "http://127.0.0.1:18001", "served_model_name": "s",
                         "launch": {"type": "sim"}},
                        {"name": "external", "url": "http://127.0.0.1:18002", "served_model_name": "s"}]}]})
    seen: list[tuple[str, int]] = []

    def command(b: Any, port: int) -> list[str]:
        seen.append((b.name, port))
        return ["true"]

    acts = build_activators(m, command, log_dir="/tmp/x")
    assert [a.backend.name for a in acts] == ["local"]
    a = acts[0]
    assert (a.listen_host, a.listen_port, a.params.floor) == ("127.0.0.1", 18001, 1)
    assert a.log_path == Path("/tmp/x/local.log")
    assert a.command(4242) == ["true"] and seen == [("local", 4242)]


def test_router_through_activator_cold_start_counts_as_demand(tmp_path: Path,
                                                              activators: list[LocalActivator]) -> None:
    """The real router in front of an activator: its probe keeps the cold backend 'up', a request is held
    through the cold start and succeeds, and while it waits the router reports it as in-flight demand
    (what the scaler's IsActive reads in a cluster)."""
    import threading

    from functions.router.app import create_app
    from tests.scaler.conftest import ThreadServer

    act = make(tmp_path, "--startup-delay", "1.5", idle=30)
    activators.append(act)
    act.start()
    m = act.matrix.model_copy(update={"router": act.matrix.router.model_copy(
        update={"probe_interval_s": 0.2, "probe_timeout_s": 1.0})})
    router = ThreadServer(create_app(m, start_prober=True))
    try:
        http = urllib3.PoolManager(retries=False)
        wait_until(lambda: b'pickspin_backend_up{backend="m-local"} 1.0' in http.request(
            "GET", f"{router.url}/metrics", timeout=5).data, 10, 0.1, "router sees the cold backend up")
        assert act.state == "cold"  # probing did not wake it
        box: dict[str, Any] = {}
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
        t = threading.Thread(target=lambda: box.setdefault("r", post(router.url, body)), daemon=True)
        t.start()
        wait_until(lambda: b'pickspin_inflight_requests{model="m"} 1.0' in http.request(
            "GET", f"{router.url}/metrics", timeout=5).data, 10, 0.05, "held request counted at the router")
        # (the router counts the request before it reaches the activator: wait for that too)
        wait_until(lambda: act.state == "starting" and act.status()["inflight"] == 1, 5, 0.02, "activator holding")
        t.join(30)
        r = box["r"]
        assert r.status == 200 and r.headers["X-PickSpin-Backend"] == "m-local"
        assert json.loads(r.data)["model"] == "m-served" and act.starts == 1
    finally:
        router.close()


def test_port_in_use_is_an_oserror_not_an_exit(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        m = matrix(s.getsockname()[1])
        act = LocalActivator(m, m.models[0].backends[0], stub_command())
        with pytest.raises(OSError, match="cannot listen"):
            act.start()


def test_cold_start_of_the_real_sim_backend_via_localstack_command(tmp_path: Path,
                                                                   activators: list[LocalActivator]) -> None:
    """What `pickspin up` wires: build_activators(matrix, localstack.backend_command) on a sim backend."""
    from stack.activator import build_activators

    try:
        from stack.localstack import backend_command
    except ImportError as e:  # pragma: no cover - the local stack is the lead's module
        pytest.skip(f"stack.localstack.backend_command not available: {e}")
    m = matrix(free_port(), idle=1.0)
    (act,) = build_activators(m, backend_command, log_dir=tmp_path, control_interval_s=0.1)
    activators.append(act)
    act.start()
    body = json.dumps({"model": "m-served", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]})
    r = post(act.url, body.encode(), timeout=60)
    assert r.status == 200, r.data[:300]
    assert json.loads(r.data)["choices"][0]["message"]["content"]
    assert act.starts == 1
    wait_until(lambda: act.state == "cold", 15, 0.1, "sim backend stopped after tau")
    assert act.stops == 1


def test_warm_floor_retries_a_failing_backend_with_backoff(tmp_path: Path, activators: list[LocalActivator]) -> None:
    port = free_port()
    m = matrix(port, idle=30, tier="small")
    marker = tmp_path / "attempts"
    # Fails twice, then serves: the control loop keeps the warm pool by retrying (after 2 s, then 4 s).
    script = ("import pathlib, sys, runpy; p = pathlib.Path(sys.argv[1]); n = int(p.read_text()) if p.exists() else 0;"
              "p.write_text(str(n + 1)); sys.exit(3) if n < 2 else None;"
              "sys.argv = [sys.argv[2], '--port', sys.argv[3]]; runpy.run_path(sys.argv[0], run_name='__main__')")
    act = LocalActivator(m, m.models[0].backends[0],
                         lambda p: [sys.executable, "-c", script, str(marker), str(STUB), str(p)],
                         control_interval_s=0.1)
    activators.append(act)
    act.start()
    wait_until(lambda: act.state == "ready", 20, 0.1, "warm pool up after two failed starts")
    assert marker.read_text() == "3" and act.starts == 1 and act.status()["last_error"] is None


def test_learns_the_start_up_time_and_reports_an_eta(tmp_path: Path, activators: list[LocalActivator]) -> None:
    """Readiness with an ETA: the launch's expected load before any start; 0 when ready; the learned load time once cold
    again; what is left of it while starting. The router reads it from the health answer's headers."""
    from pickspin.contract import BACKEND_ETA_HEADER, BACKEND_STATE_HEADER

    act = make(tmp_path, "--startup-delay", "1.0", idle=1.0)
    activators.append(act)
    act.start()
    from stack.simbackend import local_load_seconds

    probe = HTTP.request("GET", f"{act.url}/health", timeout=5)
    # before any start the prior is the launch block's expected load time (a 1B simulated tier)
    assert probe.headers[BACKEND_STATE_HEADER] == "cold"
    assert float(probe.headers[BACKEND_ETA_HEADER]) == pytest.approx(local_load_seconds(1.0), abs=0.05)
    assert post(act.url).status == 200
    st = json.loads(HTTP.request("GET", f"{act.url}{STATUS_PATH}", timeout=5).data)
    # the start took at least the stub's 1 s: the EWMA moved from the prior toward it
    assert st["eta_s"] == 0.0 and local_load_seconds(1.0) + 0.2 < st["load_s"] < 1.0 + 5.0
    assert HTTP.request("GET", f"{act.url}/health", timeout=5).headers[BACKEND_STATE_HEADER] == "ready"
    wait_until(lambda: act.state == "cold", 15, 0.1, "stopped after tau")
    probe = HTTP.request("GET", f"{act.url}/health", timeout=5)
    assert float(probe.headers[BACKEND_ETA_HEADER]) == pytest.approx(st["load_s"], abs=0.05)
    # a second start: while starting, the ETA counts down from the learned time
    t = __import__("threading").Thread(target=post, args=(act.url,), daemon=True)
    t.start()
    wait_until(lambda: act.state == "starting", 5, 0.02, "second start")
    eta = json.loads(HTTP.request("GET", f"{act.url}{STATUS_PATH}", timeout=5).data)["eta_s"]
    assert 0 <= eta <= st["load_s"]
    t.join(30)
    assert act.starts == 2


def test_cold_start_timeout_retry_after_comes_from_the_eta(tmp_path: Path,
                                                           activators: list[LocalActivator]) -> None:
    act = make(tmp_path, "--startup-delay", "0.5", idle=1.0)
    activators.append(act)
    act.start()
    assert post(act.url).status == 200
    wait_until(lambda: act.state == "cold", 15, 0.1, "stopped after tau")
    act._load_s = 7.2  # as if the model took 7.2 s to load last time
    act.cold_start_timeout_s = 0.01  # the next request gives up at once
    r = post(act.url)
    assert r.status == 503 and r.headers["Retry-After"] == "8", (r.status, dict(r.headers))


@pytest.mark.parametrize(("slo_miss_gpu_s", "tau"), [(60.0, 15.0), (0.0, 0.0)])
def test_adaptive_keep_warm_chooses_tau_from_the_gaps_it_saw(tmp_path: Path, activators: list[LocalActivator],
                                                            slo_miss_gpu_s: float, tau: float) -> None:
    """Requests about 0.4 s apart on a backend that starts in well under a second: when a missed SLO is
    dear, staying warm through such gaps is cheaper than a reload (tau 15 s, down from the configured
    30 s); when it costs nothing, reloading is cheaper than idling (tau 0)."""
    port = free_port()
    m = matrix(port, idle=30.0)
    m = m.model_copy(update={"models": [m.models[0].model_copy(update={"scaling": m.models[0].scaling.model_copy(
        update={"keep_warm": "adaptive", "slo_miss_gpu_s": slo_miss_gpu_s})})]})
    act = LocalActivator(m, m.models[0].backends[0], stub_command(), control_interval_s=0.1)
    activators.append(act)
    act.start()
    for _ in range(7):
        assert post(act.url).status == 200
        time.sleep(0.4)
        if act.state != "ready":  # tau 0: it went to zero in the gap; wait for the stop to finish
            wait_until(lambda: act.state == "cold", 10, 0.05, "stopped")
    st = wait_until(lambda: (s := json.loads(HTTP.request("GET", f"{act.url}{STATUS_PATH}", timeout=5).data))
                    ["policy"]["gaps_seen"] >= 5 and s, 10, what="gaps recorded")
    assert st["policy"]["keep_warm"] == "adaptive"
    assert (st["policy"]["floor"], st["policy"]["idle_seconds"]) == (0, tau)
