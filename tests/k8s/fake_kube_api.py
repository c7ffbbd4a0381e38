"""FakeKubeAPI: a FAKE Kubernetes API server on 127.0.0.1 for the `pickspin backends` tests.

It is not a Kubernetes API server. It serves only the REST paths the CLI uses, the way the
real API server answers them (JSON bodies, Status objects on errors, resourceVersion checks):

* ``serving.knative.dev/v1`` services: list (labelSelector), get, create, replace, delete
  -- objects are validated against the real Knative CRD schema when ../shared is present
  (422 Invalid otherwise, as the API server's structural-schema check would);
* ``keda.sh/v1alpha1`` scaledobjects: get;
* ``v1`` configmaps: get, replace; ``apps/v1`` deployments: get; ``v1`` events: list (fieldSelector).

Every request is logged in ``requests`` so tests can prove e.g. that ``--dry-run`` sent nothing.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

Key = tuple[str, str, str]  # (resource, namespace, name)

ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^/apis/serving\.knative\.dev/v1/namespaces/(?P<ns>[^/]+)/services(?:/(?P<name>[^/]+))?$"), "ksvc"),
    (re.compile(r"^/apis/keda\.sh/v1alpha1/namespaces/(?P<ns>[^/]+)/scaledobjects(?:/(?P<name>[^/]+))?$"), "scaledobject"),
    (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/configmaps(?:/(?P<name>[^/]+))?$"), "configmap"),
    (re.compile(r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/deployments(?:/(?P<name>[^/]+))?$"), "deployment"),
    (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/events$"), "event"),
]
KIND_OF = {"ksvc": ("serving.knative.dev/v1", "Service"), "scaledobject": ("keda.sh/v1alpha1", "ScaledObject"),
           "configmap": ("v1", "ConfigMap"), "deployment": ("apps/v1", "Deployment"), "event": ("v1", "Event")}


def _status(code: int, reason: str, message: str) -> Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    return Response(json.dumps(body), status=code, content_type="application/json")


def _ok(obj: Any, code: int = 200) -> Response:
    return Response(json.dumps(obj), status=code, content_type="application/json")


def _match_labels(obj: dict[str, Any], selector: str) -> bool:
    labels = obj.get("metadata", {}).get("labels", {}) or {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        k, _, v = term.partition("=")
        if labels.get(k) != v:
            return False
    return True


class FakeKubeAPI:
    """A fake API server (werkzeug, one thread) with an in-memory object store."""

    def __init__(self, validate_ksvc: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.queries: list[tuple[str, str, dict[str, str]]] = []  # (method, path, decoded query)
        self.validate_ksvc = validate_ksvc
        self._rv = 100
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-kube-api", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeKubeAPI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(5)

    def kubeconfig(self, path: Path, namespace: str = "pickspin") -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token-for-tests"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
        }))
        return path

    # -- store helpers -----------------------------------------------------------------------
    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def put(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Seed an object (as if created earlier)."""
        obj = copy.deepcopy(obj)
        api, kind = KIND_OF[resource]
        obj.setdefault("apiVersion", api)
        obj.setdefault("kind", kind)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "pickspin")
        meta["resourceVersion"] = self._next_rv()
        meta.setdefault("uid", f"uid-{resource}-{meta['name']}")
        self.objects[(resource, meta["namespace"], meta["name"])] = obj
        return obj

    def get(self, resource: str, name: str, namespace: str = "pickspin") -> dict[str, Any] | None:
        return self.objects.get((resource, namespace, name))

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] in ("POST", "PUT", "PATCH", "DELETE")]

    # -- HTTP --------------------------------------------------------------------------------
    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        req = Request(environ)
        with self._lock:
            self.requests.append((req.method, req.path))
            self.queries.append((req.method, req.path, dict(req.args)))
            resp = self._handle(req)
        return resp(environ, start_response)

    def _handle(self, req: Request) -> Response:
        if req.headers.get("Authorization") != "Bearer fake-token-for-tests":
            return _status(401, "Unauthorized", "Unauthorized")
        for pat, resource in ROUTES:
            m = pat.match(req.path)
            if m:
                return self._resource(req, resource, m.group("ns"), m.groupdict().get("name"))
        return _status(404, "NotFound", f"the server could not find the requested resource ({req.path})")

    def _resource(self, req: Request, resource: str, ns: str, name: str | None) -> Response:
        api, kind = KIND_OF[resource]
        if name is None:
            if req.method == "GET":
                items = [o for (r, n, _), o in sorted(self.objects.items()) if r == resource and n == ns]
                sel = req.args.get("labelSelector", "")
                if sel:
                    items = [o for o in items if _match_labels(o, sel)]
                fsel = req.args.get("fieldSelector", "")
                if fsel.startswith("involvedObject.name="):
                    want = fsel.split("=", 1)[1]
                    items = [o for o in items if o.get("involvedObject", {}).get("name") == want]
                return _ok({"apiVersion": api, "kind": f"{kind}List", "metadata": {"resourceVersion": str(self._rv)},
                            "items": items})
            if req.method == "POST":
                obj = req.get_json(force=True)
                oname = obj.get("metadata", {}).get("name")
                if not oname:
                    return _status(422, "Invalid", "metadata.name: Required value")
                if (resource, ns, oname) in self.objects:
                    return _status(409, "AlreadyExists", f'{kind.lower()}s "{oname}" already exists')
                bad = self._invalid(resource, obj)
                if bad:
                    return bad
                obj["metadata"]["namespace"] = ns
                return _ok(self.put(resource, obj), 201)
            return _status(405, "MethodNotAllowed", req.method)
        key = (resource, ns, name)
        cur = self.objects.get(key)
        if cur is None:
            return _status(404, "NotFound", f'{kind.lower()}s "{name}" not found')
        if req.method == "GET":
            return _ok(cur)
        if req.method == "DELETE":
            del self.objects[key]
            return _ok({"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name}})
        if req.method == "PUT":
            obj = req.get_json(force=True)
            rv = obj.get("metadata", {}).get("resourceVersion")
            if rv and rv != cur["metadata"]["resourceVersion"]:
                return _status(409, "Conflict", f'Operation cannot be fulfilled on {kind.lower()}s "{name}": '
                                                "the object has been modified")
            bad = self._invalid(resource, obj)
            if bad:
                return bad
            if "status" in cur and "status" not in obj:
                obj["status"] = cur["status"]
            obj["metadata"]["uid"] = cur["metadata"]["uid"]
            obj["metadata"]["namespace"] = ns
            return _ok(self.put(resource, obj))
        return _status(405, "MethodNotAllowed", req.method)

    def _invalid(self, resource: str, obj: dict[str, Any]) -> Response | None:
        if resource == "ksvc" and self.validate_ksvc is not None:
            try:
                self.validate_ksvc({k: v for k, v in obj.items() if k != "status"})
            except Exception as e:
                return _status(422, "Invalid", f"Service.serving.knative.dev is invalid: {getattr(e, 'message', e)}")
        return None
