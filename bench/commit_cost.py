#!/usr/bin/env python3
"""What a commit costs: shipway vs a seed-style pipeline vs the no-model floor, warm and cold.

Run after the README's setup (a Docker engine, Debian's docker-registry, the
base image ``shipway-base:bookworm``, the venv)::

    .venv/bin/python bench/commit_cost.py --model-mib 256 --reps 3

Everything runs side by side in one invocation, alternating scenario by
scenario inside each repetition; the table shows medians. Scenarios:

- ``shipway warm``: a code-only commit of the example app with a model of
  ``--model-mib`` MiB, ``shipway run --skip-tests`` (build, verify, push).
- ``seed warm``: the same commit through the seed's pipeline: the model copied
  into the context, ``ADD . /code/`` before ``pip install``, ``docker build``,
  a ``sleep 10`` smoke test, ``docker push``.
- ``floor warm``: shipway with a tiny model (the app's own 20 KB weights).
- ``* cold``: the same on a runner with nothing cached: an empty shipway cache
  and a base image the engine has never built on and does not hold (a fresh
  one-line layer on ``shipway-base``, pushed to the bench's registry and
  removed from the engine, so the build pulls it as a hosted runner's does,
  and no app layer and no model layer is in the engine; wheels stay cached,
  PyPI is not what is measured).
- ``reused``: ``shipway run`` again with nothing changed (the nightly case).
- ``model-only``: a new model version, same code; ``plain upload``: the same
  number of random bytes uploaded as one blob to the same registry.
- ``plain download``: the model's largest file copied out of the local store
  (what a cold runner's download costs with this store), or with
  ``--link-mbit`` a GET of it over the link.
- ``plain load``: ``docker load`` of a one-layer image of the model's size:
  what the engine alone takes to hold the model, which verify needs before
  it can run the image.
- ``plain download into load``: the model's largest file downloaded (as for
  ``plain download``) and streamed into ``docker load`` as a one-layer image
  while it arrives: the least time in which any pipeline that runs the image
  it pushes can hold the model in the engine (the engine registers a layer
  only after its last byte).

``--model-only`` runs only the model-only change and its four floors (no
code commits, no seed pipeline), and prints where each stage's time went: a
few minutes a repetition, to study that one target (at several link rates,
say).

``--link-mbit N`` puts the registry and the model store on a network link of
N Mbit/s each way (Linux ``tc`` on loopback, :mod:`link`; root only; rate
only, no added latency): the apps read their models from an ``http`` store
(the example plugin ``shipway-http-store``, imported from the installed
distribution) served from the local stores' folder, the seed pipeline GETs
its model over the link before each build (its model is not in the
repository), and ``plain download`` is a GET of the model file. Without it,
both are on loopback, the stores are local folders and the seed's model
sits in its folder.

Bytes uploaded are what the registry's storage grew by. The registry is a
fresh ``docker-registry`` with htpasswd auth on a free 127.0.0.1 port.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import link
import requests

from shipway.oci import OciClient
from shipway.testing.services import RegistryService, free_port, start_registry, stop_process, wait_for_http

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "flask_app"
BASE = os.environ.get("SHIPWAY_BASE_IMAGE", "shipway-base:bookworm")
LOCAL_STORE = """\
model_store:
  kind: local
  path: ${SHIPWAY_MODEL_STORE:-.shipway/models}
"""
HTTP_STORE = """\
model_store:
  kind: http
  url: ${SHIPWAY_MODEL_STORE_URL}
"""
HTTP_CONFIG = "shipway.http.yaml"
"""The app's configuration with the http store (``--link-mbit``); ``model publish`` keeps the local one."""

SEED_DOCKERFILE = """\
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH MODEL_DIR=/code/model PORT=8000
ADD . /code/
WORKDIR /code
RUN python3 -m venv /opt/venv \\
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /code/wheels -r requirements.txt
CMD ["gunicorn", "-c", "/code/gunicorn.conf.py", "digits_api:create_app()"]
"""


