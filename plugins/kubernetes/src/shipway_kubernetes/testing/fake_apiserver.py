"""A stateful fake Kubernetes API server for tests, with real containers as pods.

No Kubernetes API server can run on the machines shipway is developed on, so
the tests talk to this one, over real HTTP, through the official client. It
models what a rollout needs and nothing more:

- Deployments (generation, observedGeneration, replicas / updated / ready /
  available, ``Available`` and ``Progressing`` conditions with
  ``NewReplicaSetAvailable``, ``ReplicaSetUpdated`` and
  ``ProgressDeadlineExceeded``), rolling updates with maxUnavailable 0;
- ReplicaSets per pod template with ``deployment.kubernetes.io/revision``
  (a template that returns, as in a rollback, gets the next revision);
- Pods as containers on the local Docker engine: image pulled by digest,
  env, ``readOnlyRootFilesystem`` (emptyDir mounts become tmpfs),
  ``runAsNonRoot`` enforced, readiness from the HTTP readiness probe,
  crashed containers restarted with ``CrashLoopBackOff``;
- image pulls as a kubelet makes them: an image the engine holds is used as it
  is; otherwise a pod that names ``imagePullSecrets`` pulls with the
  credentials in those ``kubernetes.io/dockerconfigjson`` Secrets that match
  the image's registry host (else anonymously), and a pod that names none with
  the server-wide ``pull_auth`` (a node's own credentials, None by default); a
  failed pull leaves the pod waiting in ``ErrImagePull`` / ``ImagePullBackOff``
  and is retried with a backoff, so a rollout hits its deadline;
- Secret volumes mounted for real: the Secret's keys (or ``items``) are
  written with their modes to a private folder, bind-mounted read-only at the
  ``mountPath``; a missing Secret leaves the pod ``ContainerCreating``;
- Secrets (validated keys, base64 ``data``, ``stringData`` folded into
  ``data``, dockerconfigjson checked), Services, and the API server's service
  proxy (``…/services/NAME:PORT/proxy/…``) to ready pods;
  HorizontalPodAutoscalers and Leases are stored (a Lease request is answered
  while the controller starts or stops pods, as a real API server does);
- server-side apply with field managers: conflicts (409) unless ``force``,
  fields dropped from an apply are removed; a write that changes nothing keeps
  the ``resourceVersion``; merge patches; a DELETE honours its DeleteOptions'
  ``preconditions`` (409 when ``resourceVersion`` or ``uid`` differ);
  bearer-token auth.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import hashlib
import itertools
import json
import re
import shutil
import tempfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker.errors
import requests
import yaml

from shipway import dockerutil
from shipway.localhttp import LocalServer, QuietHandler
from shipway_kubernetes.render import merge_patch

Obj = dict[str, Any]
REVISION = "deployment.kubernetes.io/revision"
POD_LABEL = "io.shipway.fakek8s.pod"
SERVER_LABEL = "io.shipway.fakek8s.server"

_ROUTES = [
    (
        "deployments",
        re.compile(r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/deployments(?:/(?P<name>[^/]+))?(?P<sub>/status)?$"),
    ),
    ("replicasets", re.compile(r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/replicasets(?:/(?P<name>[^/]+))?$")),
    (
        "proxy",
        re.compile(
            r"^/api/v1/namespaces/(?P<ns>[^/]+)/services/(?P<name>[^/:]+)(?::(?P<port>[^/]+))?/proxy(?P<path>/.*)?$"
        ),
    ),
    ("services", re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/services(?:/(?P<name>[^/]+))?$")),
    ("pods", re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+))?$")),
    (
        "hpas",
        re.compile(r"^/apis/autoscaling/v2/namespaces/(?P<ns>[^/]+)/horizontalpodautoscalers(?:/(?P<name>[^/]+))?$"),
    ),
    ("leases", re.compile(r"^/apis/coordination.k8s.io/v1/namespaces/(?P<ns>[^/]+)/leases(?:/(?P<name>[^/]+))?$")),
    ("secrets", re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/secrets(?:/(?P<name>[^/]+))?$")),
    ("configmaps", re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/configmaps(?:/(?P<name>[^/]+))?$")),
]
_KINDS = {
    "deployments": ("apps/v1", "Deployment"),
    "replicasets": ("apps/v1", "ReplicaSet"),
    "services": ("v1", "Service"),
    "pods": ("v1", "Pod"),
    "hpas": ("autoscaling/v2", "HorizontalPodAutoscaler"),
    "leases": ("coordination.k8s.io/v1", "Lease"),
    "secrets": ("v1", "Secret"),
    "configmaps": ("v1", "ConfigMap"),
}
DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, causes: list[Obj] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.causes = code, reason, message, causes or []

    def status(self) -> Obj:
        body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": self.message, "reason": self.reason, "code": self.code}  # fmt: skip
        if self.causes:
            body["details"] = {"causes": self.causes}
        return body


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _leaves(obj: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Leaf paths of the fields a manager can own (lists are atomic)."""
    if isinstance(obj, dict) and obj:
        out: dict[tuple[str, ...], Any] = {}
        for key, value in obj.items():
            out.update(_leaves(value, (*prefix, str(key))))
        return out
    return {prefix: obj}


