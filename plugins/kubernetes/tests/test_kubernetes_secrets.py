"""Secrets on Kubernetes: registry pull credentials kept in step (issue 8 item 12), app secrets as files (item 7)."""

from __future__ import annotations

import base64
import io
import json
import uuid
from pathlib import Path
from typing import Any

import docker.errors
import kubernetes_validate
import pytest
from pydantic import SecretStr
from rich.console import Console

from shipway import dockerutil
from shipway.backends.base import BackendContext
from shipway.domain import ImageRef, Release
from shipway.errors import BackendError, ConfigError
from shipway.progress import Reporter
from shipway.testing.contracts import unique
from shipway_kubernetes import KubernetesOrchestrator, KubernetesSettings
from shipway_kubernetes.testing import FakeApiServer


@pytest.fixture
def logged(shipway_kubeconfig: Path, tmp_path: Path) -> Any:
    """``logged(**settings)`` → (orchestrator, log): a kubernetes orchestrator whose reporter writes into ``log``."""

    def make(**options: Any) -> tuple[KubernetesOrchestrator, io.StringIO]:
        log = io.StringIO()
        reporter = Reporter(console=Console(file=log, force_terminal=True, width=200))
        settings = KubernetesSettings(
            kind="kubernetes", kubeconfig=str(shipway_kubeconfig), **{"deadline": 8, **options}
        )
        context = BackendContext(root=tmp_path, cache_dir=tmp_path / "cache", reporter=reporter)
        return KubernetesOrchestrator(settings, context), log

    return make


def evict(image: ImageRef) -> None:
    """Remove ``image`` from the engine the fake cluster's pods run on: deploying it must pull."""
    client = dockerutil.client()
    client.images.remove(client.images.get(image.pinned).id, force=True)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(image.pinned)


def release(app: str, image: ImageRef, secrets: dict[str, str] | None = None) -> Release:
    return Release(
        app=app,
        image=image,
        port=8000,
        health="/healthz",
        secrets={k: SecretStr(v) for k, v in (secrets or {}).items()},
    )


def stored_auths(fake: FakeApiServer, name: str) -> dict[str, Any]:
    secret = fake.objects[("secrets", "default", name)]
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    return dict(json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))["auths"])


def pod_spec(fake: FakeApiServer, app: str) -> dict[str, Any]:
    return dict(fake.objects[("deployments", "default", app)]["spec"]["template"]["spec"])


def exec_in_pod(fake: FakeApiServer, app: str, *command: str) -> tuple[int, str]:
    """Run ``command`` (busybox applet and args) in the container of the app's only ready pod."""
    ready = [p for p in fake.pods.values() if p.labels.get("app.kubernetes.io/name") == app and p.ready]
    assert len(ready) == 1, [(p.name, p.ready, p.waiting) for p in fake.pods.values()]
    assert ready[0].container_id is not None
    container = dockerutil.client().containers.get(ready[0].container_id)
    code, output = container.exec_run(["/bin/busybox", *command])
    return code, output.decode().strip()


def without_secret_objects(fake: FakeApiServer) -> str:
    """Everything the fake cluster stores but Secrets (Deployments, ReplicaSets, Services, ...), and its pods."""
    with fake._lock:
        kept = {"/".join(k): o for k, o in fake.objects.items() if k[0] != "secrets"}
        pods = [fake._pod_object(p) for p in fake.pods.values()]
    return json.dumps([kept, pods])


# -- item 12: pull credentials -------------------------------------------------------------------------------