def sh(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


class _RandomFile:
    """A read()-able source of ``size`` random bytes (for tarfile, without holding them in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return os.urandom(n)


def stored_bytes(reg: RegistryService) -> int:
    return sum(p.stat().st_size for p in (reg.root / "data").rglob("*") if p.is_file())


class Bench:
    def __init__(self, work: Path, model_mib: int, remote_store: bool, model_only: bool = False) -> None:
        self.work = work
        self.model_bytes = model_mib << 20
        self.model_only = model_only
        self.reg = start_registry(work / "registry")
        self.store_server: subprocess.Popen[bytes] | None = None
        self.store_port = 0
        self.served = work / "served"
        """The model stores and the seed's model: all the http store serves (``--link-mbit``), nothing else."""
        self.served.mkdir()
        if remote_store:
            self.store_port = free_port()
            serve = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(self.served)]
            self.store_server = subprocess.Popen(
                [*serve, str(self.store_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        try:
            if self.store_server is not None:
                wait_for_http(
                    f"http://127.0.0.1:{self.store_port}/", "the bench's http store", 30, process=self.store_server
                )
            self._set_up()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.reg.stop()
        if self.store_server is not None:
            stop_process(self.store_server)

    def _set_up(self) -> None:
        work = self.work
        self.docker_config = work / "docker-config"
        self.docker_config.mkdir()
        self.images: list[str] = []
        auth = base64.b64encode(f"{self.reg.username}:{self.reg.password}".encode()).decode()
        (self.docker_config / "config.json").write_text(json.dumps({"auths": {self.reg.address: {"auth": auth}}}))
        self.results: dict[str, list[tuple[float, int]]] = {}
        self.trained = work / "trained"
        sh([sys.executable, "train.py", "--out", str(self.trained)], cwd=EXAMPLE)
        self.apps = {name: self._app(name) for name in (("big",) if self.model_only else ("big", "tiny"))}
        if not self.model_only:
            self.seed = self._seed_app()

    # -- setup -------------------------------------------------------------------
    def env(self, app: str, **extra: str) -> dict[str, str]:
        # Without PYTHONDONTWRITEBYTECODE (tox and some shells set it): an installed shipway runs from bytecode,
        # where with it set every run compiles shipway's edited or never-run modules again.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SHIPWAY_", "SOURCE_DATE_EPOCH")) and k != "PYTHONDONTWRITEBYTECODE"
        }
        env.update(
            SHIPWAY_REGISTRY=self.reg.address,
            SHIPWAY_REGISTRY_USERNAME=self.reg.username,
            SHIPWAY_REGISTRY_PASSWORD=self.reg.password,
            SHIPWAY_MODEL_STORE=str(self.served / f"store-{app}"),
            SHIPWAY_MODEL_STORE_URL=f"http://127.0.0.1:{self.store_port}/store-{app}",
            SHIPWAY_CACHE_DIR=str(self.work / f"cache-{app}"),
            SHIPWAY_ENVIRONMENT=f"bench-{app}",
            DIGITS_PORT=str(free_port()),
            BASE_IMAGE=BASE,
            DOCKER_BUILDKIT="0",
            DOCKER_CONFIG=str(self.docker_config),
            PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        )
        env.update(extra)
        return env

    def shipway(self, app: str, *args: str, **env: str) -> dict[str, Any]:
        out = self.work / f"record-{uuid.uuid4().hex[:8]}.json"
        cmd = [sys.executable, "-m", "shipway.cli", *args]
        if args[0] == "run" and self.store_server is not None:
            cmd[3:3] = ["-c", HTTP_CONFIG]
        if args[0] == "run":
            cmd += ["--skip-tests", "-o", str(out)]
        sh(cmd, cwd=self.work / app, env=self.env(app, **env))
        return json.loads(out.read_text()) if out.is_file() else {}

    def _git_init(self, folder: Path) -> None:
        sh(["git", "init", "-q", "-b", "main"], cwd=folder)
        self.commit(folder, "app")

    def commit(self, folder: Path, message: str) -> None:
        sh(["git", "add", "-A"], cwd=folder)
        sh(["git", "-c", "user.name=bench", "-c", "user.email=bench@invalid", "commit", "-qm", message], cwd=folder)

    def model_folder(self, app: str) -> Path:
        folder = self.work / f"model-{app}-{uuid.uuid4().hex[:6]}"
        shutil.copytree(self.trained, folder)
        if app == "big":
            with (folder / "pad.bin").open("wb") as f:
                for _ in range(self.model_bytes >> 20):
                    f.write(os.urandom(1 << 20))
        return folder

    def publish(self, app: str) -> None:
        folder = self.model_folder(app)
        self.shipway(app, "model", "publish", str(folder), "--name", "digits")
        shutil.rmtree(folder)
        if self.store_server is not None:
            from shipway_http_store.store import write_index  # --link-mbit only (checked in main)

            write_index(self.served / f"store-{app}")

    def _app(self, name: str) -> str:
        shutil.copytree(EXAMPLE, self.work / name, ignore=shutil.ignore_patterns(".shipway", "build", "__pycache__"))
        if self.store_server is not None:
            config = (self.work / name / "shipway.yaml").read_text()
            assert LOCAL_STORE in config, "the example's model_store section changed: update LOCAL_STORE"
            (self.work / name / HTTP_CONFIG).write_text(config.replace(LOCAL_STORE, HTTP_STORE))
        self._git_init(self.work / name)
        self.publish(name)
        # Not timed: the first build on this engine fills the caches (its layers leave the engine by
        # docker save); the second is the first push to the staging registry (every layer sent once).
        self.shipway(name, "run")
        self.shipway(name, "run", "--rebuild")
        return name

    def _seed_app(self) -> Path:
        folder = self.work / "seed"
        shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".shipway", "build", "__pycache__"))
        (folder / "Dockerfile").write_text(SEED_DOCKERFILE)
        (folder / ".dockerignore").write_text(".git\n")
        model = self.model_folder("big")
        shutil.copytree(model, folder / "model")
        model.rename(self.served / "seed-model")  # where its pipeline GETs it from with --link-mbit
        wheels = next((self.work / "cache-big" / "wheelhouse").glob("*/"))
        shutil.copytree(wheels, folder / "wheels")
        self._git_init(folder)
        self.seed_pipeline(BASE)  # first build, not timed
        return folder

    # -- pipelines -----------------------------------------------------------------
    def seed_pipeline(self, base: str) -> None:
        folder = self.work / "seed"
        image = f"{self.reg.address}/seed:{uuid.uuid4().hex[:12]}"
        self.images.append(image)
        env = {**os.environ, "DOCKER_BUILDKIT": "0", "DOCKER_CONFIG": str(self.docker_config)}
        if self.store_server is not None:  # the model from the store, as the seed's CI step downloads it
            part = folder / "model" / "pad.bin.part"
            _get_to(f"http://127.0.0.1:{self.store_port}/seed-model/pad.bin", part)
            part.replace(folder / "model" / "pad.bin")
        sh(["docker", "build", "-q", "--build-arg", f"BASE_IMAGE={base}", "-t", image, "."], cwd=folder, env=env)
        port = free_port()
        cid = sh(["docker", "run", "-d", "-p", f"127.0.0.1:{port}:8000", image], env=env).strip()
        try:
            time.sleep(10)
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).raise_for_status()
        finally:
            sh(["docker", "rm", "-f", cid], env=env)
        sh(["docker", "push", "-q", image], env=env)

    def code_change(self, folder: Path) -> None:
        app_py = folder / "digits_api" / "app.py"
        app_py.write_text(app_py.read_text() + f"\n# change {uuid.uuid4().hex[:8]}\n")
        self.commit(folder, "code-only change")

    def fresh_base(self) -> str:
        """A base the engine never built on and does not hold: the cold run's build pulls it, as on a
        hosted runner (its bottom layers are ``shipway-base``'s, which the engine keeps: only the top one
        is pulled)."""
        local = f"bench-base:{uuid.uuid4().hex[:10]}"
        pulled = f"{self.reg.address}/{local}"
        self.images.append(pulled)
        dockerfile = f"FROM {BASE}\nRUN echo {local} > /etc/bench-base\n"
        env = {**os.environ, "DOCKER_BUILDKIT": "0", "DOCKER_CONFIG": str(self.docker_config)}
        subprocess.run(
            ["docker", "build", "-q", "-t", local, "-t", pulled, "-"],
            input=dockerfile,
            text=True,
            capture_output=True,
            check=True,
            env=env,
        )
        sh(["docker", "push", "-q", pulled], env=env)
        sh(["docker", "rmi", local, pulled], env=env)
        return pulled

    def measure(self, name: str, action: Callable[[], object]) -> None:
        before = stored_bytes(self.reg)
        # Every scenario starts on a settled disk: a scenario that loads 1 GiB leaves gigabytes of dirty
        # pages, and none should pay for another's writeback. (It does not settle the page cache: the later
        # repetitions' first runs still start with evicted files, bench/RESULTS.md "Latest".)
        os.sync()
        start = time.monotonic()
        found = action()
        seconds = time.monotonic() - start
        self.results.setdefault(name, []).append((seconds, stored_bytes(self.reg) - before))
        stages = ""
        if isinstance(found, dict) and found.get("stages"):
            stages = "  (" + ", ".join(f"{s['name']} {s['seconds']:.1f}" for s in found["stages"]) + ")"
            if self.model_only:  # where each stage's time went, for the one scenario this mode measures
                stages += "".join(f"\n      {s['name']}: {s.get('detail', '')}" for s in found["stages"])
        print(f"  {name:<24} {seconds:7.2f} s  {(stored_bytes(self.reg) - before) / 1e6:9.1f} MB{stages}", flush=True)

    def cold_cache(self, app: str) -> str:
        cache = self.work / f"cold-{app}-{uuid.uuid4().hex[:6]}"
        wheels = self.work / f"cache-{app}" / "wheelhouse"
        shutil.copytree(wheels, cache / "wheelhouse")
        return str(cache)

    def plain_upload(self) -> None:
        """The floor of a model-only change: the same number of bytes as one blob, to the same registry."""
        client = OciClient(self.reg.address, self.reg.username, self.reg.password)
        block = os.urandom(1 << 20)
        count = self.model_bytes >> 20

        def chunks() -> Iterator[bytes]:
            for i in range(count):
                yield block[:-8] + i.to_bytes(8, "big")

        digest = hashlib.sha256()
        for chunk in chunks():
            digest.update(chunk)
        name = "sha256:" + digest.hexdigest()
        self.measure("plain upload", lambda: client.upload_blob("plain", name, count << 20, chunks))

    def _plain_load_archive(self) -> Path:
        """A ``docker save``-style archive of one layer holding ``--model-mib`` MiB of random bytes."""
        layer = self.work / "plain-layer.tar"
        with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo("model/pad.bin")
            info.size = self.model_bytes
            tar.addfile(info, _RandomFile(self.model_bytes))
        digest = hashlib.sha256()
        with layer.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": ["sha256:" + digest.hexdigest()]},
            }
        ).encode()
        manifest = json.dumps(
            [{"Config": "config.json", "RepoTags": ["bench-plain-load:latest"], "Layers": ["layer.tar"]}]
        )
        archive = self.work / "plain-load.tar"
        with tarfile.open(archive, "w") as tar:
            for name, data in (("config.json", config), ("manifest.json", manifest.encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            tar.add(layer, arcname="layer.tar")
        layer.unlink()
        return archive

    def plain_load(self) -> None:
        """The engine's floor: ``docker load`` of the model's bytes as a one-layer image (then removed)."""
        archive = self._plain_load_archive()
        try:
            self.measure("plain load", lambda: sh(["docker", "load", "-q", "-i", str(archive)]))
        finally:
            subprocess.run(["docker", "rmi", "-f", "bench-plain-load:latest"], capture_output=True)
            archive.unlink()

    def _largest_model_file(self) -> Path:
        return max((p for p in (self.served / "store-big").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)

    def _model_chunks(self, largest: Path) -> Iterator[bytes]:
        """The model's largest file as it arrives: read from the local store, or a GET over the link."""
        if self.store_server is None:
            with largest.open("rb") as f:
                while chunk := f.read(1 << 20):
                    yield chunk
            return
        url = f"http://127.0.0.1:{self.store_port}/{largest.relative_to(self.served)}"
        with requests.get(url, stream=True, timeout=60) as resp:
            resp.raise_for_status()
            yield from resp.iter_content(1 << 20)

    def plain_streamed_load(self) -> None:
        """The floor of any pipeline that runs the image it pushes: the model's download streamed into
        ``docker load`` as a one-layer image while it arrives (what the engine does after the last byte,
        registering the layer, is then all that is added to the download)."""
        largest = self._largest_model_file()
        size = largest.stat().st_size
        tag = f"bench-streamed-load:{uuid.uuid4().hex[:8]}"

        def header(name: str, length: int) -> bytes:
            info = tarfile.TarInfo(name)
            info.size = length
            return info.tobuf(format=tarfile.PAX_FORMAT)

        def pad(length: int) -> bytes:
            return b"\0" * (-length % 512)

        inner_head = header("model/pad.bin", size)
        inner_size = len(inner_head) + size + len(pad(size)) + 1024

        def archive() -> Iterator[bytes]:
            digest = hashlib.sha256(inner_head)
            yield header("layer.tar", inner_size) + inner_head
            for chunk in self._model_chunks(largest):
                digest.update(chunk)
                yield chunk
            tail = pad(size) + b"\0" * 1024
            digest.update(tail)
            yield tail + pad(inner_size)
            config = json.dumps(
                {
                    "architecture": "amd64",
                    "os": "linux",
                    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + digest.hexdigest()]},
                }
            ).encode()
            manifest = json.dumps([{"Config": "config.json", "RepoTags": [tag], "Layers": ["layer.tar"]}]).encode()
            for name, data in (("config.json", config), ("manifest.json", manifest)):
                yield header(name, len(data)) + data + pad(len(data))
            yield b"\0" * 1024

        def load() -> None:
            client = docker.from_env(timeout=600)
            try:
                for line in client.api.load_image(archive()):
                    if "error" in line:
                        raise SystemExit(f"docker load failed: {line['error']}")
            finally:
                client.close()

        try:
            self.measure("plain download into load", load)
        finally:
            subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)

    def plain_download(self) -> None:
        """A cold runner's download of the model's largest file: copied from the local store, or a GET."""
        largest = self._largest_model_file()
        target = self.work / "plain-download.bin"
        if self.store_server is None:
            self.measure("plain download", lambda: shutil.copyfile(largest, target))
        else:
            url = f"http://127.0.0.1:{self.store_port}/{largest.relative_to(self.served)}"
            self.measure("plain download", lambda: _get_to(url, target))
        target.unlink()

    def rep(self) -> None:
        if not self.model_only:
            self.code_commits()
        self.publish("big")
        self.measure("model-only", lambda: self.shipway("big", "run"))
        self.plain_upload()
        self.plain_download()
        self.plain_load()
        self.plain_streamed_load()

    def code_commits(self) -> None:
        """The code-only scenarios: warm, reused and cold, for shipway, the seed and the floor."""
        big, tiny, seed = self.work / "big", self.work / "tiny", self.work / "seed"
        if "floor cold" in self.results:
            # The last repetition's floor ran cold, on a base and cache of its own, where shipway's warm run
            # follows the model-only change's build on the usual ones: one untimed run puts the floor there
            # too. Before the seed, so that both warm runs start after gigabytes moved (without it, the floor's
            # later warm runs took 6-7 s against 3.5 s in the first repetition; right before the floor's own
            # warm run, its files were the only ones in the page cache).
            self.shipway("tiny", "run")
        self.code_change(big)
        self.measure("shipway warm", lambda: self.shipway("big", "run"))
        self.measure("reused (nightly)", lambda: self.shipway("big", "run"))
        self.code_change(seed)
        self.measure("seed warm", lambda: self.seed_pipeline(BASE))
        self.code_change(tiny)
        self.measure("floor warm", lambda: self.shipway("tiny", "run"))
        base = self.fresh_base()
        self.code_change(big)
        cache = self.cold_cache("big")
        self.measure("shipway cold", lambda: self.shipway("big", "run", BASE_IMAGE=base, SHIPWAY_CACHE_DIR=cache))
        self.code_change(seed)
        self.measure("seed cold", lambda: self.seed_pipeline(base))
        self.code_change(tiny)
        cache = self.cold_cache("tiny")
        other = self.fresh_base()  # its own: the big app's cold build would warm Docker's cache for it
        self.measure("floor cold", lambda: self.shipway("tiny", "run", BASE_IMAGE=other, SHIPWAY_CACHE_DIR=cache))