def _get(obj: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _delete(obj: Obj, path: tuple[str, ...]) -> None:
    parents = [obj]
    for part in path[:-1]:
        nxt = parents[-1].get(part)
        if not isinstance(nxt, dict):
            return
        parents.append(nxt)
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 2, -1, -1):  # drop maps left empty
        if parents[depth + 1] == {}:
            parents[depth].pop(path[depth], None)


def _owned_part(obj: Obj) -> Obj:
    """The parts of an object field managers own."""
    meta = obj.get("metadata") or {}
    part: Obj = {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}
    kept = {k: meta[k] for k in ("labels", "annotations") if k in meta}
    if kept:
        part["metadata"] = kept
    return part


def _selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _parse_label_selector(text: str) -> dict[str, str]:
    out = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        out[key.strip()] = value.strip().lstrip("=")
    return out


def _b64decode(text: Any) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "BadRequest", "illegal base64 data in a Secret's data") from None


def _secret_data(obj: Obj) -> None:
    """Check a Secret as the API server does (never echoing a value); fold ``stringData`` into ``data``."""
    name = obj["metadata"]["name"]
    data = obj.setdefault("data", {}) or {}
    obj["data"] = data
    for key, value in (obj.pop("stringData", None) or {}).items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    for key, value in data.items():
        if not _SECRET_KEY.match(key) or key in (".", ".."):
            raise ApiError(
                422,
                "Invalid",
                f'Secret "{name}" is invalid: data[{key}]: Invalid value: '
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            )
        _b64decode(value)
    obj.setdefault("type", "Opaque")
    if obj["type"] == DOCKERCONFIGJSON:
        try:
            parsed = json.loads(_b64decode(data[".dockerconfigjson"]))
            assert isinstance(parsed, dict)
        except (KeyError, ValueError, AssertionError):
            raise ApiError(
                422,
                "Invalid",
                f'Secret "{name}" is invalid: data[.dockerconfigjson]: Invalid value: <secret contents redacted>',
            ) from None


def _registry_host(text: str) -> str:
    """host[:port] of an auths key (``https://host/v1/``, ``host``) or an image's first path segment."""
    host = urllib.parse.urlsplit(text if "://" in text else f"//{text}").netloc
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host


def _image_registry(image: str) -> str:
    first, _, rest = image.split("@")[0].partition("/")
    return _registry_host(first) if rest and ("." in first or ":" in first or first == "localhost") else "docker.io"


class _MountError(Exception):
    """A pod's volume cannot be set up (the kubelet keeps the pod in ContainerCreating and retries)."""


@dataclass
class _Pod:
    name: str
    namespace: str
    rs: str
    labels: dict[str, str]
    container_id: str | None
    host_port: int | None
    ready: bool = False
    restarts: int = 0
    waiting: str | None = None
    message: str = ""
    created: str = field(default_factory=_now)
    retry_at: float = 0.0  # when a failed pull or mount is tried again (0: never)
    backoff: float = 0.0


