"""No secret used in a run ends up in an image, a record, a log or a container's config.

A second, differently shaped app (tests/apps/lexicon_app: stdlib server on
9100, readiness on /ready, model under weights/, an API key as an app secret)
goes through publish → run → release with the registry password and the API
key set; then every place a secret could leak is searched for both values:
the commands' output, the JSON records, the pushed image (config, history and
every layer's bytes, via `docker save`), and the live container's config.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import tarfile
from pathlib import Path

import pytest
import requests

from shipway import dockerutil
from shipway.testing.project import AppProject, project_env
from shipway.testing.services import RegistryService, free_port

APP = Path(__file__).parent / "apps" / "lexicon_app"
BASE_IMAGE = os.environ.get("SHIPWAY_BASE_IMAGE", "shipway-base:bookworm")


def _members(saved: bytes) -> dict[str, bytes]:
    """Every file in a `docker save` archive, layer archives opened too (name → bytes)."""
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
        for member in outer.getmembers():
            f = outer.extractfile(member) if member.isfile() else None
            if f is None:
                continue
            data = f.read()
            out[member.name] = data
            if member.name.endswith(".tar"):
                with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                    for inner in layer.getmembers():
                        g = layer.extractfile(inner) if inner.isfile() else None
                        if g is not None:
                            out[f"{member.name}:{inner.name}"] = g.read()
    return out


def test_no_secret_reaches_an_image_a_record_or_a_log(
    tmp_path: Path, shipway_registry: RegistryService, shipway_docker: None
) -> None:
    api_key = "lex-" + secrets.token_urlsafe(24)
    fingerprint = hashlib.sha256(api_key.encode()).hexdigest()[:16]
    port = free_port()
    env = project_env(
        tmp_path,
        shipway_registry,
        drop=("LEXICON_",),
        LEXICON_API_KEY=api_key,
        LEXICON_KEY_FINGERPRINT=fingerprint,
        LEXICON_PORT=str(port),
        BASE_IMAGE=BASE_IMAGE,
    )
    app = AppProject.copy(APP, tmp_path / "app", env, port)
    outputs = []
    try:
        for args in (
            ("model", "publish", "weights_src", "--name", "lexicon"),
            ("run", "-o", str(tmp_path / "run.json")),
            ("release", "-o", str(tmp_path / "release.json")),
            ("status",),
        ):
            proc = app.shipway(*args)
            outputs.append(proc.stdout + proc.stderr)
            assert proc.returncode == 0, proc.stderr
        assert requests.get(app.url("/key-fingerprint"), timeout=5).json() == {"fingerprint": fingerprint}

        values = {"app secret": api_key, "registry password": shipway_registry.password}
        record = json.loads((tmp_path / "run.json").read_text())
        # verify's container was removed (beside the push) before the run ended
        verifying = {"label": "io.shipway.verify", "ancestor": record["local_image_id"]}
        assert dockerutil.client().containers.list(all=True, filters=verifying) == []
        pushed = record["image"]["repository"] + "@" + record["image"]["digest"]
        client = dockerutil.client()
        image = client.images.get(pushed)
        saved = b"".join(image.save(named=False))
        places: dict[str, str | bytes] = {f"output of command {i}": text for i, text in enumerate(outputs)}
        places.update({str(p): p.read_text() for p in (app.root / ".shipway").rglob("*.json")})
        places.update({str(p): p.read_text() for p in tmp_path.glob("*.json")})
        places["image config"] = json.dumps(image.attrs)
        places["image history"] = json.dumps(client.api.history(image.id))
        places.update(_members(saved))
        mine = ["io.shipway.app=lexicon", f"io.shipway.environment={env['SHIPWAY_ENVIRONMENT']}"]
        live = client.containers.list(filters={"label": mine})  # this test's release, not another test's
        assert live, "the release left no running container"
        # ... and its secret files with it: the only ones left are those the live release mounts
        mounted = {str(Path(m["Source"]).parent) for c in live for m in c.attrs["Mounts"]}
        left = {str(f) for f in (Path(env["SHIPWAY_CACHE_DIR"]) / "secrets").iterdir()}
        assert left, "the live release's secret files are missing"
        assert left <= mounted, (left, mounted)
        places.update({f"container {c.name} config": json.dumps(c.attrs) for c in live})
        assert len(places) > 10
        for what, value in values.items():
            needle = value.encode()
            leaks = [p for p, c in places.items() if needle in (c if isinstance(c, bytes) else c.encode())]
            assert leaks == [], f"the {what} was found in {leaks}"
    finally:
        app.shipway("down")


@pytest.fixture(autouse=True)
def _base_image(shipway_docker: None) -> None:
    try:
        dockerutil.client().images.get(BASE_IMAGE)
    except Exception:  # noqa: BLE001
        pytest.fail(f"base image {BASE_IMAGE} is missing: run scripts/services.sh", pytrace=False)
