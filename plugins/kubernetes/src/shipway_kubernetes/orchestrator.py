"""The ``kubernetes`` orchestrator: any cluster a kubeconfig reaches.

deploy: render → ``shipway_render_manifests`` hook → extra manifests → patches
→ validate (official schemas) → the Secrets shipway keeps (registry pull
credentials, the app's secret files: applied, never rendered nor logged)
→ server-side apply (field manager ``shipway``) → wait for the rollout as
``kubectl rollout status`` does. rollback: the previous ReplicaSet revision's
pod template goes back into the Deployment, as ``kubectl rollout undo`` does.
endpoint: a LoadBalancer address, else a local port forwarded through the API
server's service proxy.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from shipway import labels as L
from shipway import retry
from shipway.backends.base import BackendSettings, Orchestrator, remember_failed
from shipway.doctor import DoctorCheck
from shipway.domain import Deployment, ImageRef, Release
from shipway.errors import AuthError, BackendError, ConfigError, LockedError, NotFound
from shipway_kubernetes import rawapi, render, secretobjects
from shipway_kubernetes.proxy import ServiceProxy

FIELD_MANAGER = "shipway"
STATE_MANAGER = "shipway-release-state"
FAILED_ANNOTATION = "shipway.io/failed-digests"
_PLURALS = {
    "Deployment": ("apis/apps/v1", "deployments"),
    "Service": ("api/v1", "services"),
    "ConfigMap": ("api/v1", "configmaps"),
    "Secret": ("api/v1", "secrets"),
    "ServiceAccount": ("api/v1", "serviceaccounts"),
    "HorizontalPodAutoscaler": ("apis/autoscaling/v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("apis/policy/v1", "poddisruptionbudgets"),
    "Ingress": ("apis/networking.k8s.io/v1", "ingresses"),
    "NetworkPolicy": ("apis/networking.k8s.io/v1", "networkpolicies"),
}


class AutoscaleSettings(BaseModel):
    """Render a HorizontalPodAutoscaler (the HPA then owns the replica count)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)  # compiled with the settings that use it
    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(3, ge=1)
    cpu_percent: int = Field(70, ge=1, le=100)


