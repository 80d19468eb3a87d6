"""A build leaves a bounded number of the app's final images in the engine (``build.keep_images``).

Each final image holds its model layer; without this, a runner that builds
every model version would keep every one of them on its disk.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import docker.errors
import pytest

from shipway import dockerutil, image
from shipway.manifest import sha256
from shipway.testing.project import AppProject, project_env
from shipway.testing.services import RegistryService, free_port

REPO = Path(__file__).resolve().parents[1]
SCORER = REPO / "tests" / "apps" / "scorer"
BASE_IMAGE = "shipway-base:bookworm"

pytestmark = pytest.mark.usefixtures("shipway_docker")


def _tags(app: str) -> set[str]:
    found = dockerutil.client().images.list(name=f"shipway/{app}")
    return {t for img in found for t in img.tags}


def _load_final(app: str, tag: str) -> str:
    """An image labelled as ``app``'s final image, loaded under ``shipway/<app>:<tag>`` (the base's layers)."""
    base = image.base_layers(BASE_IMAGE)
    platform = image.base_platform(BASE_IMAGE)
    assert base is not None
    assert platform is not None
    labels = {"io.shipway.app": app, "test.nonce": uuid.uuid4().hex}
    config = json.dumps(
        {**platform, "config": {"Labels": labels}, "rootfs": {"type": "layers", "diff_ids": base}}
    ).encode()
    image._docker_load(config, base, [], f"shipway/{app}:{tag}")
    return sha256(config)


def test_the_oldest_go_and_the_current_the_newest_and_used_ones_stay() -> None:
    app, other = f"prune-{uuid.uuid4().hex[:8]}", f"prune-other-{uuid.uuid4().hex[:8]}"
    client = dockerutil.client()
    loaded = [_load_final(app, tag) for tag in ("t1", "t2", "t3", "t4", "app")]  # in this order: t1 oldest
    loaded.append(_load_final(other, "t0"))
    replaced = _load_final(app, "t4")  # what a --rebuild does: the tag names a new image ...
    loaded.append(replaced)
    replaced, loaded[3] = loaded[3], replaced  # ... and the one it named before is left without a tag
    assert client.images.get(replaced).tags == []
    in_use = client.containers.create(f"shipway/{app}:t1", command=["true"])
    try:
        # Keep 2: the current build's (t3) and the one loaded last besides it (t4). t2 goes; t1 is
        # older still but a container uses it; the app build's tag and another app's images are not ours.
        removed = image.prune_app_images(app, keep=2, current=f"shipway/{app}:t3")
        assert removed == [f"shipway/{app}:t2", replaced]
        assert _tags(app) == {f"shipway/{app}:{t}" for t in ("t1", "t3", "t4", "app")}
        assert _tags(other) == {f"shipway/{other}:t0"}
        for gone in (loaded[1], replaced):  # untagged and unused: deleted, not left dangling
            with pytest.raises(docker.errors.ImageNotFound):
                client.images.get(gone)
        # Keep 1: only the current one (and what a container uses).
        assert image.prune_app_images(app, keep=1, current=f"shipway/{app}:t3") == [f"shipway/{app}:t4"]
        assert _tags(app) == {f"shipway/{app}:{t}" for t in ("t1", "t3", "app")}
    finally:
        in_use.remove(force=True)
        for image_id in loaded:
            image.drop(image_id)


def test_an_image_pulled_by_digest_is_not_a_leftover(shipway_registry: RegistryService) -> None:
    """A release pulls the app's image by digest: untagged, but named; a prune leaves it to its owner."""
    app = f"prune-{uuid.uuid4().hex[:8]}"
    client = dockerutil.client()
    image_id = _load_final(app, "t1")
    repo = f"{shipway_registry.address}/{app}"
    client.images.get(image_id).tag(repo, "t1")
    auth = {"username": shipway_registry.username, "password": shipway_registry.password}
    pushed = list(client.api.push(repo, "t1", stream=True, decode=True, auth_config=auth))
    assert not [e for e in pushed if "error" in e], pushed
    digest = next(e["aux"]["Digest"] for e in pushed if "aux" in e)
    image.drop(f"{repo}:t1")
    image.drop(f"shipway/{app}:t1")
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(image_id)
    client.api.pull(repo, digest, auth_config=auth)
    try:
        assert client.images.get(image_id).tags == []
        assert image.prune_app_images(app, keep=1, current=f"shipway/{app}:t2") == []
        assert client.images.get(image_id).attrs["RepoDigests"] == [f"{repo}@{digest}"]
    finally:
        image.drop(image_id)


def test_a_build_removes_the_images_beyond_keep_images(tmp_path: Path, shipway_registry: RegistryService) -> None:
    """End to end, on the scorer app (another layout, port and health path than the example)."""
    name = f"scorer-{uuid.uuid4().hex[:6]}"
    work = tmp_path / "work"
    work.mkdir()
    env = project_env(work, shipway_registry, drop=("MODEL_SELECT",), SCORER_PORT=str(free_port()))
    app = AppProject.copy(SCORER, work / "app", env, int(env["SCORER_PORT"]))
    config = app.root / "shipway.yaml"
    text = config.read_text().replace("name: scorer\n", f"name: {name}\n", 1)
    config.write_text(text.replace("build:\n", "build:\n  keep_images: 1\n", 1))
    app.commit("an app of its own, keeping one image")
    model = tmp_path / "model"
    (model / "weights").mkdir(parents=True)
    (model / "weights" / "layer1.bin").write_bytes(uuid.uuid4().bytes * 1024)
    (model / "labels.txt").write_text("cat\ndog\n")
    assert app.shipway("model", "publish", str(model), "--name", "scorer-model").returncode == 0
    try:
        first = app.shipway("run", "--skip-tests", "-o", str(tmp_path / "first.json"))
        assert first.returncode == 0, first.stderr
        first_tag = f"shipway/{name}:" + json.loads((tmp_path / "first.json").read_text())["image"]["tag"]
        assert first_tag in _tags(name)
        (app.root / "server.py").write_text((app.root / "server.py").read_text() + "# a code change\n")
        app.commit("code change")
        second = app.shipway("run", "--skip-tests", "-o", str(tmp_path / "second.json"))
        assert second.returncode == 0, second.stderr
        second_tag = f"shipway/{name}:" + json.loads((tmp_path / "second.json").read_text())["image"]["tag"]
        assert _tags(name) - {f"shipway/{name}:app"} == {second_tag}
        assert f"removed 1 older image(s) of {name} from the engine" in second.stdout + second.stderr
    finally:
        for tag in _tags(name):
            image.drop(tag)
