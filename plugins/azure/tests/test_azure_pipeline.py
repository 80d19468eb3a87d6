"""The seed scenario end to end: model in Blob, image in ACR, released to AKS.

Stand-ins: Azurite for Blob, a local registry with auth for ACR, the Azure AD
and ARM stand-ins for credentials, and the fake API server (pods are real
containers) for the AKS cluster. shipway.azure.yaml is used as it is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from shipway import dockerutil
from shipway.testing.project import AppProject
from shipway.testing.services import RegistryService, free_port
from shipway_azure.testing import AzureAuthServer, AzuriteService
from shipway_kubernetes.testing import FakeApiServer

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "flask_app"
BASE_IMAGE = os.environ.get("SHIPWAY_BASE_IMAGE", "shipway-base:bookworm")


def test_blob_acr_aks_end_to_end(
    azurite: AzuriteService,
    shipway_registry: RegistryService,
    azure_auth: AzureAuthServer,
    shipway_fake_k8s: FakeApiServer,
    tmp_path: Path,
) -> None:
    try:
        dockerutil.client().images.get(BASE_IMAGE)
    except Exception:  # noqa: BLE001
        pytest.fail(f"base image {BASE_IMAGE} is missing: run scripts/services.sh", pytrace=False)
    # The AKS cluster "ml-aks": ARM hands out a kubeconfig for the fake API server,
    # which accepts Azure AD tokens as AKS does.
    shipway_fake_k8s.token = azure_auth.aad_token
    shipway_fake_k8s.write_kubeconfig(tmp_path / "aks-kubeconfig")
    azure_auth.clusters["sub-1/ml-prod/ml-aks"] = (tmp_path / "aks-kubeconfig").read_text()
    container = f"models-{uuid.uuid4().hex[:8]}"
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(container)
    environment = f"azure-{uuid.uuid4().hex[:6]}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SHIPWAY_", "AZURE_", "ACR_", "AKS_", "K8S_", "KUBECONFIG"))
    }
    env.update(
        AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string,
        AZURE_STORAGE_CONTAINER=container,
        ACR_LOGIN_SERVER=shipway_registry.address,
        ACR_USERNAME=shipway_registry.username,
        ACR_PASSWORD=shipway_registry.password,
        AZURE_SUBSCRIPTION_ID="sub-1",
        AZURE_ARM_ENDPOINT=azure_auth.url,
        AZURE_CONFIG_DIR=str(tmp_path / "no-az-cli"),
        K8S_DEADLINE="30",
        SHIPWAY_ENVIRONMENT=environment,
        SHIPWAY_CACHE_DIR=str(tmp_path / "cache"),
        BASE_IMAGE=BASE_IMAGE,
        DOCKER_BUILDKIT="0",
        **azure_auth.identity_env(),
    )
    app = AppProject.copy(EXAMPLE, tmp_path / "app", env, free_port())
    cfg = ("-c", "shipway.azure.yaml")
    try:
        subprocess.run([sys.executable, "train.py", "--out", str(tmp_path / "model")], cwd=app.root, check=True)
        assert app.shipway(*cfg, "validate").returncode == 0
        pub = app.shipway(
            *cfg, "model", "publish", str(tmp_path / "model"), "--name", "digits", "--alias", "production"
        )
        assert pub.returncode == 0, pub.stderr
        run = app.shipway(*cfg, "run", "-o", str(tmp_path / "build.json"))
        assert run.returncode == 0, run.stderr
        record = app.record(tmp_path / "build.json")
        assert record["model"]["version"] == "1"
        assert record["image"]["repository"] == f"{shipway_registry.address}/digits-api"
        rel = app.shipway(*cfg, "release", "-o", str(tmp_path / "release.json"))
        assert rel.returncode == 0, rel.stderr
        assert app.record(tmp_path / "release.json")["action"] == "deployed"
        status = json.loads(app.shipway(*cfg, "status", "--json").stdout)
        assert status["state"] == "healthy"
        assert status["image"]["digest"] == record["image"]["digest"]
        url = f"{shipway_fake_k8s.url}/api/v1/namespaces/default/services/digits-api-{environment}:80/proxy/score"
        seven = json.loads((app.root / "tests/data/seven.json").read_text())
        resp = requests.post(url, json=seven, headers={"Authorization": f"Bearer {shipway_fake_k8s.token}"}, timeout=10)
        assert resp.json()["label"] == 7
        secret = azurite.connection_string.split("AccountKey=")[1].split(";")[0]
        for path in (app.root / ".shipway").rglob("*.json"):
            text = path.read_text()
            assert secret not in text
            assert shipway_registry.password not in text
            assert azure_auth.aad_token not in text
    finally:
        app.shipway(*cfg, "down")