class KubernetesSettings(BackendSettings):
    """``orchestrator: {kind: kubernetes, namespace: ml, ...}``."""

    kind: str = "kubernetes"
    kubeconfig: str | None = Field(None, description="Default: $KUBECONFIG, then ~/.kube/config")
    context: str | None = Field(None, description="kubeconfig context; default: the current one")
    namespace: str = Field("default", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    kubernetes_version: str = Field("1.30", pattern=r"^1\.\d+$", description="Schemas manifests are validated against")
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    service_port: int = Field(80, ge=1, le=65535)
    deadline: float = Field(300, gt=0, description="progressDeadlineSeconds of the Deployment")
    resources: dict[str, dict[str, str]] | None = Field(None, description="Container requests/limits")
    env_from_secrets: list[str] = Field(default_factory=list)
    env_from_configmaps: list[str] = Field(default_factory=list)
    image_pull_secret: str | None = None
    read_only_root: bool = True
    revision_history: int = Field(5, ge=1, le=50)
    lease_seconds: int = Field(
        30, ge=3, le=3600, description="Release Lease duration; renewed while held, taken over once a holder stops"
    )
    autoscale: AutoscaleSettings | None = None
    manifests: list[str] = Field(default_factory=list, description="Extra manifest files, applied too")
    patches: list[str] = Field(default_factory=list, description="JSON merge patches for rendered manifests")


def _with_retries(api_client: Any, policy: retry.RetrySettings) -> Any:
    """``api_client`` whose pool retries GETs (and connections that could not open) as ``policy`` says.

    Only reads and polls are retried: a write the server may have applied is
    never sent twice (a Lease PUT, a server-side apply).
    """
    from kubernetes.client import rest

    api_client.configuration.retries = retry.urllib3_retry(policy, methods=("GET", "HEAD"))
    api_client.rest_client = rest.RESTClientObject(api_client.configuration)
    return api_client


LEASE_RETRY_SECONDS = 1.0
"""How soon a release Lease renewal that failed is tried again."""
LEASE_MARGIN_SECONDS = 1.0
"""How long before a release Lease would expire its holder stops writing, unless it renewed it: room for
a write already sent, and for another runner's clock running ahead (at least a tenth of the Lease)."""


@dataclass
class _HeldLease:
    """A release Lease this process holds: when it was last renewed, and whether it was lost."""

    name: str
    path: str
    holder: str
    seconds: int
    renewed: float
    """``time.monotonic()`` at or before the renewTime the Lease carries."""
    lost: str | None = None

    def time_left(self) -> float:
        """Seconds the holder may still write (and renew) before the margin ahead of expiry."""
        margin = max(LEASE_MARGIN_SECONDS, self.seconds / 10)
        return self.renewed + self.seconds - margin - time.monotonic()

    def lost_because(self) -> str | None:
        """Why the holder may no longer write (None: it may)."""
        if self.lost is None and self.time_left() <= 0:
            return f"the release Lease {self.name} ran out: not renewed within lease_seconds"
        return self.lost


class RolloutFailed(BackendError):
    """The Deployment did not complete its rollout."""


class Conflict(BackendError):
    """The API server answered 409 (an object exists, or another field manager owns a field)."""


class Refused(AuthError):
    """The API server refused the credentials (401) or what they may do (403)."""


class KubernetesOrchestrator(Orchestrator):
    """Rolling, verified releases on any Kubernetes cluster."""

    kind = "kubernetes"
    Settings: ClassVar[type[BackendSettings]] = KubernetesSettings
    settings: KubernetesSettings

    def __init__(self, settings: BackendSettings, context: Any = None) -> None:
        super().__init__(settings, context)
        self._client: Any = None
        self._proxies: dict[str, ServiceProxy] = {}
        self._lease: _HeldLease | None = None
        """The release Lease the running :meth:`lock` holds: writes to the cluster stop when it is lost."""

    # -- connection ----------------------------------------------------------------------
    def describe(self) -> str:
        return f"kubernetes orchestrator (namespace {self.settings.namespace})"

    def doctor_checks(self) -> list[DoctorCheck]:
        """`shipway doctor`: the Secrets and ConfigMaps shipway.yaml names exist in the namespace.

        Pods that name a missing pull secret or env source never start; a release would
        only find out at its progress deadline.
        """
        s, ns = self.settings, self.settings.namespace
        wanted = [("secrets", name, "image_pull_secret") for name in filter(None, [s.image_pull_secret])]
        wanted += [("secrets", name, "env_from_secrets") for name in s.env_from_secrets]
        wanted += [("configmaps", name, "env_from_configmaps") for name in s.env_from_configmaps]
        checks = []
        for plural, name, key in wanted:
            kind = "Secret" if plural == "secrets" else "ConfigMap"
            found = self._get(f"/api/v1/namespaces/{ns}/{plural}/{name}") is not None
            how = (
                f"kubectl -n {ns} create secret docker-registry {name} --docker-server=... "
                if key == "image_pull_secret"
                else f"kubectl -n {ns} create {kind.lower()} {name} --from-env-file=..."
            )
            detail = f"{kind} {ns}/{name} (orchestrator.{key})" + ("" if found else " not found")
            checks.append(DoctorCheck(f"k8s {kind.lower()}", found, detail, f"create it: {how.strip()}"))
        return checks

    def _api_client(self) -> Any:
        """An ApiClient from the kubeconfig (AKS overrides this to fetch credentials from Azure)."""
        from kubernetes import config

        path = self.settings.kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
        path = str(Path(path).expanduser() if Path(path).is_absolute() else self.context.root / path)
        if not Path(path).is_file():
            raise ConfigError(f"orchestrator.kubeconfig: {path} not found (set KUBECONFIG or orchestrator.kubeconfig)")
        try:
            return config.new_client_from_config(config_file=path, context=self.settings.context)
        except config.ConfigException as exc:
            raise ConfigError(f"orchestrator: kubeconfig {path}: {exc}") from None

    @property
    def client(self) -> Any:
        """The ApiClient, with the section's ``retries`` policy on its connection pool (reads only)."""
        if self._client is None:
            self._client = _with_retries(self._api_client(), self.settings.retries)
        return self._client

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str | None = None,
        query: dict[str, Any] | None = None,
        within: float | None = None,
    ) -> Any:
        """One API call through the official client (its auth, TLS and kubeconfig handling).

        ``within``: one try, instead of the ``retries`` policy, whose answer
        must start within that many seconds (a stalled server; not one that
        trickles its answer byte by byte). A write after the release Lease was
        lost raises LockedError: another release may be changing the app then.
        """
        from urllib3 import Timeout
        from urllib3.exceptions import HTTPError

        lease = self._lease
        if lease is not None and method != "GET" and path != lease.path and (why := lease.lost_because()):
            raise LockedError(f"{why}; stopped before {method} {path}")
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            policy = self.settings.retries
            timeout = Timeout(connect=policy.connect_timeout, read=policy.read_timeout)
            tries = None
            if within is not None:
                timeout, tries = Timeout(total=max(within, 0.1)), False
            status, data, _ = rawapi.send(
                self.client, method, path, list((query or {}).items()), headers, body, timeout=timeout, retries=tries
            )
        except HTTPError as exc:
            host = self.client.configuration.host
            raise BackendError(f"cannot reach the Kubernetes API at {host}: {type(exc).__name__}") from None
        if status >= 400:
            message = _status_message(data) or f"HTTP {status}"
            if status == 404:
                raise NotFound(f"{path}: {message}")
            if status in (401, 403):
                what = "the credentials" if status == 401 else "this request for the kubeconfig's user"
                fix = (
                    "check the kubeconfig user's token or certificate (orchestrator.kubeconfig, orchestrator.context)"
                    if status == 401
                    else f"grant the user rights on namespace {self.settings.namespace} (a Role and RoleBinding)"
                )
                host = self.client.configuration.host
                raise Refused(f"the Kubernetes API at {host} refused {what} ({status}): {message}; {fix}")
            if status == 409:
                raise Conflict(f"conflict on {path}: {message}")
            if status in retry.RETRY_STATUSES and method in ("GET", "HEAD"):
                raise BackendError(
                    f"the Kubernetes API at {self.client.configuration.host} answered {status} to {method} {path}: "
                    f"{message} ({self.settings.retries.attempts} tries; retries.attempts sets how many)"
                )
            raise BackendError(f"{method} {path}: {status} {message}")
        return json.loads(data) if data else {}

    def _get(self, path: str) -> Any | None:
        try:
            return self.request("GET", path)
        except NotFound:
            return None

    def _base(self, kind: str, namespace: str) -> str:
        if kind not in _PLURALS:
            raise ConfigError(
                f"orchestrator.manifests: kind {kind} is not supported (supported: {', '.join(_PLURALS)})"
            )
        group, plural = _PLURALS[kind]
        return f"/{group}/namespaces/{namespace}/{plural}"

    def apply(self, manifest: dict[str, Any]) -> Any:
        """Server-side apply of one manifest as field manager ``shipway``."""
        meta = manifest["metadata"]
        path = f"{self._base(manifest['kind'], meta.get('namespace', self.settings.namespace))}/{meta['name']}"
        return self.request(
            "PATCH", path, body=manifest, content_type="application/apply-patch+yaml",
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
        )  # fmt: skip

    # -- manifests -------------------------------------------------------------------------
    def manifests(self, release: Release, pull_secret: str | None = None) -> list[dict[str, Any]]:
        """Everything deploy would send but the Secrets, validated: rendered, hooked, extra files, patches.

        Secrets are never part of this list (it is what ``render`` and plans show):
        the Deployment refers to them by name only.
        """
        secretobjects.check_names(release)
        out = render.render(release, self.settings, pull_secret=pull_secret)
        if self.context.hook is not None:
            self.context.hook.shipway_render_manifests(release=release, manifests=out)
        for name in self.settings.manifests:
            out.extend(render.load_documents(self.context.root / name))
        for name in self.settings.patches:
            out = render.apply_patches(out, render.load_documents(self.context.root / name), name)
        for manifest in out:
            manifest.setdefault("metadata", {}).setdefault("namespace", self.settings.namespace)
        render.validate(out, self.settings.kubernetes_version)
        return out

    # -- contract ------------------------------------------------------------------------------
    def _deployment_path(self, app: str, environment: str) -> str:
        return f"{self._base('Deployment', self.settings.namespace)}/{render.object_name(app, environment)}"

    def deploy(self, release: Release, auth: dict[str, str] | None = None) -> Deployment:
        """Apply the Secrets shipway keeps, then the manifests (Deployment last), then wait for the rollout.

        With ``auth`` and no ``image_pull_secret`` named, the registry's credentials go
        into the dockerconfigjson Secret ``<name>-pull`` on every deploy (so a token that
        expires, as ECR's and ACR's do, is always fresh) and the pods pull with it.
        """
        ns = self.settings.namespace
        ours = bool(auth) and not self.settings.image_pull_secret
        pull_name = render.pull_secret_name(release.app, release.environment)
        manifests = self.manifests(release, pull_secret=pull_name if ours else None)
        deployment = next(m for m in manifests if m["kind"] == "Deployment")
        applied: list[str] = []
        if ours and auth:
            self._apply_secret(secretobjects.pull_secret(release, auth, ns))
            applied.append(f"Secret/{pull_name}")
        if release.secrets:
            stored = self._apply_secret(secretobjects.app_secret(release, ns))
            applied.append(f"Secret/{stored['metadata']['name']}")
            # A changed value rolls the pods: the Secret's resourceVersion changes only when its content does.
            template_meta = deployment["spec"]["template"].setdefault("metadata", {})
            template_meta["annotations"] = {
                **(template_meta.get("annotations") or {}),
                render.SECRETS_VERSION: str(stored["metadata"]["resourceVersion"]),
            }
        for manifest in sorted(manifests, key=lambda m: m["kind"] == "Deployment"):  # Deployment last
            self.apply(manifest)
        applied += [m["kind"] + "/" + m["metadata"]["name"] for m in manifests]
        self.context.reporter.info(f"  applied {', '.join(applied)}")
        self.wait(
            release.app,
            release.environment,
            int(deployment["spec"].get("progressDeadlineSeconds", self.settings.deadline)),
        )
        # Only once no new pod needs them: Secrets of ours this release no longer uses.
        if not ours:
            self._delete_own_secret(pull_name)
        if not release.secrets:
            self._delete_own_secret(render.secrets_name(release.app, release.environment))
        return self.status(release.app, release.environment)

    def _secret_path(self, name: str) -> str:
        return f"{self._base('Secret', self.settings.namespace)}/{name}"

    def _apply_secret(self, manifest: dict[str, Any]) -> Any:
        """Server-side apply of a Secret shipway keeps; refuses to take over someone else's; never shows values."""
        name = manifest["metadata"]["name"]
        live = self._get(self._secret_path(name))
        labels = ((live or {}).get("metadata") or {}).get("labels") or {}
        if live is not None and labels.get("app.kubernetes.io/managed-by") != render.MANAGED_BY:
            raise ConfigError(
                f"Secret {self.settings.namespace}/{name} exists and is not shipway's: "
                "rename it, or name it in orchestrator.image_pull_secret if it holds pull credentials"
            )
        try:
            return self.apply(manifest)
        except BackendError as exc:
            raise type(exc)(secretobjects.scrub(str(exc), secretobjects.secret_values(manifest))) from None

    def _delete_own_secret(self, name: str) -> None:
        live = self._get(self._secret_path(name))
        labels = ((live or {}).get("metadata") or {}).get("labels") or {}
        if live is not None and labels.get("app.kubernetes.io/managed-by") == render.MANAGED_BY:
            with suppress(NotFound):
                self.request("DELETE", self._secret_path(name))

    def wait(self, app: str, environment: str, deadline: float) -> None:
        """Wait for the rollout like ``kubectl rollout status``; RolloutFailed with the pods' reasons."""
        path = self._deployment_path(app, environment)
        end = time.monotonic() + deadline + 30
        last = ""
        while True:
            dep = self.request("GET", path)
            done, message = rollout_state(dep)
            if message != last:
                self.context.reporter.info(f"  rollout: {message}")
                last = message
            if done:
                return
            if "ProgressDeadlineExceeded" in message or time.monotonic() > end:
                raise RolloutFailed(
                    f"rollout of {path.rsplit('/', 1)[1]} failed: {message}{self._pod_problems(app, environment)}"
                )
            time.sleep(1.0)

    def _pod_problems(self, app: str, environment: str) -> str:
        selector = ",".join(f"{k}={v}" for k, v in render.selector_for(app, environment).items())
        pods = self.request(
            "GET", f"/api/v1/namespaces/{self.settings.namespace}/pods", query={"labelSelector": selector}
        )
        problems = []
        for pod in pods.get("items", []):
            for cs in pod.get("status", {}).get("containerStatuses", []):
                waiting = (cs.get("state") or {}).get("waiting")
                if waiting:
                    problems.append(
                        f"{pod['metadata']['name']}: {waiting.get('reason')} {waiting.get('message', '')[:120]}".strip()
                    )
        return ("\n  " + "\n  ".join(problems[:5])) if problems else ""

    def _revisions(self, app: str, environment: str, dep: dict[str, Any]) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in render.selector_for(app, environment).items())
        found = self.request("GET", self._base_rs(), query={"labelSelector": selector})
        mine = [
            rs
            for rs in found.get("items", [])
            if any(r.get("uid") == dep["metadata"]["uid"] for r in rs["metadata"].get("ownerReferences", []))
        ]
        return sorted(mine, key=lambda rs: int(rs["metadata"].get("annotations", {}).get(render.REVISION, "0")))

    def _base_rs(self) -> str:
        return f"/apis/apps/v1/namespaces/{self.settings.namespace}/replicasets"

    def status(self, app: str, environment: str = "default") -> Deployment:
        dep = self._get(self._deployment_path(app, environment))
        if dep is None:
            return Deployment(app=app, environment=environment, state="absent", message="never deployed")
        revisions = self._revisions(app, environment, dep)
        image = _image(dep["spec"]["template"])
        current_rev = next((rs for rs in reversed(revisions) if _image(rs["spec"]["template"]) == image), None)
        previous = next(
            (
                rs
                for rs in reversed(revisions)
                if current_rev is not None and _rev(rs) < _rev(current_rev) and _image(rs["spec"]["template"]) != image
            ),
            None,
        )
        done, message = rollout_state(dep)
        failed = "ProgressDeadlineExceeded" in message
        annotations = dep["spec"]["template"].get("metadata", {}).get("annotations", {})
        trace = {
            L.REVISION: annotations.get(f"{render.ANNOTATION_PREFIX}commit", ""),
            L.MODEL_NAME: annotations.get(f"{render.ANNOTATION_PREFIX}model-name", ""),
            L.MODEL_VERSION: annotations.get(f"{render.ANNOTATION_PREFIX}model-version", ""),
            L.MODEL_DIGEST: annotations.get(f"{render.ANNOTATION_PREFIX}model-digest", ""),
        }
        st = dep.get("status", {})
        selector = ",".join(f"{k}={v}" for k, v in render.selector_for(app, environment).items())
        pods = self.request(
            "GET", f"/api/v1/namespaces/{self.settings.namespace}/pods", query={"labelSelector": selector}
        )
        running = [
            cs.get("imageID", "").rsplit("@", 1)[-1]
            for pod in pods.get("items", [])
            for cs in pod.get("status", {}).get("containerStatuses", [])
            if cs.get("ready") and "@" in cs.get("imageID", "")
        ]
        return Deployment(
            app=app,
            environment=environment,
            image=ImageRef.parse(image) if image else None,
            state="healthy" if done else ("failed" if failed else "progressing"),
            replicas_desired=int(dep["spec"].get("replicas", 1)),
            replicas_ready=int(st.get("readyReplicas", 0)),
            running_digests=running,
            revision=_rev(current_rev) if current_rev else 0,
            previous_image=ImageRef.parse(_image(previous["spec"]["template"])) if previous else None,
            labels={k: v for k, v in trace.items() if v},
            message=message,
        )

    def rollback(self, app: str, environment: str = "default") -> Deployment:
        path = self._deployment_path(app, environment)
        dep = self._get(path)
        if dep is None:
            raise NotFound(f"{app} ({environment}) has never been deployed")
        current_image = _image(dep["spec"]["template"])
        revisions = self._revisions(app, environment, dep)
        previous = next((rs for rs in reversed(revisions) if _image(rs["spec"]["template"]) != current_image), None)
        if previous is None:
            raise NotFound(f"{app} ({environment}) has no previous revision to roll back to")
        template = json.loads(json.dumps(previous["spec"]["template"]))
        template["metadata"]["labels"].pop("pod-template-hash", None)
        body = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": dep["metadata"]["name"], "namespace": self.settings.namespace,
                         "annotations": template["metadata"].get("annotations", {})},
            "spec": {"template": template},
        }  # fmt: skip
        self.request("PATCH", path, body=body, content_type="application/strategic-merge-patch+json",
                     query={"fieldManager": FIELD_MANAGER})  # fmt: skip
        self.context.reporter.info(f"  rolling back to revision {_rev(previous)} ({_image(template)})")
        self.wait(app, environment, float(dep["spec"].get("progressDeadlineSeconds", self.settings.deadline)))
        return self.status(app, environment)

    def endpoint(self, app: str, environment: str = "default") -> str:
        name = render.object_name(app, environment)
        svc = self._get(f"{self._base('Service', self.settings.namespace)}/{name}")
        if svc is None:
            raise NotFound(f"service {name} does not exist in namespace {self.settings.namespace}")
        port = svc["spec"]["ports"][0]["port"]
        for ingress in (svc.get("status", {}).get("loadBalancer", {}) or {}).get("ingress", []) or []:
            host = ingress.get("ip") or ingress.get("hostname")
            if host:
                return f"http://{host}:{port}"
        key = f"{self.settings.namespace}/{name}:{port}"
        if key not in self._proxies:
            base = f"/api/v1/namespaces/{self.settings.namespace}/services/{name}:{port}/proxy"
            self._proxies[key] = ServiceProxy(self.client, base).start()
        return self._proxies[key].url

    def failed_digests(self, app: str, environment: str = "default") -> dict[str, str]:
        """Kept in the Deployment's ``shipway.io/failed-digests`` annotation, which every runner sees."""
        dep = self._get(self._deployment_path(app, environment))
        raw = ((dep or {}).get("metadata", {}).get("annotations") or {}).get(FAILED_ANNOTATION)
        try:
            return dict(json.loads(raw)) if raw else {}
        except ValueError:
            return {}

    def mark_failed(self, app: str, environment: str, digest: str, reason: str) -> None:
        kept = remember_failed(self.failed_digests(app, environment), digest, reason)
        body = {"metadata": {"annotations": {FAILED_ANNOTATION: json.dumps(kept)}}}
        # Its own field manager, so shipway's next apply does not drop it.
        with contextlib.suppress(NotFound):
            self.request(
                "PATCH",
                self._deployment_path(app, environment),
                body=body,
                content_type="application/merge-patch+json",
                query={"fieldManager": STATE_MANAGER},
            )

    @contextmanager
    def lock(self, app: str, environment: str = "default") -> Iterator[None]:
        """A coordination.k8s.io Lease per app and environment: one release at a time across runners.

        The holder renews it every third of ``lease_seconds`` while the release runs;
        a holder that stops renewing (a killed runner, or one the API server no
        longer answers) loses it ``lease_seconds`` after its last renewal, and the
        next release takes it over. A holder stops its own writes to the cluster
        (LockedError) a margin before then (:data:`LEASE_MARGIN_SECONDS`), or as
        soon as it sees the Lease changed hands.
        """
        name = f"shipway-{render.object_name(app, environment)}"
        path = f"/apis/coordination.k8s.io/v1/namespaces/{self.settings.namespace}/leases/{name}"
        holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        started = time.monotonic()  # at or before the stamp the Lease gets
        now = datetime.now(UTC)
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": self.settings.lease_seconds,
                     "acquireTime": _stamp(now), "renewTime": _stamp(now)},
        }  # fmt: skip
        try:
            self.request("POST", path.rsplit("/", 1)[0], body=body, content_type="application/json")
        except Conflict:
            held = self.request("GET", path)
            spec = held.get("spec", {})
            renewed = datetime.strptime(spec.get("renewTime", _stamp(now)), _STAMP).replace(tzinfo=UTC)
            if (now - renewed).total_seconds() < float(spec.get("leaseDurationSeconds", 0)):
                raise LockedError(
                    f"another release of {app} ({environment}) holds Lease {self.settings.namespace}/{name} "
                    f"(holder {spec.get('holderIdentity')}, since {spec.get('acquireTime')}, "
                    f"renewed {spec.get('renewTime')}, for {spec.get('leaseDurationSeconds')}s)"
                ) from None
            self.context.reporter.info(
                f"  taking over Lease {name}: holder {spec.get('holderIdentity')} stopped renewing it at {renewed}"
            )
            body["metadata"]["resourceVersion"] = held["metadata"]["resourceVersion"]  # take over an expired lease
            started = time.monotonic()  # stamped again: the read may have taken a while
            body["spec"]["acquireTime"] = body["spec"]["renewTime"] = _stamp(datetime.now(UTC))
            try:
                self.request("PUT", path, body=body, content_type="application/json")
            except Conflict:
                raise LockedError(
                    f"another release of {app} ({environment}) took over the expired Lease "
                    f"{self.settings.namespace}/{name} first"
                ) from None
        lease = _HeldLease(name=name, path=path, holder=holder, seconds=self.settings.lease_seconds, renewed=started)
        self._lease = lease
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(lease, stop), daemon=True, name="shipway-lease")
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join(timeout=30)
            self._lease = None
            # Never let the clean-up hide how the release ended; a Lease not deleted expires anyway. Deleted
            # only as the version this holder last saw: never one another release took over meanwhile.
            with suppress(BackendError):
                held = self.request("GET", path, within=lease.time_left())
                version = held["metadata"]["resourceVersion"]
                if (held.get("spec") or {}).get("holderIdentity") == holder and lease.lost_because() is None:
                    options = {
                        "kind": "DeleteOptions",
                        "apiVersion": "v1",
                        "preconditions": {"resourceVersion": version},
                    }
                    self.request(
                        "DELETE", path, body=options, content_type="application/json", within=lease.time_left()
                    )

    def _renew(self, lease: _HeldLease, stop: threading.Event) -> None:
        """Renew ``lease`` every third of its duration until ``stop``.

        A renewal that fails is tried again every :data:`LEASE_RETRY_SECONDS`, each
        try answered within the time the holder may still write (the client's
        retries could outlast the Lease); once that ran out, or the Lease changed
        hands, it is lost.
        """
        wait = lease.seconds / 3
        while not stop.wait(wait):
            if lease.time_left() <= 0:
                self._lose(lease, stop, f"the release Lease {lease.name} ran out: not renewed within lease_seconds")
                return
            started = time.monotonic()
            try:
                held = self.request("GET", lease.path, within=lease.time_left())
                if (held.get("spec") or {}).get("holderIdentity") != lease.holder:
                    who = (held.get("spec") or {}).get("holderIdentity")
                    self._lose(lease, stop, f"the release Lease {lease.name} was taken over by another release ({who})")
                    return
                held["spec"]["renewTime"] = _stamp(datetime.now(UTC))
                if lease.time_left() <= 0:
                    wait = 0  # ran out while it was read: said at the top
                    continue
                self.request("PUT", lease.path, body=held, content_type="application/json", within=lease.time_left())
            except BackendError as exc:  # tried again soon, while the Lease has time left
                self.context.reporter.info(
                    f"  could not renew the release Lease {lease.name} ({lease.time_left():.0f}s left): {exc}"
                )
                wait = min(LEASE_RETRY_SECONDS, max(lease.time_left(), 0.0))
                continue
            except Exception as exc:  # noqa: BLE001 - an answer not understood: no renewal can be counted on
                self._lose(lease, stop, f"the release Lease {lease.name} could not be renewed ({type(exc).__name__})")
                return
            lease.renewed = started
            wait = lease.seconds / 3

    def _lose(self, lease: _HeldLease, stop: threading.Event, why: str) -> None:
        if stop.is_set():
            return  # the lock ended meanwhile: nothing of this release is left to stop
        lease.lost = why
        self.context.reporter.info(f"  {why}: this release makes no more changes to the cluster")

    def remove(self, app: str, environment: str = "default") -> None:
        name = render.object_name(app, environment)
        for kind in ("HorizontalPodAutoscaler", "Deployment", "Service"):
            with suppress(NotFound):
                self.request("DELETE", f"{self._base(kind, self.settings.namespace)}/{name}")
        self._delete_own_secret(render.pull_secret_name(app, environment))
        self._delete_own_secret(render.secrets_name(app, environment))
        for proxy in self._proxies.values():
            proxy.stop()
        self._proxies.clear()


