"""A build leaves a bounded number of the app's images in the engine (``build.keep_images``).

Each final image holds its model layer; without this, a runner that builds
every model version would keep every one of them on its disk.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
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
REGISTRY_REPO = "registry.invalid/team/app"  # where the app's registry keeps it: no image here was pulled

pytestmark = pytest.mark.usefixtures("shipway_docker")


def _tags(app: str) -> set[str]:
    """The app's names in the engine (an image may also carry another app's: the same app build)."""
    found = dockerutil.client().images.list(name=f"shipway/{app}")
    return {t for img in found for t in img.tags if t.startswith(f"shipway/{app}:")}


def _exists(image_id: str) -> bool:
    try:
        dockerutil.client().images.get(image_id)
    except docker.errors.ImageNotFound:
        return False
    return True


def _load_final(app: str, tag: str | None, created: str) -> str:
    """An image labelled as ``app``'s, made at ``created``, loaded under ``shipway/<app>:<tag>`` (or no name)."""
    base = image.base_layers(BASE_IMAGE)
    platform = image.base_platform(BASE_IMAGE)
    assert base is not None
    assert platform is not None
    labels = {"io.shipway.app": app, "test.nonce": uuid.uuid4().hex}
    config = json.dumps(
        {
            **platform,
            "created": created,
            "config": {"Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": base},
        }
    ).encode()
    image.docker_load(config, base, [], [f"shipway/{app}:{tag}"] if tag else [])
    return sha256(config)


def _prune(app: str, keep: int, current: str, repository: str) -> list[str]:
    return image.prune_app_images(app, keep, current, repository, image.engine_images())


def _dead_pid() -> int:
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(ended.stdout)


def test_the_oldest_go_the_newest_and_the_held_ones_stay() -> None:
    app, other = f"prune-{uuid.uuid4().hex[:8]}", f"prune-other-{uuid.uuid4().hex[:8]}"
    client = dockerutil.client()
    # Loaded in an order that is neither their age nor their tags' order: newest is by the date made.
    made = {
        "d": "2026-01-04T00:00:00Z",
        "a": "2026-01-01T00:00:00Z",
        "c": "2026-01-03T00:00:00Z",
        "b": "2026-01-02T00:00:00Z",
        "e": "2025-12-30T00:00:00.5Z",
        "f": "2025-12-29T23:00:00-02:00",  # = 2025-12-30T01:00Z: newer than e
        "g": "2025-12-28T00:00:00Z",
    }
    ids = {tag: _load_final(app, tag, when) for tag, when in made.items()}
    leftover = _load_final(app, None, "2025-12-01T00:00:00Z")  # what a --rebuild's re-tag leaves unnamed
    users = _load_final(app, "u", "2025-11-01T00:00:00Z")
    client.images.get(users).tag("my-own-name", "keep")  # a name the user gave: not shipway's to remove
    theirs = _load_final(other, "t0", "2025-01-01T00:00:00Z")
    in_use = client.containers.create(ids["a"], command=["true"])
    repo = f"shipway/{app}"
    for held in (
        image.held_tag(repo, ids["e"]),  # this run, which goes on: e stays
        image.held_tag(repo, ids["g"], pid=_dead_pid()),  # a run that was killed: does not count
        image.held_tag(repo, ids["b"], since=time.time() - image.HOLD_SECONDS - 60),  # too old to count
    ):
        name, _, tag = held.rpartition(":")
        client.images.get(next(i for i in ids.values() if tag.endswith(i[7:19]))).tag(name, tag)
    try:
        # Keep 2: the current image (c) and the newest other (d). b and f go (b's hold is too old to
        # count); a is older still but a container uses it; e is held by a run that has not ended; g's
        # holder was killed, so it goes.
        deleted = _prune(app, keep=2, current=ids["c"], repository=REGISTRY_REPO)
        assert set(deleted) == {ids["b"], ids["f"], ids["g"], leftover}
        for tag in ("a", "c", "d", "e"):
            assert _exists(ids[tag]), tag
        for gone in deleted:
            assert not _exists(gone)
        assert _exists(users)
        assert _exists(theirs)
        assert _tags(other) == {f"shipway/{other}:t0"}
        # Keep 1: only the current one (and what a container uses or a run holds).
        assert _prune(app, keep=1, current=ids["c"], repository=REGISTRY_REPO) == [ids["d"]]
        image.release_held(ids["e"])  # this run ends: e is just an old image now
        assert _prune(app, keep=1, current=ids["c"], repository=REGISTRY_REPO) == [ids["e"]]
        assert _exists(ids["a"])
    finally:
        in_use.remove(force=True)
        _remove(*ids.values(), leftover, users, theirs)


def _remove(*image_ids: str) -> None:
    client = dockerutil.client()
    for image_id in image_ids:
        if _exists(image_id):
            for name in client.images.get(image_id).tags:
                image.drop(name)
        image.drop(image_id)


def test_a_release_pulled_by_digest_goes_once_it_is_old_and_unused(shipway_registry: RegistryService) -> None:
    """The local orchestrator pulls the app's image by digest: a name the prune removes with the tag."""
    app = f"prune-{uuid.uuid4().hex[:8]}"
    client = dockerutil.client()
    old = _load_final(app, "old", "2026-01-01T00:00:00Z")
    new = _load_final(app, "new", "2026-02-01T00:00:00Z")
    repo = f"{shipway_registry.address}/{app}"
    client.images.get(old).tag(repo, "old")
    auth = {"username": shipway_registry.username, "password": shipway_registry.password}
    pushed = list(client.api.push(repo, "old", stream=True, decode=True, auth_config=auth))
    assert not [e for e in pushed if "error" in e], pushed
    digest = next(e["aux"]["Digest"] for e in pushed if "aux" in e)
    image.drop(f"{repo}:old")
    client.api.pull(repo, digest, auth_config=auth)
    try:
        assert client.images.get(old).attrs["RepoDigests"] == [f"{repo}@{digest}"]
        # Pulled from another repository than the app's registry: a name shipway did not give.
        assert _prune(app, keep=1, current=new, repository=f"{repo}-elsewhere") == []
        assert _exists(old)
        in_use = client.containers.create(old, command=["true"])  # the release that runs it
        try:
            assert _prune(app, keep=1, current=new, repository=repo) == []
            assert f"shipway/{app}:old" in client.images.get(old).tags  # not stripped of its shipway name
        finally:
            in_use.remove(force=True)
        assert _prune(app, keep=1, current=new, repository=repo) == [old]
        assert not _exists(old)
        assert _exists(new)
    finally:
        _remove(old, new)


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
    records = []
    try:
        for i in range(2):
            if i:
                (app.root / "server.py").write_text((app.root / "server.py").read_text() + "# a code change\n")
                app.commit("code change")
            out = app.shipway("run", "--skip-tests", "-o", str(tmp_path / f"run{i}.json"))
            assert out.returncode == 0, out.stderr
            records.append(json.loads((tmp_path / f"run{i}.json").read_text()))
            # The run held its image only while it ran.
            assert _tags(name) - {f"shipway/{name}:app"} == {f"shipway/{name}:{records[-1]['image']['tag']}"}
        assert not _exists(records[0]["local_image_id"])
        assert _exists(records[1]["local_image_id"])
        assert f"deleted 1 older image(s) of {name} from the engine" in out.stdout + out.stderr
    finally:
        _remove(*(r["local_image_id"] for r in records))
        image.drop(f"shipway/{name}:app")
