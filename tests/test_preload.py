"""The model layer loaded into the real engine ahead of the final image, and what a killed run leaves."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shipway import dockerutil, image
from shipway.domain import ModelFile, ModelVersion
from shipway.errors import BuildFailed
from shipway.layers import ModelLayer, model_layer
from shipway.manifest import sha256

BASE_IMAGE = os.environ.get("SHIPWAY_BASE_IMAGE", "shipway-base:bookworm")

pytestmark = pytest.mark.usefixtures("shipway_docker")


def _layer(tmp_path: Path) -> ModelLayer:
    data = os.urandom(200_000)  # a layer no other test's image holds
    (tmp_path / "weights.bin").write_bytes(data)
    version = ModelVersion(
        name="m",
        version="1",
        created=datetime(2026, 1, 1, tzinfo=UTC),
        files=(ModelFile(path="weights.bin", size=len(data), sha256=hashlib.sha256(data).hexdigest()),),
    )
    return model_layer(version, tmp_path, "/srv/model", tmp_path / "cache")


def _platform() -> dict[str, str]:
    found = image.base_platform(BASE_IMAGE)
    assert found is not None
    return found


def test_preload_puts_the_model_on_the_base_chain_once(tmp_path: Path) -> None:
    base = image.base_layers(BASE_IMAGE)
    assert base
    layer = _layer(tmp_path)
    cache = tmp_path / "cache"
    first = image.preload(base, layer, threading.Event(), platform=_platform(), cache_dir=cache)
    try:
        assert first is not None
        loaded = dockerutil.client().images.get(first)
        assert loaded.attrs["RootFS"]["Layers"] == [*base, layer.digest]
        assert loaded.tags == []  # untagged: removed by ID when the final image holds the chain
        assert loaded.labels[image.PRELOAD_LABEL] == f"{socket.gethostname()}-{os.getpid()}"
        # The engine holds the chain now: a second preload sends nothing.
        assert image.preload(base, layer, threading.Event(), platform=_platform(), cache_dir=cache) is None
    finally:
        image.drop(first or "")
    # Gone from the engine: the next preload loads it again.
    again = image.preload(base, layer, threading.Event(), platform=_platform(), cache_dir=cache)
    try:
        assert again == first
    finally:
        image.drop(again or "")


def test_a_stopped_preload_loads_nothing(tmp_path: Path) -> None:
    base = image.base_layers(BASE_IMAGE)
    assert base is not None
    layer = _layer(tmp_path)
    stop = threading.Event()
    stop.set()
    with pytest.raises(BuildFailed, match="no longer wanted"):
        image.preload(base, layer, stop, platform=_platform(), cache_dir=tmp_path / "cache")
    tops = [i for i in dockerutil.client().images.list(all=True) if i.attrs["RootFS"]["Layers"][-1:] == [layer.digest]]
    assert tops == []


def _labelled(owner: str, tmp_path: Path) -> str:
    """An image labelled as the preload of ``owner`` (host-pid), loaded into the engine."""
    base = image.base_layers(BASE_IMAGE)
    assert base is not None
    config = json.dumps(
        {
            **_platform(),
            "config": {"Labels": {image.PRELOAD_LABEL: owner}},
            "rootfs": {"type": "layers", "diff_ids": base},
        }
    ).encode()
    image._docker_load(config, base, [], None)
    return sha256(config)


def test_the_next_run_removes_a_killed_runs_preload_and_keeps_a_live_ones(tmp_path: Path) -> None:
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = _labelled(f"{socket.gethostname()}-{int(ended.stdout)}", tmp_path)
    live_process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    live = _labelled(f"{socket.gethostname()}-{live_process.pid}", tmp_path)
    try:
        image.remove_abandoned_preloads()
        ids = {i.id for i in dockerutil.client().images.list(all=True)}
        assert dead not in ids
        assert live in ids
    finally:
        live_process.kill()
        live_process.wait()
        image.drop(dead)
        image.drop(live)
