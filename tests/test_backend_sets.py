"""One app on every backend set: the same example, the same commands, the same results.

The flask example goes through ``model publish``, ``run``, ``release``, a second
commit's ``run`` and ``release``, ``status`` and ``rollback`` on three sets of
backends, each driven by its own configuration file that differs from the
others only in the ``model_store``, ``registry`` and ``orchestrator`` sections:

- local: ``shipway.yaml`` — local store, ``oci`` registry, ``docker`` engine;
- Azure: ``shipway.azure.yaml`` — Azurite, a registry as ACR, the ARM stand-in + fake API server as AKS;
- AWS: ``shipway.aws.yaml`` — moto's S3, ECR's API on moto with a registry for its endpoint,
  EKS's API on moto + a fake API server that accepts only EKS tokens.

Every set must give the same verify outcomes (at build and after each
release), the same image labels and the same model digest, computed here from
the model's files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from shipway import dockerutil
from shipway import labels as L
from shipway.backends.base import model_sources, sha256_file
from shipway.domain import ModelFile, ModelVersion, utcnow
from shipway.testing.project import AppProject
from shipway.testing.services import RegistryService, ServiceError, free_port
from shipway_aws.testing import EksApiServer, MotoService
from shipway_azure.testing import AzureAuthServer, AzuriteService, start_azurite
from shipway_kubernetes.testing import FakeApiServer

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "flask_app"
BASE_IMAGE = os.environ.get("SHIPWAY_BASE_IMAGE", "shipway-base:bookworm")
BACKEND_SECTIONS = ("model_store", "registry", "orchestrator")
META = {"accuracy": "0.97"}
CHECKS = [
    ("GET /healthz", True, "status 200"),
    ("GET /version", True, "status 200"),
    ("POST /score", True, "status 200"),
    ("POST /score", True, "status 200"),
    ("POST /score", True, "status 422"),
]


@dataclass
class BackendSet:
    """How one set of backends is reached: its configuration file and environment."""

    config: str
    env: dict[str, str]
    repository: str  # where images must land


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's model, trained once: every set publishes the same files."""
    work = tmp_path_factory.mktemp("train")
    shutil.copytree(EXAMPLE, work / "app", ignore=shutil.ignore_patterns(".shipway", "build", "__pycache__"))
    out = work / "model"
    subprocess.run([sys.executable, "train.py", "--out", str(out)], cwd=work / "app", check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteService]:
    try:
        service = start_azurite(tmp_path_factory.mktemp("azurite"))
    except ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield service
    service.stop()


def clean_environment() -> dict[str, str]:
    """This process's environment without anything that selects or configures a backend."""
    prefixes = ("SHIPWAY_", "DIGITS_", "MODEL_SELECT", "BASE_IMAGE", "AZURE_", "ACR_", "AKS_", "K8S_",
                "KUBECONFIG", "AWS_", "ECR_", "EKS_", "IDENTITY_")  # fmt: skip
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def local_set(request: pytest.FixtureRequest, tmp_path: Path) -> BackendSet:
    reg: RegistryService = request.getfixturevalue("shipway_registry")
    env = {
        "SHIPWAY_REGISTRY": reg.address,
        "SHIPWAY_REGISTRY_USERNAME": reg.username,
        "SHIPWAY_REGISTRY_PASSWORD": reg.password,
        "SHIPWAY_MODEL_STORE": str(tmp_path / "store"),
        "DIGITS_PORT": str(free_port()),
    }
    return BackendSet("shipway.yaml", env, f"{reg.address}/digits-api")


def azure_set(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendSet]:
    reg: RegistryService = request.getfixturevalue("shipway_registry")
    azurite: AzuriteService = request.getfixturevalue("azurite")
    cluster: FakeApiServer = request.getfixturevalue("shipway_fake_k8s")
    auth = AzureAuthServer(refresh_token="unused: ACR signs in with a username and password here").start()
    cluster.token = auth.aad_token  # the AKS API server accepts Azure AD tokens
    cluster.write_kubeconfig(tmp_path / "aks-kubeconfig")
    auth.clusters["sub-1/ml-prod/ml-aks"] = (tmp_path / "aks-kubeconfig").read_text()
    container = f"models-{uuid.uuid4().hex[:8]}"
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(container)
    env = {
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "AZURE_STORAGE_CONTAINER": container,
        "ACR_LOGIN_SERVER": reg.address,
        "ACR_USERNAME": reg.username,
        "ACR_PASSWORD": reg.password,
        "AZURE_SUBSCRIPTION_ID": "sub-1",
        "AZURE_ARM_ENDPOINT": auth.url,
        "AZURE_CONFIG_DIR": str(tmp_path / "no-az-cli"),
        "K8S_DEADLINE": "60",
        **auth.identity_env(),
    }
    yield BackendSet("shipway.azure.yaml", env, f"{reg.address}/digits-api")
    auth.stop()


def aws_set(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendSet]:
    request.getfixturevalue("shipway_docker")
    moto: MotoService = request.getfixturevalue("shipway_aws_moto")
    ecr: RegistryService = request.getfixturevalue("shipway_ecr_registry")
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    moto.client("s3").create_bucket(Bucket=bucket)
    name = f"ml-eks-{uuid.uuid4().hex[:6]}"
    pull = {"username": ecr.username, "password": ecr.password, "serveraddress": ecr.address}
    cluster = EksApiServer(name, moto, pull_auth=pull).start()  # accepts only EKS tokens signed for `name`
    moto.create_cluster(name, cluster.url)
    env = {
        **moto.env(),
        "SHIPWAY_S3_BUCKET": bucket,
        "ECR_REGISTRY": ecr.address,
        "EKS_CLUSTER": name,
        "K8S_DEADLINE": "60",
    }
    yield BackendSet("shipway.aws.yaml", env, f"{ecr.address}/digits-api")
    cluster.stop()


