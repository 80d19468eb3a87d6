"""Same inputs, same image; a commit costs what changed; tags never move.

A second, differently shaped app (tests/apps/scorer: no dependencies, a
two-stage Dockerfile, port 9090, ``/ready``, a nested model at
``artifacts/model`` under WORKDIR /srv/scorer) goes through ``shipway run``
against the real registry behind a proxy that behaves like a registry with
immutable tags: it refuses (and records) every PUT of a manifest to a tag
that already exists. The scenario runs in order: build, reuse, release,
code-only change, cold cache, model-only change, tag conflicts.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import requests
from engine_images import preloads_topped_by

from shipway import dockerutil
from shipway.localhttp import LocalServer, QuietHandler
from shipway.testing.faults import FaultProxy
from shipway.testing.project import AppProject, project_env
from shipway.testing.services import RegistryService, free_port

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "tests" / "apps" / "scorer"
BASE_IMAGE = os.environ.get("SHIPWAY_BASE_IMAGE", "shipway-base:bookworm")
MODEL_BYTES = 3 << 20
_TAG_PUT = re.compile(r"^/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)$")
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization"}


class ImmutableTagRegistry:
    """A proxy in front of a real registry that refuses to overwrite tags, like ECR's immutable repositories."""

    def __init__(self, upstream: str) -> None:
        self.upstream = f"http://{upstream}"
        self.refused: list[str] = []
        self.tag_puts: list[str] = []
        self.server = LocalServer(self._handler())
        self.address = self.server.url.removeprefix("http://")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.read_body() or None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP and k.lower() != "host"}
                match = _TAG_PUT.match(self.path.split("?")[0])
                if self.command == "PUT" and match and not match["ref"].startswith("sha256:"):
                    proxy.tag_puts.append(match["ref"])
                    probe = requests.head(
                        f"{proxy.upstream}/v2/{match['repo']}/manifests/{match['ref']}",
                        headers={k: v for k, v in headers.items() if k.lower() in ("authorization",)}
                        | {"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
                        timeout=10,
                    )
                    if probe.status_code == 200:
                        proxy.refused.append(match["ref"])
                        self.answer_json(400, {"errors": [{"code": "TAG_INVALID", "message": "tag is immutable"}]})
                        return
                resp = requests.request(
                    self.command, proxy.upstream + self.path, headers=headers, data=body, allow_redirects=False
                )
                content = resp.content
                self.send_response(resp.status_code)
                for key, value in resp.headers.items():
                    if key.lower() in _HOP or key.lower() == "content-length":
                        continue
                    if key.lower() == "location":
                        value = value.replace(proxy.upstream, f"http://{proxy.address}")
                    self.send_header(key, value)
                length_header = resp.headers.get("Content-Length") if self.command == "HEAD" else str(len(content))
                self.send_header("Content-Length", length_header or "0")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(content)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

        return Handler

    def stop(self) -> None:
        self.server.stop()


class Scorer(AppProject):
    """The scorer app with a model store, published random models and the registry's view."""

    def publish(self, tmp: Path, label: str, seed: bytes) -> str:
        folder = tmp / f"model-{uuid.uuid4().hex[:6]}"
        (folder / "weights").mkdir(parents=True)
        (folder / "weights" / "layer1.bin").write_bytes((seed * (MODEL_BYTES // len(seed) + 1))[:MODEL_BYTES])
        (folder / "labels.txt").write_text(f"{label}\nother\n")
        out = self.shipway("model", "publish", str(folder), "--name", "scorer-model")
        assert out.returncode == 0, out.stderr
        return out.stdout

    def run(self, tmp: Path, *args: str, env: dict[str, str] | None = None) -> dict:
        out = tmp / f"run-{uuid.uuid4().hex[:6]}.json"
        proc = self.shipway("run", "-o", str(out), *args, env=env)
        record = json.loads(out.read_text())
        record["_exit"] = proc.returncode
        record["_stderr"] = proc.stderr
        return record


@pytest.fixture(scope="module")
def immutable(shipway_registry: RegistryService) -> Iterator[ImmutableTagRegistry]:
    proxy = ImmutableTagRegistry(shipway_registry.address)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def scorer(
    tmp_path_factory: pytest.TempPathFactory,
    shipway_registry: RegistryService,
    immutable: ImmutableTagRegistry,
    shipway_docker: None,
) -> Iterator[Scorer]:
    try:
        dockerutil.client().images.get(BASE_IMAGE)
    except Exception:  # noqa: BLE001
        pytest.fail(f"base image {BASE_IMAGE} is missing: run scripts/services.sh", pytrace=False)
    work = tmp_path_factory.mktemp("scorer")
    port = free_port()
    env = project_env(
        work,
        shipway_registry,
        registry_address=immutable.address,
        drop=("MODEL_SELECT", "SOURCE_DATE_EPOCH"),
        SCORER_PORT=str(port),
        RUNTIME_IMAGE=BASE_IMAGE,
    )
    app = Scorer.copy(APP, work / "app", env, port)
    # Files the app folder holds but .dockerignore excludes: never part of the context.
    (app.root / "notes").mkdir()
    (app.root / "notes" / "todo.txt").write_text("not sent\n")
    app.git("add", "-A")
    app.commit("notes")
    yield app
    app.shipway("down")


def _resolve(reg: RegistryService, address: str, tag: str) -> str | None:
    resp = requests.head(
        f"http://{address}/v2/team/scorer/manifests/{tag}",
        auth=(reg.username, reg.password),
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=10,
    )
    return resp.headers.get("Docker-Content-Digest") if resp.status_code == 200 else None


def _latest_build(scorer: Scorer) -> dict[str, Any]:
    """The record of the newest run that built an image (a reused run's record names no model layer)."""
    records = [json.loads(p.read_text()) for p in (scorer.root / ".shipway" / "builds").glob("*.json")]
    return max((r for r in records if r["action"] == "built" and r["status"] == "ok"), key=lambda r: r["created"])


def _build_detail(record: Any) -> str:
    return str(next(s for s in record["stages"] if s["name"] == "build")["detail"])


def _push_detail(record: Any) -> str:
    return str(next(s for s in record["stages"] if s["name"] == "push")["detail"])


def _model_tags(reg: RegistryService) -> dict[str, str | None]:
    """The repository's model tags (one per model layer) and the image each names."""
    resp = requests.get(f"http://{reg.address}/v2/team/scorer/tags/list", auth=(reg.username, reg.password), timeout=10)
    resp.raise_for_status()
    return {t: _resolve(reg, reg.address, t) for t in resp.json()["tags"] if t.startswith("model-")}


def _loaded_bytes(detail: str) -> float:
    """Bytes the final docker load sent, from the build stage's detail."""
    return float(detail.split(" MB into it")[0].rsplit(" ", 1)[1]) * 1e6


def test_01_first_run_builds_with_the_model_layer_above_the_base(scorer: Scorer, tmp_path: Path) -> None:
    scorer.publish(tmp_path, "cat", b"model-one")
    record = scorer.run(tmp_path)
    assert record["_exit"] == 0, record["_stderr"]
    assert record["action"] == "built"
    assert [s["name"] for s in record["stages"]] == ["test", "find", "model", "build", "verify", "push"]
    base_layers = dockerutil.client().images.get(BASE_IMAGE).attrs["RootFS"]["Layers"]
    assert record["layers"][: len(base_layers)] == base_layers
    assert record["layers"][len(base_layers)] == record["model_layer"]
    assert record["uploaded_bytes"] > MODEL_BYTES
    assert record["image"]["tag"] == f"{scorer.git('rev-parse', 'HEAD')[:12]}-m1"
    assert "export (save)" in _build_detail(record)  # the first build with this cache on this engine


def test_02_same_inputs_are_reused_and_nothing_moves(
    scorer: Scorer, tmp_path: Path, shipway_registry: RegistryService, immutable: ImmutableTagRegistry
) -> None:
    first = _latest_build(scorer)
    again = scorer.run(tmp_path)
    assert again["_exit"] == 0, again["_stderr"]
    assert again["action"] == "reused"
    assert again["image"]["digest"] == first["image"]["digest"]
    assert again["inputs"] == first["inputs"]
    assert again["uploaded_bytes"] == 0
    assert [(s["name"], s["status"]) for s in again["stages"]] == [
        ("test", "skipped"),
        ("find", "ok"),
        ("model", "skipped"),
        ("build", "skipped"),
        ("verify", "skipped"),
        ("push", "skipped"),
    ]
    assert _resolve(shipway_registry, shipway_registry.address, first["image"]["tag"]) == first["image"]["digest"]
    assert immutable.refused == []


def test_03_release_after_a_reused_run_is_a_noop(scorer: Scorer, tmp_path: Path) -> None:
    rel = scorer.shipway("release", "-o", str(tmp_path / "rel.json"))
    assert rel.returncode == 0, rel.stderr
    assert scorer.record(tmp_path / "rel.json")["action"] == "deployed"
    assert requests.get(scorer.url("/model"), timeout=5).json()["count"] == 2
    assert requests.post(scorer.url("/predict"), json={}, timeout=5).json() == {"label": "cat"}
    assert scorer.run(tmp_path)["action"] == "reused"
    again = scorer.shipway("release", "-o", str(tmp_path / "again.json"))
    assert again.returncode == 0, again.stderr
    assert scorer.record(tmp_path / "again.json")["action"] == "noop"


def test_04_code_only_change_uploads_no_model_byte(scorer: Scorer, tmp_path: Path) -> None:
    before = json.loads(sorted((scorer.root / ".shipway" / "builds").glob("*.json"))[0].read_text())
    server = scorer.root / "server.py"
    server.write_text(server.read_text() + "\n# a code-only change\n")
    scorer.commit("code-only change")
    record = scorer.run(tmp_path)
    assert record["_exit"] == 0, record["_stderr"]
    assert record["action"] == "built"
    assert record["image"]["digest"] != before["image"]["digest"]
    assert record["model_layer"] == before["model_layer"]
    assert record["uploaded_bytes"] < 1_000_000
    # The second build: its layers leave the engine by a push to the staging registry, and the
    # Dockerfile's layers get the same compressed blobs as the first (docker save) build gave them.
    assert "export (push)" in _build_detail(record)


def _pushed_fresh_base(reg: RegistryService) -> str:
    """A base image only ``reg`` holds: built on the test base (a layer no engine has), pushed, removed here."""
    local = f"shipway-test-base:{uuid.uuid4().hex[:10]}"
    client = dockerutil.client()
    built, _ = client.images.build(
        fileobj=io.BytesIO(f"FROM {BASE_IMAGE}\nRUN echo {local} > /etc/base\n".encode()), tag=local, rm=True
    )
    repo, _, tag = f"{reg.address}/{local}".rpartition(":")
    built.tag(repo, tag)
    try:
        for event in client.api.push(
            repo, tag, stream=True, decode=True, auth_config={"username": reg.username, "password": reg.password}
        ):
            assert "error" not in event, event
    finally:
        client.images.remove(f"{repo}:{tag}")
        client.images.remove(local)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(f"{repo}:{tag}")
    return f"{repo}:{tag}"


def test_05_cold_cache_uploads_no_model_byte_and_gets_the_same_model_layer(
    scorer: Scorer, tmp_path: Path, shipway_registry: RegistryService
) -> None:
    before = _latest_build(scorer)
    server = scorer.root / "server.py"
    server.write_text(server.read_text() + "# another code change, on a fresh runner\n")
    scorer.commit("code change on a cold runner")
    cold = tmp_path / "empty-cache"
    # A runner whose engine never built on this base and does not hold it: the build pulls it from a
    # registry (as a hosted runner's does), and the runtime stage's RUN step runs again.
    # Through a proxy that holds each request a moment: the pull still runs when the model arrives.
    slow = FaultProxy(shipway_registry.address)
    slow.latency = 0.5
    base = slow.address + _pushed_fresh_base(shipway_registry).removeprefix(shipway_registry.address)
    auth = base64.b64encode(f"{shipway_registry.username}:{shipway_registry.password}".encode()).decode()
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text(json.dumps({"auths": {slow.address: {"auth": auth}}}))
    env = {"SHIPWAY_CACHE_DIR": str(cold), "RUNTIME_IMAGE": base, "DOCKER_CONFIG": str(tmp_path / "docker")}
    try:
        record = scorer.run(tmp_path, env=env)
    finally:
        slow.close()
        with contextlib.suppress(docker.errors.ImageNotFound):
            dockerutil.client().images.remove(base)
    assert slow.count("forwarded", method="GET", path="/manifests/") >= 1  # the build did pull the base
    assert record["_exit"] == 0, record["_stderr"]
    assert record["model_layer"] == before["model_layer"]
    assert record["uploaded_bytes"] < 1_000_000
    # No shipway cache here: the registry's model tag told the run that the model layer is there.
    assert "while the model downloaded" not in _push_detail(record)
    detail = _build_detail(record)
    assert "export (save)" in detail
    # The engine took the model layer on the new base's layers while it built the app (once its build
    # had pulled the base): the final load sent only the layers above the model, and the image that
    # carried it is gone.
    assert "and loaded alongside it" in detail
    assert "wait for the base" in detail  # the model was there before the pull was done: the preload waited
    assert _loaded_bytes(detail) < MODEL_BYTES
    assert preloads_topped_by(record["model_layer"]) == []
    shutil.rmtree(cold, ignore_errors=True)


def test_06_model_only_change_uploads_the_model_once(
    scorer: Scorer, tmp_path: Path, shipway_registry: RegistryService
) -> None:
    before = _latest_build(scorer)
    first = min(
        (json.loads(p.read_text()) for p in (scorer.root / ".shipway" / "builds").glob("*.json")),
        key=lambda r: r["created"],
    )
    scorer.publish(tmp_path, "dog", b"model-two")
    record = scorer.run(tmp_path)
    assert record["_exit"] == 0, record["_stderr"]
    assert record["action"] == "built"
    assert record["model"]["version"] == "2"
    assert record["image"]["digest"] != before["image"]["digest"]
    assert record["model_layer"] != before["model_layer"]
    assert MODEL_BYTES < record["uploaded_bytes"] < MODEL_BYTES * 1.05 + 1_000_000
    # The model layer went up while the store fetched the new version, and the push did not send it again.
    early = re.search(r"; ([\d.]+) MB of it while the model downloaded", _push_detail(record))
    assert early, _push_detail(record)
    assert MODEL_BYTES / 1e6 - 0.05 <= float(early[1]) <= MODEL_BYTES * 1.05 / 1e6
    # One model tag per model layer, each naming the first image that held it (other modules' apps push
    # to this repository too: only the tags naming this module's images count).
    records = [json.loads(p.read_text()) for p in (scorer.root / ".shipway" / "builds").glob("*.json")]
    ours = {r["image"]["digest"] for r in records if r.get("image")}
    named = [d for d in _model_tags(shipway_registry).values() if d in ours]
    assert sorted(named) == sorted([first["image"]["digest"], record["image"]["digest"]])
    # A warm push sends the engine's new layers only: the model layer is shipway's, never the engine's.
    detail = _build_detail(record)
    assert "export (push)" in detail
    # Two stages, WORKDIR /srv/scorer, model.into artifacts/model: the new model version's layer was
    # written while the engine built, at the folder the Dockerfile predicted.
    assert "model layer written during docker build" in detail
    assert float(detail.split(" MB out of the engine")[0].rsplit(" ", 1)[1]) < 1.0
    # Loaded into the engine once: preloaded while the engine still built (then the final load sent
    # only the layers above it), or with the final image when the build was done before the fetch.
    if "and loaded alongside it" in detail:
        assert _loaded_bytes(detail) < MODEL_BYTES
    else:
        assert _loaded_bytes(detail) > MODEL_BYTES
    assert preloads_topped_by(record["model_layer"]) == []
    assert scorer.run(tmp_path)["action"] == "reused"


def test_07_a_taken_tag_is_never_overwritten(
    scorer: Scorer, tmp_path: Path, shipway_registry: RegistryService, immutable: ImmutableTagRegistry
) -> None:
    records = [json.loads(p.read_text()) for p in sorted((scorer.root / ".shipway" / "builds").glob("*.json"))]
    latest = [r for r in records if r["action"] == "built"][-1]
    tag = latest["image"]["tag"]
    # Another source date: other labels, so other inputs and another image for the same commit and model.
    record = scorer.run(tmp_path, env={"SOURCE_DATE_EPOCH": "1000000000"})
    assert record["_exit"] == 0, record["_stderr"]
    assert record["action"] == "built"
    assert record["image"]["digest"] != latest["image"]["digest"]
    assert record["image"]["tag"] == f"{tag}.2"
    assert _resolve(shipway_registry, shipway_registry.address, tag) == latest["image"]["digest"]
    refused = scorer.run(tmp_path, env={"SOURCE_DATE_EPOCH": "1000000001", "EXISTING_TAG": "refuse"})
    assert refused["_exit"] == 7
    assert "never moves a tag" in refused["_stderr"]
    assert _resolve(shipway_registry, shipway_registry.address, tag) == latest["image"]["digest"]
    assert immutable.refused == []
    assert tag in immutable.tag_puts  # it was pushed once, by the first build of that commit and model


def test_08_rebuild_builds_again_and_release_stays_on_the_newest(scorer: Scorer, tmp_path: Path) -> None:
    record = scorer.run(tmp_path, "--rebuild")
    assert record["_exit"] == 0, record["_stderr"]
    assert record["action"] == "built"
    assert [s["status"] for s in record["stages"] if s["name"] == "find"] == ["ok"]
    assert "--rebuild" in next(s["detail"] for s in record["stages"] if s["name"] == "find")
    rel = scorer.shipway("release", "-o", str(tmp_path / "rel.json"))
    assert rel.returncode == 0, rel.stderr
    assert requests.post(scorer.url("/predict"), json={}, timeout=5).json() == {"label": "dog"}
