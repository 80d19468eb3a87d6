"""The seed scenario end to end: model in Blob (Azurite), image in "ACR" (a local registry), released."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from shipway import dockerutil
from shipway.testing.project import AppProject
from shipway.testing.services import RegistryService, free_port

from shipway_azure.testing import AzuriteService

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "flask_app"
BASE_IMAGE = os.environ.get("SHIPWAY_BASE_IMAGE", "shipway-base:bookworm")


def test_azure_configuration_runs_end_to_end(
    azurite: AzuriteService, shipway_registry: RegistryService, shipway_docker: None, tmp_path: Path
) -> None:
    try:
        dockerutil.client().images.get(BASE_IMAGE)
    except Exception:  # noqa: BLE001
        pytest.fail(f"base image {BASE_IMAGE} is missing: run scripts/services.sh", pytrace=False)
    container = f"models-{uuid.uuid4().hex[:8]}"
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(container)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPWAY_", "AZURE_", "ACR_", "IDENTITY_"))}
    port = free_port()
    env.update(
        AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string,
        AZURE_STORAGE_CONTAINER=container,
        ACR_LOGIN_SERVER=shipway_registry.address,
        ACR_USERNAME=shipway_registry.username,
        ACR_PASSWORD=shipway_registry.password,
        DIGITS_PORT=str(port),
        SHIPWAY_ENVIRONMENT=f"azure-{uuid.uuid4().hex[:8]}",
        SHIPWAY_CACHE_DIR=str(tmp_path / "cache"),
        BASE_IMAGE=BASE_IMAGE,
        DOCKER_BUILDKIT="0",
    )
    app = AppProject.copy(EXAMPLE, tmp_path / "app", env, port)
    try:
        subprocess.run([sys.executable, "train.py", "--out", str(tmp_path / "model")], cwd=app.root, check=True)
        cfg = ("-c", "shipway.azure.yaml")
        assert app.shipway(*cfg, "validate").returncode == 0
        pub = app.shipway(*cfg, "model", "publish", str(tmp_path / "model"), "--name", "digits", "--alias", "production")
        assert pub.returncode == 0, pub.stderr
        run = app.shipway(*cfg, "run", "-o", str(tmp_path / "build.json"))
        assert run.returncode == 0, run.stderr
        record = app.record(tmp_path / "build.json")
        assert record["model"]["version"] == "1" and record["image"]["repository"] == f"{shipway_registry.address}/digits-api"
        rel = app.shipway(*cfg, "release")
        assert rel.returncode == 0, rel.stderr
        assert app.post_json_file("/score", "tests/data/seven.json")["label"] == 7
        secret = azurite.connection_string.split("AccountKey=")[1].split(";")[0]
        for path in (app.root / ".shipway").rglob("*.json"):
            text = path.read_text()
            assert secret not in text and shipway_registry.password not in text
    finally:
        app.shipway("-c", "shipway.azure.yaml", "down")