SETS: dict[str, Any] = {"local": local_set, "azure": azure_set, "aws": aws_set}


@pytest.fixture(params=list(SETS))
def backend_set(request: pytest.FixtureRequest, tmp_path: Path, shipway_docker: None) -> Iterator[BackendSet]:
    try:
        dockerutil.client().images.get(BASE_IMAGE)
    except Exception:  # noqa: BLE001
        pytest.fail(f"base image {BASE_IMAGE} is missing: run scripts/services.sh", pytrace=False)
    made = SETS[request.param](request, tmp_path)
    if isinstance(made, BackendSet):
        yield made
    else:
        yield from made


def expected_model_digest(model: Path) -> str:
    files = tuple(ModelFile(path=rel, size=p.stat().st_size, sha256=sha256_file(p)) for rel, p in model_sources(model))
    return ModelVersion(name="digits", version="1", created=utcnow(), files=files, metadata=META).digest


def outcomes(record: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """The verify outcomes of a record, as (request, ok, detail) in order."""
    return [(c["check"], c["ok"], c["detail"]) for c in record["checks"]]


def test_the_example_gives_the_same_results_on_every_backend_set(
    backend_set: BackendSet, model_dir: Path, tmp_path: Path
) -> None:
    env = clean_environment()
    env.update(backend_set.env)
    env.update(
        SHIPWAY_ENVIRONMENT=f"sets-{uuid.uuid4().hex[:6]}",
        SHIPWAY_CACHE_DIR=str(tmp_path / "cache"),
        BASE_IMAGE=BASE_IMAGE,
        DOCKER_BUILDKIT="0",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # the app's tests run here
    )
    app = AppProject.copy(EXAMPLE, tmp_path / "app", env, free_port())
    cfg = ("-c", backend_set.config)
    digest = expected_model_digest(model_dir)
    try:
        pub = app.shipway(*cfg, "model", "publish", str(model_dir), "--name", "digits", "--alias", "production",
                          "--meta", "accuracy=0.97")  # fmt: skip
        assert pub.returncode == 0, pub.stderr
        assert f"published digits:1 {digest}" in pub.stdout

        first_commit = app.git("rev-parse", "HEAD")
        # The test stage is the same on every set (the files differ only in their backend sections, as
        # the next test proves): the app's tests run on the local set, the others go straight to the build.
        tests = [] if backend_set.config == "shipway.yaml" else ["--skip-tests"]
        run1 = app.shipway(*cfg, "run", *tests, "-o", str(tmp_path / "build1.json"))
        assert run1.returncode == 0, run1.stderr
        build1 = app.record(tmp_path / "build1.json")
        assert build1["status"] == "ok"
        assert outcomes(build1) == CHECKS
        assert build1["model"]["version"] == "1"
        assert build1["model_digest"] == digest
        assert build1["image"]["repository"] == backend_set.repository

        rel1 = app.shipway(*cfg, "release", "-o", str(tmp_path / "release1.json"))
        assert rel1.returncode == 0, rel1.stderr
        release1 = app.record(tmp_path / "release1.json")
        assert release1["action"] == "deployed"
        assert outcomes(release1) == CHECKS  # the same checks, live

        app_py = app.root / "digits_api" / "app.py"
        app_py.write_text(app_py.read_text() + "\n# a code-only change\n")
        second_commit = app.commit("code-only change")
        run2 = app.shipway(*cfg, "run", "--skip-tests", "-o", str(tmp_path / "build2.json"))
        assert run2.returncode == 0, run2.stderr
        build2 = app.record(tmp_path / "build2.json")
        assert build2["image"]["digest"] != build1["image"]["digest"]
        assert build2["model_digest"] == digest
        rel2 = app.shipway(*cfg, "release", "-o", str(tmp_path / "release2.json"))
        assert rel2.returncode == 0, rel2.stderr
        assert app.record(tmp_path / "release2.json")["action"] == "deployed"

        live = json.loads(app.shipway(*cfg, "status", "--json").stdout)
        assert live["state"] == "healthy"
        assert live["image"]["digest"] == build2["image"]["digest"]
        assert _trace(live["labels"]) == {
            L.MODEL_NAME: "digits",
            L.MODEL_VERSION: "1",
            L.MODEL_DIGEST: digest,
            L.REVISION: second_commit,
        }

        back = app.shipway(*cfg, "rollback", "-o", str(tmp_path / "rollback.json"))
        assert back.returncode == 0, back.stderr
        assert outcomes(app.record(tmp_path / "rollback.json")) == CHECKS
        restored = json.loads(app.shipway(*cfg, "status", "--json").stdout)
        assert restored["state"] == "healthy"
        assert restored["image"]["digest"] == build1["image"]["digest"]
        assert _trace(restored["labels"]) == {**_trace(live["labels"]), L.REVISION: first_commit}
    finally:
        app.shipway(*cfg, "down")


@pytest.mark.parametrize("config", ["shipway.azure.yaml", "shipway.aws.yaml"])
def test_the_files_differ_only_in_their_backend_sections(config: str) -> None:
    assert _sections_without_backends(EXAMPLE / config) == _sections_without_backends(EXAMPLE / "shipway.yaml")


def _trace(found: dict[str, str]) -> dict[str, str]:
    """The trace labels every orchestrator reports for the live image (created is per build, and the
    Kubernetes kinds do not report it)."""
    return {k: v for k, v in found.items() if k != L.CREATED}


def _sections_without_backends(path: Path) -> str:
    import yaml

    data = yaml.safe_load(path.read_text())
    return json.dumps({k: v for k, v in data.items() if k not in BACKEND_SECTIONS}, sort_keys=True)
