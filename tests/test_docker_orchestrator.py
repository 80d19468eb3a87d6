"""The docker orchestrator against the real local engine."""

from __future__ import annotations

import os

import pytest

from shipway.backends.base import BackendContext
from shipway.backends.docker_orchestrator import DockerOrchestrator, DockerOrchestratorSettings
from shipway.backends.oci_registry import OciRegistry
from shipway.domain import ImageRef
from shipway.testing.contracts import OrchestratorContract
from shipway.testing.services import free_port


class TestDockerOrchestrator(OrchestratorContract):
    @pytest.fixture
    def orchestrator(self, shipway_docker: None, tmp_path) -> DockerOrchestrator:
        settings = DockerOrchestratorSettings(kind="docker", host_port=free_port(), deadline=20, stop_timeout=1)
        return DockerOrchestrator(settings, BackendContext(cache_dir=tmp_path))


def test_deploy_pulls_a_missing_image_with_registry_auth(
    shipway_docker: None, oci_registry: OciRegistry, shipway_tiny_image, tmp_path
) -> None:
    from shipway import dockerutil
    from shipway.domain import Release

    pushed = oci_registry.push(shipway_tiny_image(files={"version": "pulled"}), "pull-me")
    client = dockerutil.client()
    client.images.remove(pushed.pinned, force=True)
    for tag in client.images.list(name=pushed.repository):
        client.images.remove(tag.id, force=True)
    settings = DockerOrchestratorSettings(kind="docker", host_port=free_port(), deadline=20, stop_timeout=1)
    orch = DockerOrchestrator(settings, BackendContext(cache_dir=tmp_path))
    try:
        with pytest.raises(Exception, match="pull"):
            orch.deploy(Release(app="pull-test", image=pushed, port=8000, health="/healthz"), auth=None)
        dep = orch.deploy(
            Release(app="pull-test", image=pushed, port=8000, health="/healthz"), auth=oci_registry.credentials()
        )
        assert dep.state == "healthy"
        assert dep.digest == pushed.digest
    finally:
        orch.remove("pull-test")


def test_one_release_at_a_time_on_this_host(shipway_docker: None, tmp_path) -> None:
    from shipway.errors import LockedError

    def orch() -> DockerOrchestrator:
        return DockerOrchestrator(DockerOrchestratorSettings(kind="docker"), BackendContext(cache_dir=tmp_path))

    with orch().lock("app", "prod"):
        with (
            pytest.raises(LockedError, match=r"another release of app \(prod\) is in progress"),
            orch().lock("app", "prod"),
        ):
            pass
        with orch().lock("app", "staging"):  # another environment is another lock
            pass
    with orch().lock("app", "prod"):
        pass


def test_secrets_are_mounted_files_never_in_the_container_config(
    shipway_docker: None, shipway_contract_images: dict[str, ImageRef], shipway_contract_registry: OciRegistry, tmp_path
) -> None:
    import json
    import uuid

    import requests
    from pydantic import SecretStr

    from shipway.domain import Release

    value = "pw-" + uuid.uuid4().hex
    orch = DockerOrchestrator(
        DockerOrchestratorSettings(kind="docker", host_port=free_port(), deadline=20, stop_timeout=1),
        BackendContext(cache_dir=tmp_path),
    )
    app = f"sec-{uuid.uuid4().hex[:6]}"
    release = Release(
        app=app,
        image=shipway_contract_images["good"],
        port=8000,
        health="/healthz",
        secrets={"db_password": SecretStr(value)},
    )
    try:
        orch.deploy(release, auth=shipway_contract_registry.credentials())
        assert requests.get(orch.endpoint(app) + "/secrets/db_password", timeout=5).text.strip() == value
        (container,) = [r.container for r in orch._revisions(app, "default")]
        container.reload()
        assert value not in json.dumps(container.attrs)  # env, labels, command: `docker inspect` shows none of it
        folder = container.labels["io.shipway.secrets-dir"]
        assert oct(os.stat(folder).st_mode & 0o777) == "0o700"
    finally:
        orch.remove(app)
    assert not os.path.exists(folder)  # removed with the revision
