"""Which Knative revisions can receive traffic, read from their PodAutoscalers.

autoscaler-keda creates one ScaledObject per revision, named after the revision's PodAutoscaler
(= the revision name; knative-extensions/autoscaler-keda ``pkg/reconciler/autoscaling/hpa/resources/keda.go``,
``sO.SetName(pa.Name)``), and never looks at the PodAutoscaler's ``spec.reachability``. Every revision
Knative keeps (config-gc) therefore asks this scaler the same question with the same trigger metadata,
and would get the same answer: a warm floor > 0 would hold one pod per kept revision.

Knative sets ``spec.reachability: Unreachable`` on the PodAutoscaler of a revision no route sends traffic
to (knative/serving ``pkg/apis/autoscaling/v1alpha1/pa_types.go``). This module polls the PodAutoscalers
of the given namespaces; the servicer answers 0 / inactive for a ScaledObject whose PodAutoscaler is
Unreachable. Anything unknown (no PodAutoscaler seen, API unreachable, data older than ``max_age_s``)
counts as reachable: the scaler never starves a revision because it could not read the API.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote

import urllib3

log = logging.getLogger("pickspin.scaler.reachability")

PA_PATH = "/apis/autoscaling.internal.knative.dev/v1alpha1/namespaces/{ns}/podautoscalers"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass
class ReachabilityConfig:
    api_url: str  # e.g. https://kubernetes.default.svc
    namespaces: tuple[str, ...]
    token_file: str | None = None
    ca_file: str | None = None
    interval_s: float = 10.0
    timeout_s: float = 5.0
    max_age_s: float = 120.0  # older data is not trusted: everything counts as reachable again

    @classmethod
    def in_cluster(cls, namespaces: Iterable[str], **kw: float) -> ReachabilityConfig:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise RuntimeError("not in a cluster: KUBERNETES_SERVICE_HOST is unset (give --kube-api)")
        host = f"[{host}]" if ":" in host else host
        return cls(api_url=f"https://{host}:{port}", namespaces=tuple(namespaces),
                   token_file=f"{SA_DIR}/token", ca_file=f"{SA_DIR}/ca.crt", **kw)


class Reachability:
    """Background poller of PodAutoscalers: ``unreachable(namespace, name)``."""

    def __init__(self, config: ReachabilityConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        kw = {"cert_reqs": "CERT_REQUIRED", "ca_certs": config.ca_file} if config.ca_file else {}
        self.http = urllib3.PoolManager(num_pools=2, maxsize=2, retries=False, **kw)  # type: ignore[arg-type]
        self._state: dict[tuple[str, str], str] = {}
        self._updated: float | None = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _headers(self) -> dict[str, str]:
        if not self.config.token_file:
            return {}
        with open(self.config.token_file) as f:  # re-read: projected tokens rotate
            return {"Authorization": f"Bearer {f.read().strip()}"}

    def refresh(self) -> bool:
        """One read of every namespace's PodAutoscalers; False (state kept) on any failure."""
        state: dict[tuple[str, str], str] = {}
        try:
            headers = self._headers()
            for ns in self.config.namespaces:
                url = self.config.api_url.rstrip("/") + PA_PATH.format(ns=quote(ns, safe=""))
                r = self.http.request("GET", url, headers=headers,
                                      timeout=urllib3.Timeout(total=self.config.timeout_s))
                if r.status != 200:
                    raise RuntimeError(f"GET {url}: HTTP {r.status}: {r.data[:200]!r}")
                for item in json.loads(r.data).get("items", []):
                    meta = item.get("metadata", {})
                    state[(meta.get("namespace", ns), meta.get("name", ""))] = str(
                        (item.get("spec") or {}).get("reachability") or "")
        except Exception as e:  # API down, RBAC, bad JSON: keep the last state, it ages out
            if self.error is None:
                log.warning("cannot read PodAutoscalers (revisions count as reachable once data is stale): %s", e)
            self.error = f"{type(e).__name__}: {e}"
            return False
        if self.error is not None:
            log.info("PodAutoscalers readable again")
        self._state, self._updated, self.error = state, self.clock(), None
        return True

    def unreachable(self, namespace: str, name: str) -> bool:
        """True only when fresh data says Knative routes no traffic to this revision."""
        if self._updated is None or self.clock() - self._updated > self.config.max_age_s:
            return False
        return self._state.get((namespace, name)) == "Unreachable"

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="scaler-reachability", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.config.interval_s)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
