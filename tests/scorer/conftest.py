"""Fixtures: the shipped artifact, and a real ``pickspin scorer`` process on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from functions.scorer.engine import ComplexityModel, default_model_dir
from tests.helpers import free_port, pickspin_cmd, subprocess_env, wait_until


@pytest.fixture(scope="session")
def model_dir() -> Path:
    d = default_model_dir()
    assert (d / "model.onnx").is_file(), f"shipped artifact missing: {d}/model.onnx (run `make model`)"
    return d


@pytest.fixture(scope="session")
def model(model_dir: Path) -> ComplexityModel:
    return ComplexityModel(model_dir, threads=1)


class ScorerProcess:
    def __init__(self, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(os.devnull, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            pickspin_cmd("--log-level", "WARNING", "scorer", "--port", str(self.port), *extra),
            env=subprocess_env(), stdout=self.log, stderr=subprocess.STDOUT)

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        ok = wait_until(lambda: self.ready() or self.proc.poll() is not None, timeout=timeout, interval=0.1)
        assert ok and self.proc.poll() is None, f"scorer did not become ready (rc={self.proc.poll()})"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


@pytest.fixture(scope="session")
def scorer_proc() -> Iterator[ScorerProcess]:
    p = ScorerProcess("--max-batch", "16", "--max-wait-ms", "5")
    try:
        p.wait_ready()
        yield p
    finally:
        p.stop()