class FakeApiServer:
    """Start with :meth:`start`; point a kubeconfig at it with :meth:`write_kubeconfig`."""

    def __init__(self, token: str | None = None, pull_auth: dict[str, str] | None = None, tick: float = 0.25) -> None:
        self.token = token or uuid.uuid4().hex
        self.pull_auth = pull_auth
        self.tick = tick
        self.id = uuid.uuid4().hex[:8]
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.owners: dict[tuple[str, str, str], dict[str, set[tuple[str, ...]]]] = {}
        self.pods: dict[str, _Pod] = {}
        self.progress: dict[tuple[str, str], tuple[int, float, int]] = {}  # generation, since, ready
        self.requests: list[tuple[str, str]] = []
        self._rv = itertools.count(1)
        self._lock = threading.RLock()
        self._lease_lock = threading.Lock()
        """Taken for Lease requests instead of ``_lock``: whatever walks ``objects`` under ``_lock`` walks a
        copy of it, so a Lease written meanwhile never breaks the walk."""
        self._stop = threading.Event()
        self._server: LocalServer | None = None
        self._controller: threading.Thread | None = None
        self._rr = itertools.count()
        self._volumes = Path(tempfile.mkdtemp(prefix="fakek8s-volumes-"))  # 0700: only the engine (root) reads it

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> FakeApiServer:
        owner = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                status, headers, payload = owner.handle(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, self.read_body()
                )
                self.answer(status, payload, headers)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self._server = LocalServer(Handler)
        self._controller = threading.Thread(target=self._control_loop, daemon=True)
        self._controller.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.stop()
        if self._controller is not None:
            self._controller.join(timeout=30)  # no pod is started or removed behind our back from here
        client = dockerutil.client()
        for c in client.containers.list(all=True, filters={"label": f"{SERVER_LABEL}={self.id}"}):
            with contextlib.suppress(docker.errors.APIError):  # already being removed
                c.remove(force=True)
        shutil.rmtree(self._volumes, ignore_errors=True)

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url

    def write_kubeconfig(self, path: Path, namespace: str = "default", context: str = "fake") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": self.token}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # -- HTTP --------------------------------------------------------------------------
    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one request (``headers`` with lower-case names): (status, headers, body)."""
        url = urllib.parse.urlsplit(raw_path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        self.requests.append((method, url.path))
        json_headers = {"Content-Type": "application/json"}
        try:
            if headers.get("authorization") != f"Bearer {self.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            if url.path == "/version":
                return (
                    200,
                    json_headers,
                    json.dumps({"major": "1", "minor": "30", "gitVersion": "v1.30.0-fake"}).encode(),
                )
            for resource, pattern in _ROUTES:
                m = pattern.match(url.path)
                if m:
                    if resource == "proxy":
                        return self._proxy(
                            method, m.group("ns"), m.group("name"), m.group("path") or "/", url.query, headers, body
                        )
                    # Leases do not wait for the controller, which holds its lock while it starts or stops
                    # pods: a real API server answers a Lease renewal while the kubelets work.
                    with self._lease_lock if resource == "leases" else self._lock:
                        result = self._dispatch(method, resource, m.group("ns"), m.group("name"), query, headers, body)
                    return 200 if method != "POST" else 201, json_headers, json.dumps(result).encode()
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({url.path})")
        except ApiError as exc:
            return exc.code, json_headers, json.dumps(exc.status()).encode()

    def _dispatch(
        self,
        method: str,
        resource: str,
        ns: str,
        name: str | None,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> Obj:
        api_version, kind = _KINDS[resource]
        if resource == "pods":
            self._refresh_pods()
            items = [self._pod_object(p) for p in self.pods.values() if p.namespace == ns]
            return self._list(api_version, kind, items, query)
        if name is None:
            if method == "GET":
                items = [o for (r, n, _), o in list(self.objects.items()) if r == resource and n == ns]
                return self._list(api_version, kind, items, query)
            if method == "POST":
                obj = self._parse(body)
                key = (resource, ns, obj["metadata"]["name"])
                if key in self.objects:
                    raise ApiError(409, "AlreadyExists", f'{resource} "{key[2]}" already exists')
                return self._store(key, api_version, kind, obj, query.get("fieldManager", "unknown"), apply=False)
            raise ApiError(405, "MethodNotAllowed", method)
        key = (resource, ns, name)
        live = self.objects.get(key)
        if method == "GET":
            if live is None:
                raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
            return live
        if method == "DELETE":
            if live is None:
                raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
            wanted = (self._parse(body) if body else {}).get("preconditions") or {}
            for field_name in ("resourceVersion", "uid"):
                have = live["metadata"].get(field_name)
                if field_name in wanted and wanted[field_name] != have:
                    raise ApiError(
                        409,
                        "Conflict",
                        f"Precondition failed: {field_name[0].upper() + field_name[1:]} in precondition: "
                        f"{wanted[field_name]}, {field_name} in object meta: {have}",
                    )
            self._delete_object(key)
            return {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        if method == "PUT":
            return self._store(
                key, api_version, kind, self._parse(body), query.get("fieldManager", "unknown"), apply=False
            )
        if method == "PATCH":
            content_type = headers.get("content-type", "").split(";")[0]
            patch = self._parse(body)
            manager = query.get("fieldManager")
            if content_type == "application/apply-patch+yaml":
                if not manager:
                    raise ApiError(400, "BadRequest", "fieldManager is required for apply patch")
                return self._apply(key, api_version, kind, patch, manager, query.get("force") == "true")
            if content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                if live is None:
                    raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
                return self._store(key, api_version, kind, merge_patch(live, patch), manager or "unknown", apply=False)
            raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {content_type!r}")
        raise ApiError(405, "MethodNotAllowed", method)

    @staticmethod
    def _parse(body: bytes) -> Obj:
        try:
            data = yaml.safe_load(body.decode() or "{}")
        except yaml.YAMLError as exc:
            raise ApiError(400, "BadRequest", f"invalid body: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "BadRequest", "body must be an object")
        return data

    @staticmethod
    def _list(api_version: str, kind: str, items: list[Obj], query: dict[str, str]) -> Obj:
        wanted = _parse_label_selector(query.get("labelSelector", ""))
        items = [i for i in items if _selector_matches(wanted, (i.get("metadata") or {}).get("labels") or {})]
        return {"apiVersion": api_version, "kind": f"{kind}List", "metadata": {}, "items": copy.deepcopy(items)}

    # -- server-side apply and stores ------------------------------------------------
    def _apply(
        self, key: tuple[str, str, str], api_version: str, kind: str, applied: Obj, manager: str, force: bool
    ) -> Obj:
        live = self.objects.get(key)
        owners = self.owners.setdefault(key, {})
        new_paths = _leaves(_owned_part(applied))
        if live is not None:
            current = _owned_part(live)
            conflicts = [
                (other, path)
                for other, paths in owners.items()
                if other != manager
                for path in paths & new_paths.keys()
                if _get(current, path) != new_paths[path]
            ]
            if conflicts and not force:
                causes = [
                    {"type": "FieldManagerConflict", "message": f'conflict with "{o}"', "field": "." + ".".join(p)}
                    for o, p in conflicts
                ]
                fields = ", ".join(c["field"] for c in causes)
                raise ApiError(
                    409,
                    "Conflict",
                    f'Apply failed with {len(conflicts)} conflict(s): conflict with "{conflicts[0][0]}": {fields}',
                    causes,
                )
            base = copy.deepcopy(live)
            for path in owners.get(manager, set()) - new_paths.keys():
                if not any(path in paths for other, paths in owners.items() if other != manager):
                    _delete(base, path)
            for other, paths in owners.items():
                if other != manager:
                    paths -= {p for p in new_paths if _get(current, p) != new_paths[p]}
        else:
            base = {}
        merged = merge_patch(base, {k: v for k, v in applied.items() if k not in ("status",)})
        owners[manager] = set(new_paths)
        return self._store(key, api_version, kind, merged, manager, apply=True)

    def _store(
        self, key: tuple[str, str, str], api_version: str, kind: str, obj: Obj, manager: str, apply: bool
    ) -> Obj:
        resource, ns, name = key
        live = self.objects.get(key)
        obj = copy.deepcopy(obj)
        obj["apiVersion"], obj["kind"] = api_version, kind
        meta = obj.setdefault("metadata", {})
        meta.update(name=name, namespace=ns)
        if live is None:
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        else:
            lm = live["metadata"]
            meta.update(uid=lm["uid"], creationTimestamp=lm["creationTimestamp"], generation=lm.get("generation", 1))
            if obj.get("spec") != live.get("spec"):
                meta["generation"] = lm.get("generation", 1) + 1
            if "status" in live:
                obj["status"] = live["status"]
        if not apply:
            owners = self.owners.setdefault(key, {})
            changed = {
                p for p, v in _leaves(_owned_part(obj)).items() if live is None or _get(_owned_part(live), p) != v
            }
            for paths in owners.values():
                paths -= changed
            owners.setdefault(manager, set()).update(changed)
        meta["resourceVersion"] = str(next(self._rv))
        meta["managedFields"] = [
            {
                "manager": m,
                "operation": "Apply" if m == manager and apply else "Update",
                "apiVersion": api_version,
                "fieldsType": "FieldsV1",
                "fieldsV1": {},
            }
            for m in sorted(self.owners.get(key, {}))
        ]
        if resource == "deployments":
            obj.setdefault("status", {})
            obj["spec"].setdefault("replicas", 1)
            obj["spec"].setdefault("progressDeadlineSeconds", 600)
            obj["spec"].setdefault("revisionHistoryLimit", 10)
        if resource == "services":
            obj.setdefault("spec", {}).setdefault("clusterIP", f"10.96.0.{len(self.objects) % 250 + 2}")
            obj.setdefault("status", {"loadBalancer": {}})
        if resource == "secrets":
            _secret_data(obj)
        if live is not None and {**obj, "metadata": {**meta, "resourceVersion": None}} == {
            **live,
            "metadata": {**live["metadata"], "resourceVersion": None},
        }:
            meta["resourceVersion"] = live["metadata"]["resourceVersion"]  # nothing changed: no new version
        self.objects[key] = obj
        return copy.deepcopy(obj)

    def _delete_object(self, key: tuple[str, str, str]) -> None:
        self.objects.pop(key, None)
        self.owners.pop(key, None)
        if key[0] == "deployments":
            for rs_key in [
                k
                for k, o in list(self.objects.items())
                if k[0] == "replicasets" and self._owner_name(o) == key[2] and k[1] == key[1]
            ]:
                self.objects.pop(rs_key, None)
            self.progress.pop((key[1], key[2]), None)

    @staticmethod
    def _owner_name(obj: Obj) -> str | None:
        refs = (obj.get("metadata") or {}).get("ownerReferences") or []
        return refs[0]["name"] if refs else None

    # -- controllers -------------------------------------------------------------------
    def _control_loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self._lock:
                    self._reconcile()
            except Exception as exc:  # noqa: BLE001 - a fake controller must keep running
                print(f"fake apiserver controller error: {type(exc).__name__}: {exc}")
            self._stop.wait(self.tick)

    def _reconcile(self) -> None:
        for key, dep in list(self.objects.items()):
            if key[0] == "deployments":
                self._reconcile_deployment(key[1], dep)
        wanted_rs = {(k[1], k[2]): o for k, o in list(self.objects.items()) if k[0] == "replicasets"}
        for pod in list(self.pods.values()):
            if (pod.namespace, pod.rs) not in wanted_rs:
                self._kill(pod)
        for (ns, rs_name), rs in wanted_rs.items():
            self._reconcile_pods(ns, rs_name, rs)
        self._retry_waiting_pods()
        self._refresh_pods()

    def _reconcile_deployment(self, ns: str, dep: Obj) -> None:
        name = dep["metadata"]["name"]
        spec = dep["spec"]
        template = spec["template"]
        tmpl_hash = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        owned = {
            k: o
            for k, o in list(self.objects.items())
            if k[0] == "replicasets" and k[1] == ns and self._owner_name(o) == name
        }
        revisions = [int(o["metadata"]["annotations"].get(REVISION, "0")) for o in owned.values()]
        new_key = ("replicasets", ns, f"{name}-{tmpl_hash}")
        generation = dep["metadata"]["generation"]
        if new_key not in owned:
            labels = {**(template.get("metadata") or {}).get("labels", {}), "pod-template-hash": tmpl_hash}
            rs_template = copy.deepcopy(template)
            rs_template.setdefault("metadata", {})["labels"] = labels
            self.objects[new_key] = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": new_key[2],
                    "namespace": ns,
                    "uid": str(uuid.uuid4()),
                    "labels": labels,
                    "creationTimestamp": _now(),
                    "resourceVersion": str(next(self._rv)),
                    "annotations": {REVISION: str(max(revisions, default=0) + 1)},
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "Deployment",
                            "name": name,
                            "uid": dep["metadata"]["uid"],
                            "controller": True,
                        }
                    ],
                },
                "spec": {"replicas": 0, "selector": {"matchLabels": labels}, "template": rs_template},
                "status": {"replicas": 0, "readyReplicas": 0},
            }
            owned[new_key] = self.objects[new_key]
        elif dep["status"].get("observedGeneration") != generation:
            current = int(owned[new_key]["metadata"]["annotations"][REVISION])
            if current != max(revisions):  # an old template came back: it becomes the newest revision
                owned[new_key]["metadata"]["annotations"][REVISION] = str(max(revisions) + 1)
        desired = int(spec.get("replicas", 1))
        new_rs = owned[new_key]
        new_rs["spec"]["replicas"] = desired
        new_ready = sum(1 for p in self.pods.values() if p.namespace == ns and p.rs == new_key[2] and p.ready)
        olds = [o for k, o in owned.items() if k != new_key]
        if new_ready >= desired:
            for old in olds:
                old["spec"]["replicas"] = 0
        mine = [p for p in self.pods.values() if p.namespace == ns and p.rs in {k[2] for k in owned}]
        updated = [p for p in mine if p.rs == new_key[2]]
        ready = [p for p in mine if p.ready]
        old_pods = [p for p in mine if p.rs != new_key[2]]
        # Progress: a new generation starts the clock; each newly ready pod resets it.
        prog_key = (ns, name)
        gen, since, seen_ready = self.progress.get(prog_key, (0, time.monotonic(), 0))
        if gen != generation:
            gen, since, seen_ready = generation, time.monotonic(), new_ready
        elif new_ready > seen_ready:
            since, seen_ready = time.monotonic(), new_ready
        self.progress[prog_key] = (gen, since, seen_ready)
        complete = new_ready >= desired and not old_pods and len(updated) == desired
        conditions = dep["status"].get("conditions") or []
        previous = {c["type"]: c for c in conditions}
        if complete:
            progressing = ("True", "NewReplicaSetAvailable", f'ReplicaSet "{new_key[2]}" has successfully progressed.')
        elif previous.get("Progressing", {}).get("reason") == "ProgressDeadlineExceeded" and gen == dep["status"].get(
            "observedGeneration"
        ):
            progressing = ("False", "ProgressDeadlineExceeded", previous["Progressing"]["message"])
        elif time.monotonic() - since > float(spec.get("progressDeadlineSeconds", 600)):
            progressing = ("False", "ProgressDeadlineExceeded", f'ReplicaSet "{new_key[2]}" has timed out progressing.')
        else:
            progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{new_key[2]}" is progressing.')
        available = "True" if len(ready) >= desired else "False"
        now = _now()
        dep["status"] = {
            "observedGeneration": generation,
            "replicas": len(mine),
            "updatedReplicas": len(updated),
            "readyReplicas": len(ready),
            "availableReplicas": len(ready),
            "unavailableReplicas": max(0, len(mine) - len(ready)),
            "conditions": [
                {
                    "type": "Available",
                    "status": available,
                    "reason": "MinimumReplicasAvailable" if available == "True" else "MinimumReplicasUnavailable",
                    "message": "Deployment availability",
                    "lastUpdateTime": now,
                    "lastTransitionTime": now,
                },
                {
                    "type": "Progressing",
                    "status": progressing[0],
                    "reason": progressing[1],
                    "message": progressing[2],
                    "lastUpdateTime": now,
                    "lastTransitionTime": now,
                },
            ],
        }
        for rs in owned.values():
            rs_name = rs["metadata"]["name"]
            pods = [p for p in self.pods.values() if p.namespace == ns and p.rs == rs_name]
            rs["status"] = {"replicas": len(pods), "readyReplicas": sum(p.ready for p in pods), "observedGeneration": 1}
        limit = int(spec.get("revisionHistoryLimit", 10))
        idle = sorted(
            (o for o in olds if o["spec"]["replicas"] == 0), key=lambda o: int(o["metadata"]["annotations"][REVISION])
        )
        for old in idle[: max(0, len(idle) - limit)]:
            self.objects.pop(("replicasets", ns, old["metadata"]["name"]), None)

    def _reconcile_pods(self, ns: str, rs_name: str, rs: Obj) -> None:
        pods = sorted((p for p in self.pods.values() if p.namespace == ns and p.rs == rs_name), key=lambda p: p.created)
        want = int(rs["spec"]["replicas"])
        for pod in pods[want:]:
            self._kill(pod)
        for _ in range(want - len(pods)):
            self._start_pod(ns, rs_name, rs)

    def _start_pod(self, ns: str, rs_name: str, rs: Obj) -> None:
        template = rs["spec"]["template"]
        name = f"{rs_name}-{uuid.uuid4().hex[:5]}"
        pod = _Pod(
            name=name,
            namespace=ns,
            rs=rs_name,
            labels=dict(template["metadata"]["labels"]),
            container_id=None,
            host_port=None,
        )
        self.pods[name] = pod
        self._run_pod(pod, template)

    def _run_pod(self, pod: _Pod, template: Obj) -> None:
        """Pull, check, mount and start the pod's container, as the kubelet does (once per try)."""
        spec = template["spec"]
        container = spec["containers"][0]
        client = dockerutil.client()
        image = container["image"]
        try:
            image_obj = self._image(image, self._pull_credentials(pod.namespace, spec, image))
        except docker.errors.APIError as exc:
            reason = getattr(exc, "explanation", None) or str(exc)
            self._back_off(pod, "ErrImagePull", f'failed to pull image "{image}": {reason}'[:300])
            return
        user = (image_obj.attrs.get("Config") or {}).get("User") or ""
        if (spec.get("securityContext") or {}).get("runAsNonRoot") and user.split(":")[0] in ("", "0", "root"):
            pod.waiting, pod.message = (
                "CreateContainerConfigError",
                "container has runAsNonRoot and image will run as root",
            )
            return
        try:
            binds = self._mount_secrets(pod, spec, container)
        except _MountError as exc:
            self._back_off(pod, "ContainerCreating", str(exc))
            return
        port = container["ports"][0]["containerPort"]
        tmpfs = {m["mountPath"]: "" for m in container.get("volumeMounts", [])
                 if any(v["name"] == m["name"] and "emptyDir" in v for v in spec.get("volumes", []))}  # fmt: skip
        read_only = bool((container.get("securityContext") or {}).get("readOnlyRootFilesystem"))
        created = client.containers.run(
            image,
            detach=True,
            name=f"fakek8s-{self.id}-{pod.name}",
            environment={e["name"]: e.get("value", "") for e in container.get("env", [])},
            ports={f"{port}/tcp": ("127.0.0.1", None)},
            labels={SERVER_LABEL: self.id, POD_LABEL: pod.name},
            read_only=read_only,
            tmpfs=tmpfs,
            volumes=binds,
        )
        pod.container_id = created.id
        pod.waiting, pod.message, pod.retry_at = None, "", 0.0

    @staticmethod
    def _back_off(pod: _Pod, reason: str, message: str) -> None:
        pod.waiting, pod.message = reason, message
        pod.backoff = min(max(pod.backoff * 2, 1.0), 5.0)
        pod.retry_at = time.monotonic() + pod.backoff

    def _retry_waiting_pods(self) -> None:
        """Pods whose pull or mount failed: ErrImagePull turns into ImagePullBackOff, then a new try."""
        now = time.monotonic()
        for pod in list(self.pods.values()):
            if pod.container_id is not None or not pod.retry_at:
                continue
            if now < pod.retry_at:
                if pod.waiting == "ErrImagePull":
                    pod.waiting = "ImagePullBackOff"
                    pod.message = "Back-off pulling image: " + pod.message
                continue
            rs = self.objects.get(("replicasets", pod.namespace, pod.rs))
            if rs is not None:
                self._run_pod(pod, rs["spec"]["template"])

    def _pull_credentials(self, ns: str, spec: Obj, image: str) -> list[dict[str, str]]:
        """The auth_configs a kubelet would try for ``image``, in order ({} is an anonymous pull).

        A pod naming imagePullSecrets pulls with the entries of those dockerconfigjson
        Secrets whose host matches the image's registry (a missing Secret is skipped,
        as the kubelet does); a pod naming none with the server's ``pull_auth``.
        """
        names = [ref.get("name") for ref in spec.get("imagePullSecrets") or []]
        if not names:
            return [self.pull_auth] if self.pull_auth else [{}]
        host = _image_registry(image)
        found: list[dict[str, str]] = []
        for name in names:
            secret = self.objects.get(("secrets", ns, name or ""))
            if secret is None or secret.get("type") != DOCKERCONFIGJSON:
                continue
            config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
            for key, entry in (config.get("auths") or {}).items():
                if _registry_host(key) != host or not isinstance(entry, dict):
                    continue
                username, password = entry.get("username") or "", entry.get("password") or ""
                if not (username and password) and entry.get("auth"):
                    username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                found.append({"username": username, "password": password, "serveraddress": host})
        return found or [{}]

    def _mount_secrets(self, pod: _Pod, spec: Obj, container: Obj) -> dict[str, dict[str, str]]:
        """Write each secret volume's files into a private folder; the container gets them read-only."""
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        binds: dict[str, dict[str, str]] = {}
        for mount in container.get("volumeMounts") or []:
            source = (volumes.get(mount["name"]) or {}).get("secret")
            if source is not None:
                folder = self._secret_volume(pod, mount["name"], source)
                binds[str(folder)] = {"bind": mount["mountPath"], "mode": "ro"}
        return binds

    def _secret_volume(self, pod: _Pod, volume: str, source: Obj) -> Path:
        secret_name = str(source.get("secretName", ""))
        secret = self.objects.get(("secrets", pod.namespace, secret_name))
        optional = bool(source.get("optional"))
        failed = f'MountVolume.SetUp failed for volume "{volume}"'
        if secret is None and not optional:
            raise _MountError(f'{failed} : secret "{secret_name}" not found')
        data = {k: base64.b64decode(v) for k, v in ((secret or {}).get("data") or {}).items()}
        mode = int(source.get("defaultMode", 0o644))
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        files = [(i["path"], i["key"], int(i.get("mode", mode))) for i in items]
        folder = self._volumes / pod.name / volume
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for path, key, file_mode in files:
            if key not in data:
                if optional:
                    continue
                raise _MountError(f"{failed} : references non-existent secret key: {key}")
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data[key])
            target.chmod(file_mode)
        for sub in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
            sub.chmod(0o755)  # traversable by the pod's (non-root) user; writable by nobody in the pod
        return folder

    def _image(self, ref: str, credentials: list[dict[str, str]]) -> Any:
        """The engine's copy of ``ref``, else pulled with the first of ``credentials`` that works."""
        client = dockerutil.client()
        try:
            return client.images.get(ref)
        except docker.errors.ImageNotFound:
            pass
        repo, _, digest = ref.partition("@")
        failure: docker.errors.APIError | None = None
        for auth in credentials:
            try:
                client.api.pull(repo, tag=digest or None, auth_config=auth)
                return client.images.get(ref)
            except docker.errors.APIError as exc:
                failure = exc
        assert failure is not None
        raise failure

    def _kill(self, pod: _Pod) -> None:
        self.pods.pop(pod.name, None)
        shutil.rmtree(self._volumes / pod.name, ignore_errors=True)
        if pod.container_id:
            with contextlib.suppress(docker.errors.APIError):  # gone, or already being removed
                dockerutil.client().containers.get(pod.container_id).remove(force=True)

    def _refresh_pods(self) -> None:
        client = dockerutil.client()
        for pod in list(self.pods.values()):
            if pod.container_id is None:
                continue
            try:
                c = client.containers.get(pod.container_id)
            except docker.errors.NotFound:
                pod.ready, pod.waiting = False, "ContainerMissing"
                continue
            if c.status in ("exited", "dead"):
                pod.ready, pod.waiting, pod.restarts = False, "CrashLoopBackOff", pod.restarts + 1
                pod.message = c.logs(tail=5).decode(errors="replace")[-300:]
                c.start()  # the kubelet restarts it
                continue
            if pod.host_port is None:
                c.reload()
                bindings = next(iter((c.attrs["NetworkSettings"]["Ports"] or {}).values()), None) or []
                pod.host_port = int(bindings[0]["HostPort"]) if bindings else None
            pod.ready = self._probe(pod)
            if pod.ready:
                pod.waiting = None

    def _probe(self, pod: _Pod) -> bool:
        rs = self.objects.get(("replicasets", pod.namespace, pod.rs))
        if rs is None or pod.host_port is None:
            return False
        probe = (rs["spec"]["template"]["spec"]["containers"][0].get("readinessProbe") or {}).get("httpGet")
        if not probe:
            return True
        try:
            return (
                requests.get(f"http://127.0.0.1:{pod.host_port}{probe.get('path', '/')}", timeout=1).status_code < 400
            )
        except requests.RequestException:
            return False

    def _pod_object(self, pod: _Pod) -> Obj:
        rs = self.objects.get(("replicasets", pod.namespace, pod.rs)) or {}
        image = (
            ((rs.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers", [{}])[0].get("image", "")
        )
        state: Obj = (
            {"waiting": {"reason": pod.waiting, "message": pod.message}}
            if pod.waiting
            else {"running": {"startedAt": pod.created}}
        )
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod.name,
                "namespace": pod.namespace,
                "labels": pod.labels,
                "creationTimestamp": pod.created,
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": pod.rs, "uid": "x", "controller": True}
                ],
            },
            "spec": {"containers": [{"name": "app", "image": image}]},
            "status": {
                "phase": "Running" if pod.container_id else "Pending",
                "conditions": [{"type": "Ready", "status": "True" if pod.ready else "False"}],
                "containerStatuses": [{"name": "app", "ready": pod.ready, "restartCount": pod.restarts, "image": image,
                                       "imageID": image, "state": state}],
            },
        }  # fmt: skip

    # -- service proxy -----------------------------------------------------------------------
    def _proxy(
        self, method: str, ns: str, name: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            svc = self.objects.get(("services", ns, name))
            if svc is None:
                raise ApiError(404, "NotFound", f'services "{name}" not found')
            selector = svc["spec"].get("selector") or {}
            ready = [
                p for p in self.pods.values() if p.namespace == ns and p.ready and _selector_matches(selector, p.labels)
            ]
        if not ready:
            raise ApiError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
        pod = ready[next(self._rr) % len(ready)]
        target = f"http://127.0.0.1:{pod.host_port}{path}" + (f"?{query}" if query else "")
        forward = {k: v for k, v in headers.items() if k.lower() in ("content-type", "accept")}
        try:
            resp = requests.request(method, target, data=body or None, headers=forward, timeout=30)
        except requests.RequestException as exc:
            raise ApiError(503, "ServiceUnavailable", f"error trying to reach service: {type(exc).__name__}") from None
        return (
            resp.status_code,
            {"Content-Type": resp.headers.get("Content-Type", "application/octet-stream")},
            resp.content,
        )
