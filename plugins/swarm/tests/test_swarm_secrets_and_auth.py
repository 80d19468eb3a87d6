"""App secrets as Docker secrets, and pulls with the registry's credentials, on the real swarm."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from shipway import dockerutil
from shipway.domain import ImageRef, Release
from shipway.testing.contracts import unique
from shipway_swarm import spec
from shipway_swarm.orchestrator import RolloutFailed


def task_containers(app: str) -> list[Any]:
    """The running containers of the live revision (an old task may still be stopping beside them)."""
    name = spec.service_name(app, "default")
    live = spec.template_id(dockerutil.client().api.inspect_service(name)["Spec"]["TaskTemplate"])
    labels = [f"com.docker.swarm.service.name={name}", f"{spec.L_TEMPLATE}={live}"]
    return list(dockerutil.client().containers.list(filters={"label": labels}))


def test_secrets_are_files_never_spec_values_and_rotate(
    swarm_factory: Any, shipway_contract_images: dict[str, ImageRef], shipway_contract_registry: Any
) -> None:
    orch = swarm_factory()
    app = unique("sec")
    auth = shipway_contract_registry.credentials()
    first_value, second_value = f"tok-{unique('a')}", f"tok-{unique('b')}"
    try:
        orch.deploy(
            Release(app=app, image=shipway_contract_images["good"], port=8000, health="/healthz",
                    secrets={"api_token": SecretStr(first_value)}),
            auth=auth,
        )  # fmt: skip
        (container,) = task_containers(app)
        code, out = container.exec_run(["cat", "/run/secrets/api_token"])
        assert code == 0
        assert out.decode() == first_value
        inspected = json.dumps(dockerutil.client().api.inspect_service(spec.service_name(app, "default")))
        assert first_value not in inspected
        assert first_value not in json.dumps(container.attrs)  # not in the task's env or labels either
        assert auth["password"] not in inspected  # the pull credentials are not shown either

        orch.deploy(
            Release(app=app, image=shipway_contract_images["good"], port=8000, health="/healthz",
                    secrets={"api_token": SecretStr(second_value)}),
            auth=auth,
        )  # fmt: skip  # the same image: only the secret changed, and deploy waits for the new task all the same
        (container,) = task_containers(app)
        assert container.exec_run(["cat", "/run/secrets/api_token"])[1].decode() == second_value
        secrets = dockerutil.client().secrets.list(filters={"label": f"{spec.L_APP}={app}"})
        assert len(secrets) == 2  # the live one, and the one rollback would restore
    finally:
        orch.remove(app)
    assert dockerutil.client().secrets.list(filters={"label": f"{spec.L_APP}={app}"}) == []


def test_pulls_use_the_registry_credentials(
    swarm_factory: Any, shipway_contract_registry: Any, shipway_tiny_image: Any
) -> None:
    pushed = shipway_contract_registry.push(shipway_tiny_image(files={"version": "pulled"}), unique("pull"))
    client = dockerutil.client()
    for image in client.images.list(name=pushed.repository):
        client.images.remove(image.id, force=True)
    orch = swarm_factory(deadline=30)
    app = unique("pull")
    release = Release(app=app, image=pushed, port=8000, health="/healthz")
    try:
        with pytest.raises(RolloutFailed) as err:
            orch.deploy(release, auth=None)
        print(f"[swarm] without credentials: {err.value}")
        assert "tasks failed" in str(err.value) or "not converged" in str(err.value)
        orch.remove(app)
        dep = orch.deploy(release, auth=shipway_contract_registry.credentials())
        assert dep.state == "healthy"
        assert dep.running_digests == [pushed.digest]
    finally:
        orch.remove(app)
