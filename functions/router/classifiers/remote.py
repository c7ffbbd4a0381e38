"""Scorer backends for the semantic classifier: in-process onnxruntime, or the scorer service over HTTP.

Both return class probabilities for one text or raise ``ScorerUnavailable`` with a short reason
("timeout", "unavailable", "error", "not_ready") that becomes the fallback metric's label.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import urllib3


class ScorerUnavailable(RuntimeError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ScorerResult:
    __slots__ = ("label", "probs", "version")

    def __init__(self, label: str, probs: Mapping[str, float], version: str) -> None:
        self.label = label
        self.probs = dict(probs)
        self.version = version


class Scorer(Protocol):
    where: str  # "in-process" | the service URL

    def score(self, text: str) -> ScorerResult: ...


class LocalScorer:
    """The ONNX model in this process (no HTTP hop). Loads lazily in the background on first use."""

    where = "in-process"

    def __init__(self, model_dir: str | Path | None = None, *, threads: int | None = 1, eager: bool = True) -> None:
        self._model_dir = model_dir
        self._threads = threads
        self._model: object | None = None
        self._error: str | None = None
        self._lock = threading.Lock()
        self._loading = False
        if eager:
            self._start_load()

    def _start_load(self) -> None:
        with self._lock:
            if self._loading or self._model is not None:
                return
            self._loading = True
        threading.Thread(target=self._load, name="semantic-load", daemon=True).start()

    def _load(self) -> None:
        from functions.scorer.engine import ComplexityModel

        try:
            m = ComplexityModel(self._model_dir, threads=self._threads)
            m.warmup()
            self._model = m
        except Exception as e:  # a missing or broken artifact: keep routing on keywords
            self._error = f"{type(e).__name__}: {e}"
        finally:
            self._loading = False

    def wait_ready(self, timeout: float = 30.0) -> bool:
        end = time.monotonic() + timeout
        while self._model is None and self._error is None and time.monotonic() < end:
            time.sleep(0.01)
        return self._model is not None

    @property
    def error(self) -> str | None:
        return self._error

    def ready(self) -> bool:
        """Done loading (a failed load counts: the router then routes on keywords)."""
        return self._model is not None or self._error is not None

    def score(self, text: str) -> ScorerResult:
        from functions.scorer.engine import ComplexityModel

        m = self._model
        if m is None:
            if self._error is not None:
                raise ScorerUnavailable("unavailable", f"in-process model failed to load: {self._error}")
            raise ScorerUnavailable("not_ready", "in-process model is still loading")
        assert isinstance(m, ComplexityModel)
        try:
            p = m.predict([text])[0]
        except Exception as e:
            raise ScorerUnavailable("error", f"in-process model failed: {type(e).__name__}") from None
        return ScorerResult(p.label, p.probs, m.version)


class RemoteScorer:
    """The scorer Knative Service: ``POST {url}/v1/classify`` with a hard total timeout.

    After a failure the client stops calling for ``cooldown_s`` (a tiny circuit breaker), so a dead
    scorer costs the router one timeout, not one per request.
    """

    def __init__(self, url: str, *, timeout_s: float = 0.25, cooldown_s: float = 2.0,
                 pool: urllib3.PoolManager | None = None) -> None:
        self.where = url.rstrip("/")
        self._url = self.where + "/v1/classify"
        self.timeout_s = timeout_s
        self.cooldown_s = cooldown_s
        self._http = pool or urllib3.PoolManager(maxsize=32, block=False, retries=False)
        self._open_until = 0.0
        self._last_reason = "unavailable"

    def _fail(self, reason: str, message: str) -> ScorerUnavailable:
        self._open_until = time.monotonic() + self.cooldown_s
        self._last_reason = reason
        return ScorerUnavailable(reason, message)

    def score(self, text: str) -> ScorerResult:
        if time.monotonic() < self._open_until:
            raise ScorerUnavailable(self._last_reason, "scorer recently failed; cooling down")
        try:
            r = self._http.request(
                "POST", self._url, body=json.dumps({"input": text}).encode(),
                headers={"Content-Type": "application/json"},
                timeout=urllib3.Timeout(total=self.timeout_s), retries=False, preload_content=True)
        except urllib3.exceptions.NewConnectionError:  # (a ConnectTimeoutError subclass in urllib3 2.x)
            raise self._fail("unavailable", "scorer refused the connection") from None
        except (urllib3.exceptions.TimeoutError, urllib3.exceptions.ReadTimeoutError,
                urllib3.exceptions.ConnectTimeoutError):
            raise self._fail("timeout", f"scorer did not answer within {self.timeout_s}s") from None
        except urllib3.exceptions.HTTPError as e:
            raise self._fail("unavailable", f"scorer unreachable: {type(e).__name__}") from None
        if r.status != 200:
            raise self._fail("not_ready" if r.status == 503 else "error", f"scorer answered HTTP {r.status}")
        try:
            body = json.loads(r.data)
            item = body["data"][0]
            probs = {str(k): float(v) for k, v in item["probabilities"].items()}
            return ScorerResult(str(item["class"]), probs, str(body.get("model", "unknown")))
        except (ValueError, KeyError, IndexError, TypeError):
            raise self._fail("error", "scorer answered with an unexpected body") from None