def rollout_state(dep: dict[str, Any]) -> tuple[bool, str]:
    """(done, message), following ``kubectl rollout status`` for Deployments."""
    spec, st = dep.get("spec", {}), dep.get("status", {})
    name = dep["metadata"]["name"]
    if dep["metadata"].get("generation", 0) > st.get("observedGeneration", 0):
        return False, f'waiting for deployment "{name}" spec update to be observed'
    for cond in st.get("conditions", []) or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return False, f'deployment "{name}" exceeded its progress deadline (ProgressDeadlineExceeded)'
    desired = int(spec.get("replicas", 1))
    updated = int(st.get("updatedReplicas", 0))
    total = int(st.get("replicas", 0))
    available = int(st.get("availableReplicas", 0))
    if updated < desired:
        return False, f"{updated} of {desired} updated replicas are available"
    if total > updated:
        return False, f"{total - updated} old replicas are pending termination"
    if available < updated:
        return False, f"{available} of {updated} updated replicas are available"
    return True, f'deployment "{name}" successfully rolled out'


_STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"


def _stamp(when: datetime) -> str:
    return when.strftime(_STAMP)


def _image(template: dict[str, Any]) -> str:
    containers = template.get("spec", {}).get("containers", [])
    return str(containers[0].get("image", "")) if containers else ""


def _rev(rs: dict[str, Any]) -> int:
    return int(rs["metadata"].get("annotations", {}).get(render.REVISION, "0"))


def _status_message(body: Any) -> str:
    try:
        return str(json.loads(body).get("message", ""))
    except (TypeError, ValueError):
        return ""