def test_pulls_with_a_secret_kept_in_step_with_the_registry_credentials(
    logged: Any,
    shipway_contract_images: dict[str, ImageRef],
    shipway_contract_registry: Any,
    shipway_fake_k8s: FakeApiServer,
) -> None:
    orch, log = logged()
    auth = shipway_contract_registry.credentials()
    app = unique("pull")
    try:
        evict(shipway_contract_images["good"])
        dep = orch.deploy(release(app, shipway_contract_images["good"]), auth=auth)
        assert dep.state == "healthy"
        assert pod_spec(shipway_fake_k8s, app)["imagePullSecrets"] == [{"name": f"{app}-pull"}]
        auths = stored_auths(shipway_fake_k8s, f"{app}-pull")
        assert auths[auth["serveraddress"]]["username"] == auth["username"]
        assert auths[auth["serveraddress"]]["password"] == auth["password"]
        secret = shipway_fake_k8s.objects[("secrets", "default", f"{app}-pull")]
        assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "shipway"
        assert [m["manager"] for m in secret["metadata"]["managedFields"]] == ["shipway"]

        # Credentials that no longer work (an expired token) replace the stored ones on the next deploy...
        evict(shipway_contract_images["good2"])
        expired = {**auth, "password": "expired-" + uuid.uuid4().hex}
        with pytest.raises(BackendError, match=r"ImagePullBackOff|ErrImagePull") as failed:
            orch.deploy(release(app, shipway_contract_images["good2"]), auth=expired)
        assert expired["password"] not in str(failed.value)
        assert stored_auths(shipway_fake_k8s, f"{app}-pull")[auth["serveraddress"]]["password"] == expired["password"]
        assert orch.rollback(app).digest == shipway_contract_images["good"].digest  # what the engine does next
        # ... and fresh ones are back in the Secret on the next release, whose pods pull with them.
        again = orch.deploy(release(app, shipway_contract_images["good2"]), auth=auth)
        assert again.state == "healthy"
        assert again.digest == shipway_contract_images["good2"].digest
        assert stored_auths(shipway_fake_k8s, f"{app}-pull")[auth["serveraddress"]]["password"] == auth["password"]
        assert f"Secret/{app}-pull" in log.getvalue()
        for value in (auth["password"], expired["password"]):
            assert value not in log.getvalue()
            assert value not in without_secret_objects(shipway_fake_k8s)
    finally:
        orch.remove(app)
    assert ("secrets", "default", f"{app}-pull") not in shipway_fake_k8s.objects


def test_without_credentials_nothing_of_ours_is_referenced(
    logged: Any,
    shipway_contract_images: dict[str, ImageRef],
    shipway_contract_registry: Any,
    shipway_fake_k8s: FakeApiServer,
) -> None:
    orch, _ = logged(deadline=4)
    app = unique("nopull")
    try:
        orch.deploy(release(app, shipway_contract_images["good"]), auth=shipway_contract_registry.credentials())
        assert ("secrets", "default", f"{app}-pull") in shipway_fake_k8s.objects
        dep = orch.deploy(release(app, shipway_contract_images["good2"]), auth=None)  # held by the engine: no pull
        assert dep.state == "healthy"
        assert "imagePullSecrets" not in pod_spec(shipway_fake_k8s, app)
        assert ("secrets", "default", f"{app}-pull") not in shipway_fake_k8s.objects  # ours, unused: deleted
        evict(shipway_contract_images["bad"])
        with pytest.raises(BackendError, match=r"ImagePullBackOff|ErrImagePull"):
            orch.deploy(release(app, shipway_contract_images["bad"]), auth=None)
    finally:
        orch.remove(app)


def test_a_named_image_pull_secret_is_used_as_it_is(
    logged: Any,
    shipway_contract_images: dict[str, ImageRef],
    shipway_contract_registry: Any,
    shipway_fake_k8s: FakeApiServer,
) -> None:
    orch, _ = logged(image_pull_secret="team-pull")
    app = unique("named")
    try:
        orch.deploy(release(app, shipway_contract_images["good"]), auth=shipway_contract_registry.credentials())
        assert pod_spec(shipway_fake_k8s, app)["imagePullSecrets"] == [{"name": "team-pull"}]
        assert not [k for k in shipway_fake_k8s.objects if k[0] == "secrets"]
    finally:
        orch.remove(app)


def test_a_secret_of_someone_else_with_our_name_is_not_taken_over(
    logged: Any, shipway_contract_images: dict[str, ImageRef], shipway_contract_registry: Any
) -> None:
    orch, _ = logged()
    app = unique("theirs")
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{app}-pull"}, "stringData": {"x": "y"}}
    orch.request("POST", "/api/v1/namespaces/default/secrets", body=body, content_type="application/json")
    with pytest.raises(ConfigError, match=f"Secret default/{app}-pull exists and is not shipway's"):
        orch.deploy(release(app, shipway_contract_images["good"]), auth=shipway_contract_registry.credentials())
    assert orch.status(app).state == "absent"


# -- item 7: secrets as read-only files ---------------------------------------------------------------------