def _get_to(url: str, target: Path) -> None:
    with requests.get(url, stream=True, timeout=60) as resp, target.open("wb") as f:
        resp.raise_for_status()
        for chunk in resp.iter_content(1 << 20):
            f.write(chunk)


def table(bench: Bench, reps: int, model_mib: int, link_mbit: int) -> str:
    med = {
        name: (statistics.median(s for s, _ in runs), statistics.median(b for _, b in runs))
        for name, runs in bench.results.items()
    }
    lines = [
        f"model: {model_mib} MiB of random bytes (+ the app's 20 KB weights); {reps} repetitions, medians",
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        (
            f"link: registry and http model store at {link_mbit} Mbit/s each way (tc on loopback)"
            if link_mbit
            else "link: registry on loopback, local folder model store"
        ),
        "",
        "| scenario | seconds | MB uploaded |",
        "| --- | ---: | ---: |",
    ]
    for name, (sec, up) in med.items():
        lines.append(f"| {name} | {sec:.2f} | {up / 1e6:.1f} |")

    def ratio(a: str, b: str) -> str:
        return f"{med[a][0] / med[b][0]:.2f}x" if a in med and b in med and med[b][0] else "n/a"

    def both(a: str, b: str, c: str) -> str:
        return f"{med[a][0] / (med[b][0] + med[c][0]):.2f}x" if all(n in med for n in (a, b, c)) else "n/a"

    def over(unit: str) -> str:
        """What shipway's cold run costs above the cold floor, in units of ``unit``'s time."""
        names = ("shipway cold", "floor cold", unit)
        if not all(n in med for n in names) or not med[unit][0]:
            return "n/a"
        return f"{(med['shipway cold'][0] - med['floor cold'][0]) / med[unit][0]:.2f}"

    lines += [
        "",
        "| ratio | value |",
        "| --- | ---: |",
        f"| seed warm / shipway warm (target >= 20x) | {ratio('seed warm', 'shipway warm')} |",
        f"| shipway warm / floor warm (target <= 1.2x) | {ratio('shipway warm', 'floor warm')} |",
        f"| seed cold / shipway cold | {ratio('seed cold', 'shipway cold')} |",
        f"| shipway cold / floor cold | {ratio('shipway cold', 'floor cold')} |",
        f"| (shipway cold - floor cold) / plain download (target <= 1.5) | {over('plain download')} |",
        f"| (shipway cold - floor cold) / plain load | {over('plain load')} |",
        f"| model-only / plain upload (target <= 1.5x) | {ratio('model-only', 'plain upload')} |",
        f"| model-only / (plain download + plain upload) | {both('model-only', 'plain download', 'plain upload')} |",
        f"| plain load / plain upload (the engine's own floor) | {ratio('plain load', 'plain upload')} |",
        f"| plain download into load / plain upload (the floor of running what is pushed) "
        f"| {ratio('plain download into load', 'plain upload')} |",
        f"| model-only / plain download into load | {ratio('model-only', 'plain download into load')} |",
        f"| model-only MB uploaded / model MB (target <= 1.05) | {med['model-only'][1] / (model_mib << 20):.3f} |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-mib", type=int, default=256)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--link-mbit",
        type=int,
        default=0,
        help="registry and an http model store behind a link of this many Mbit/s (root; default: loopback)",
    )
    parser.add_argument(
        "--model-only",
        action="store_true",
        help="only the model-only change and its floors: no code commits, no seed pipeline",
    )
    args = parser.parse_args()
    if args.link_mbit < 0:
        parser.error("--link-mbit must be 0 (loopback) or a rate in Mbit/s")
    if args.link_mbit > 0:
        link.check()  # before minutes of setup
        if importlib.util.find_spec("shipway_http_store") is None:
            parser.error("--link-mbit serves the models over http: pip install -e examples/plugin_http_store first")
    work = Path(tempfile.mkdtemp(prefix="shipway-bench-"))
    bench = None
    try:
        print(f"setting up in {work} ...", flush=True)
        bench = Bench(work, args.model_mib, remote_store=args.link_mbit > 0, model_only=args.model_only)
        ports = [int(bench.reg.address.rsplit(":", 1)[1]), bench.store_port]
        with link.shaped(ports, args.link_mbit) if args.link_mbit > 0 else contextlib.nullcontext():
            for i in range(args.reps):
                print(f"repetition {i + 1}/{args.reps}", flush=True)
                bench.rep()
        print()
        print(table(bench, args.reps, args.model_mib, args.link_mbit))
    finally:
        if bench is not None:
            bench.stop()
            subprocess.run(["docker", "rmi", "-f", *bench.images], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