def test_secrets_are_read_only_files_in_the_pod_and_nowhere_else(
    logged: Any,
    shipway_contract_images: dict[str, ImageRef],
    shipway_contract_registry: Any,
    shipway_fake_k8s: FakeApiServer,
) -> None:
    orch, log = logged()
    app = unique("sec")
    token, password = "tok-" + uuid.uuid4().hex, "pw-" + uuid.uuid4().hex
    values = [token, password, *(base64.b64encode(v.encode()).decode() for v in (token, password))]
    rel = release(app, shipway_contract_images["good"], {"api_token": token, "db_password": password})
    try:
        for manifest in orch.manifests(rel):
            kubernetes_validate.validate(manifest, "1.30", strict=True)
            assert not any(v in json.dumps(manifest) for v in values)
        dep = orch.deploy(rel, auth=shipway_contract_registry.credentials())
        assert dep.state == "healthy"
        assert exec_in_pod(shipway_fake_k8s, app, "cat", "/run/secrets/api_token") == (0, token)
        assert exec_in_pod(shipway_fake_k8s, app, "cat", "/run/secrets/db_password") == (0, password)
        assert exec_in_pod(shipway_fake_k8s, app, "stat", "-c", "%a", "/run/secrets/api_token") == (0, "444")
        assert exec_in_pod(shipway_fake_k8s, app, "id", "-u") == (0, "65534")  # read by a non-root user
        assert exec_in_pod(shipway_fake_k8s, app, "sh", "-c", "echo x > /run/secrets/api_token")[0] != 0
        assert not any(v in without_secret_objects(shipway_fake_k8s) for v in values)
        assert not any(v in log.getvalue() for v in values)
        stored = shipway_fake_k8s.objects[("secrets", "default", f"{app}-secrets")]
        assert sorted(stored["data"]) == ["api_token", "db_password"]
    finally:
        orch.remove(app)
    assert ("secrets", "default", f"{app}-secrets") not in shipway_fake_k8s.objects


def test_a_changed_secret_rolls_the_pods_and_an_unchanged_one_does_not(
    logged: Any,
    shipway_contract_images: dict[str, ImageRef],
    shipway_contract_registry: Any,
    shipway_fake_k8s: FakeApiServer,
) -> None:
    orch, _ = logged()
    app = unique("rot")
    auth = shipway_contract_registry.credentials()
    try:
        one = "one-" + uuid.uuid4().hex
        first = orch.deploy(release(app, shipway_contract_images["good"], {"api_token": one}), auth=auth)
        same = orch.deploy(release(app, shipway_contract_images["good"], {"api_token": one}), auth=auth)
        assert same.revision == first.revision  # nothing changed: no new pods
        rotated = "two-" + uuid.uuid4().hex
        after = orch.deploy(release(app, shipway_contract_images["good"], {"api_token": rotated}), auth=auth)
        assert after.revision == first.revision + 1
        assert exec_in_pod(shipway_fake_k8s, app, "cat", "/run/secrets/api_token") == (0, rotated)
        without = orch.deploy(release(app, shipway_contract_images["good"]), auth=auth)
        assert without.state == "healthy"
        assert exec_in_pod(shipway_fake_k8s, app, "test", "-e", "/run/secrets/api_token")[0] == 1  # no file left
        assert ("secrets", "default", f"{app}-secrets") not in shipway_fake_k8s.objects  # ours, unused: deleted
    finally:
        orch.remove(app)


def test_a_secret_name_that_cannot_be_a_file_is_refused_without_its_value(tmp_path: Path) -> None:
    settings = KubernetesSettings(kind="kubernetes")
    orch = KubernetesOrchestrator(settings, BackendContext(root=tmp_path, cache_dir=tmp_path))
    image = ImageRef(repository="registry.example/app", digest="sha256:" + "ab" * 32)
    with pytest.raises(ConfigError, match=r"app.secrets: '\.\./escape' cannot be") as err:
        orch.manifests(release("a", image, {"../escape": "hunter2-value"}))
    assert "hunter2-value" not in str(err.value)


def test_the_fake_keeps_the_resource_version_of_an_unchanged_secret(logged: Any) -> None:
    orch, _ = logged()
    name = unique("s")
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": {"k": "dg=="}}
    first = orch.apply(body)
    assert orch.apply(body)["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    changed = orch.apply({**body, "data": {"k": "dzI="}})
    assert changed["metadata"]["resourceVersion"] != first["metadata"]["resourceVersion"]
    with pytest.raises(BackendError, match="illegal base64"):
        orch.apply({**body, "data": {"k": "not base64!"}})
