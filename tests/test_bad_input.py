"""Bad input, end to end: the real ``shipway`` CLI on a broken project, store or backend.

Each case breaks one thing in a fresh copy of the lexicon app (tests/apps/lexicon_app:
port 9100, ``/ready``, the model in ``weights/``, an API key as a secret) and runs
the CLI as CI does, against the real registry with auth, Azurite, an S3 endpoint
and the Docker engine. Each must end with exactly the documented exit code
(README "Exit codes"), one ``error:`` line that names what and where and says how
to fix it, no traceback (unless ``--debug``) and no secret value anywhere in the
output. Cases with a dedicated test elsewhere are listed in docs/reliability.md
("Bad input") instead of repeated here.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shipway import dockerutil
from shipway.errors import ExitCode
from shipway.testing.project import AppProject, project_env
from shipway.testing.services import RegistryService, free_port
from shipway_aws.testing import TEST_ACCESS_KEY, S3ErrorServer
from shipway_azure.testing import DEV_ACCOUNT, AzuriteService, start_azurite
from shipway_kubernetes.testing import FakeApiServer

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "tests" / "apps" / "lexicon_app"
BASE_IMAGE = os.environ.get("SHIPWAY_BASE_IMAGE", "shipway-base:bookworm")
SMALL_RETRIES = "  retries: {attempts: 2, max_seconds: 5, backoff: 0.1, connect_timeout: 2, read_timeout: 5}\n"


class Lexicon(AppProject):
    """The lexicon app with a store, cache, repository, environment and port of its own."""

    secrets: list[str]

    @property
    def config(self) -> Path:
        return self.root / "shipway.yaml"

    def edit(self, old: str, new: str) -> None:
        text = self.config.read_text()
        assert old in text, old
        self.config.write_text(text.replace(old, new, 1))

    def store_section(self, section: str) -> None:
        """Replace the local model_store section with ``section`` (YAML lines)."""
        self.edit("model_store:\n  kind: local\n  path: ${SHIPWAY_MODEL_STORE}\n", section)

    def publish(self) -> Path:
        """Publish weights_src as lexicon:1; the stored version folder."""
        pub = self.shipway("model", "publish", str(self.root / "weights_src"), "--name", "lexicon")
        assert pub.returncode == 0, pub.stderr
        return Path(self.env["SHIPWAY_MODEL_STORE"]) / "lexicon" / "versions" / "1"


@dataclass
class Services:
    registry: RegistryService
    azurite: AzuriteService
    s3_denied: S3ErrorServer
    k8s: FakeApiServer
    kubeconfig: Path


@dataclass
class Case:
    """What to break, the command, and what the one error line must say."""

    name: str
    code: ExitCode
    words: tuple[str, ...]
    argv: tuple[str, ...] = ("run", "--skip-tests")
    setup: Callable[[Lexicon, Services], None] = lambda app, svc: None
    env: Callable[[Services], dict[str, str]] = lambda svc: {}
    debug: bool = False
    docker: bool = False
    extra_secrets: tuple[str, ...] = field(default=())
    absent: tuple[str, ...] = ()  # words the error line must not hold (noise)


def _manifest(version: Path) -> dict[str, object]:
    return dict(json.loads((version / "manifest.json").read_text()))


def _missing_file(app: Lexicon, svc: Services) -> None:
    (app.publish() / "files" / "lexicon.json").unlink()


def _manifest_not_json(app: Lexicon, svc: Services) -> None:
    (app.publish() / "manifest.json").write_text("{not json")


def _manifest_escapes(app: Lexicon, svc: Services) -> None:
    version = app.publish()
    data = _manifest(version)
    files = data["files"]
    assert isinstance(files, list)
    assert files
    files[0]["path"] = "../../../../etc/passwd"
    (version / "manifest.json").write_text(json.dumps(data))


def _unknown_model(app: Lexicon, svc: Services) -> None:
    app.publish()
    app.edit("  name: lexicon\n  into", "  name: no-such-model\n  into")


def _unknown_version(app: Lexicon, svc: Services) -> None:
    app.publish()
    app.edit("  name: lexicon\n  into", "  name: lexicon\n  select: '7'\n  into")


def _registry_retries(app: Lexicon, svc: Services) -> None:
    app.edit("  password: ${SHIPWAY_REGISTRY_PASSWORD}\n", "  password: ${SHIPWAY_REGISTRY_PASSWORD}\n" + SMALL_RETRIES)


def _azure(app: Lexicon, svc: Services) -> None:
    app.store_section(
        "model_store:\n  kind: azure_blob\n  connection_string: ${AZ_CONN}\n  container: models\n" + SMALL_RETRIES
    )


def _s3(app: Lexicon, svc: Services) -> None:
    app.store_section(
        "model_store:\n  kind: s3\n  bucket: models\n  region: us-east-1\n  endpoint_url: ${S3_URL}\n" + SMALL_RETRIES
    )


def _connection_string(endpoint: str, key: str) -> str:
    return f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={key};BlobEndpoint={endpoint};"


WRONG_AZURE_KEY = base64.b64encode(b"not-the-azurite-key-" + uuid.uuid4().bytes).decode()
WRONG_AWS_SECRET = f"wrong-aws-secret-{uuid.uuid4().hex}"


def _aws(url: str) -> dict[str, str]:
    return {
        "S3_URL": url,
        "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": WRONG_AWS_SECRET,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/shipway-tests/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/shipway-tests/aws-credentials",
    }


WRONG_K8S_TOKEN = f"wrong-token-{uuid.uuid4().hex}"


def _kubernetes(app: Lexicon, svc: Services) -> None:
    app.edit(
        "orchestrator:\n  kind: docker\n  host_port: ${LEXICON_PORT}\n",
        f"orchestrator:\n  kind: kubernetes\n  kubeconfig: {svc.kubeconfig}\n" + SMALL_RETRIES,
    )


def _broken_dockerfile(app: Lexicon, svc: Services) -> None:
    app.publish()
    dockerfile = app.root / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("COPY service/", "RUN exit 1\nCOPY service/", 1))


def _never_ready(app: Lexicon, svc: Services) -> None:
    app.publish()
    app.edit("  health: /ready\n", "  health: /never-ready\n")
    app.edit("release:\n", "release:\n  deadline: 4\n")


CASES = [
    Case(
        "model file missing",
        ExitCode.MODEL,
        ("lexicon:1", "lexicon.json", "missing", "publish the model again"),
        setup=_missing_file,
    ),
    Case(
        "manifest not json",
        ExitCode.MODEL,
        ("lexicon/versions/1/manifest.json", "unreadable manifest", "publish the model again"),
        setup=_manifest_not_json,
    ),
    Case(
        "manifest not json --debug",
        ExitCode.MODEL,
        ("lexicon/versions/1/manifest.json", "unreadable manifest", "publish the model again"),
        setup=_manifest_not_json,
        debug=True,
    ),
    Case(
        "manifest path escapes",
        ExitCode.MODEL,
        ("lexicon/versions/1/manifest.json", "../../../../etc/passwd", "publish the model again"),
        setup=_manifest_escapes,
        absent=("at least 1 item",),
    ),
    Case(
        "model name unknown",
        ExitCode.MODEL,
        ("no-such-model", "local store", "model.name", "shipway model publish"),
        setup=_unknown_model,
    ),
    Case("model version unknown", ExitCode.MODEL, ("lexicon", "7", "versions"), setup=_unknown_version),
    Case(
        "registry closed port",
        ExitCode.BACKEND,
        ("registry", "127.0.0.1:", "refused", "tries"),
        setup=_registry_retries,
        env=lambda svc: {"SHIPWAY_REGISTRY": f"127.0.0.1:{free_port()}"},
    ),
    Case(
        "registry closed port --debug",
        ExitCode.BACKEND,
        ("registry", "127.0.0.1:", "refused"),
        setup=_registry_retries,
        env=lambda svc: {"SHIPWAY_REGISTRY": f"127.0.0.1:{free_port()}"},
        debug=True,
    ),
    Case(
        "azure_blob closed port",
        ExitCode.BACKEND,
        ("azure_blob", "127.0.0.1:", "tries", "connection_string"),
        argv=("model", "list", "lexicon"),
        setup=_azure,
        env=lambda svc: {
            "AZ_CONN": _connection_string(f"http://127.0.0.1:{free_port()}/{DEV_ACCOUNT}", WRONG_AZURE_KEY)
        },
        extra_secrets=(WRONG_AZURE_KEY,),
    ),
    Case(
        "azure_blob wrong account key",
        ExitCode.BACKEND,
        ("azure_blob", "127.0.0.1:", "access denied", "connection_string"),
        argv=("model", "list", "lexicon"),
        setup=_azure,
        env=lambda svc: {"AZ_CONN": _connection_string(svc.azurite.blob_endpoint, WRONG_AZURE_KEY)},
        extra_secrets=(WRONG_AZURE_KEY,),
    ),
    Case(
        "s3 closed endpoint",
        ExitCode.BACKEND,
        ("s3", "127.0.0.1:", "endpoint_url"),
        argv=("model", "list", "lexicon"),
        setup=_s3,
        env=lambda svc: _aws(f"http://127.0.0.1:{free_port()}"),
        extra_secrets=(WRONG_AWS_SECRET,),
    ),
    Case(
        "s3 wrong keys",
        ExitCode.BACKEND,
        ("models", "InvalidAccessKeyId"),
        argv=("model", "list", "lexicon"),
        setup=_s3,
        env=lambda svc: _aws(svc.s3_denied.url),
        extra_secrets=(WRONG_AWS_SECRET,),
    ),
    Case(
        "kubernetes wrong token",
        ExitCode.BACKEND,
        ("Kubernetes API at http://127.0.0.1", "refused the credentials", "401", "check the kubeconfig user's token"),
        argv=("status",),
        setup=_kubernetes,
        extra_secrets=(WRONG_K8S_TOKEN,),
    ),
    Case(
        "dockerfile fails",
        ExitCode.BUILD_FAILED,
        ("build", "Dockerfile", "RUN exit 1", "non-zero code"),
        setup=_broken_dockerfile,
        docker=True,
    ),
    Case(
        "never ready",
        ExitCode.VERIFY_FAILED,
        ("did not become ready", "/never-ready", "404", "app.health", "release.deadline"),
        setup=_never_ready,
        docker=True,
    ),
]


@pytest.fixture(scope="module")
def services(shipway_registry: RegistryService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    azurite = start_azurite(tmp_path_factory.mktemp("azurite"))
    # What S3 answers to an access key it does not know (moto's server accepts any key).
    denied = S3ErrorServer(403, "InvalidAccessKeyId")
    # A kubeconfig whose bearer token the fake API server does not accept.
    k8s = FakeApiServer(token=WRONG_K8S_TOKEN).start()
    kubeconfig = k8s.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config")
    k8s.token = f"the-right-token-{uuid.uuid4().hex}"
    yield Services(shipway_registry, azurite, denied, k8s, kubeconfig)
    k8s.stop()
    denied.stop()
    azurite.stop()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_one_clear_error(case: Case, services: Services, tmp_path: Path) -> None:
    if case.docker:
        dockerutil.client().images.get(BASE_IMAGE)  # fails (never skips) when the base image is missing
    key = f"lexicon-key-{uuid.uuid4().hex}"
    port = free_port()
    env = project_env(
        tmp_path / "work",
        services.registry,
        drop=("LEXICON_", "AWS_", "AZ_"),
        LEXICON_API_KEY=key,
        LEXICON_PORT=str(port),
        LEXICON_KEY_FINGERPRINT="unused",
        BASE_IMAGE=BASE_IMAGE,
    )
    app = Lexicon.copy(APP, tmp_path / "app", env, port)
    app.edit("repository: lexicon\n", f"repository: bad-input/lexicon-{uuid.uuid4().hex[:8]}\n")
    case.setup(app, services)
    app.commit("broken")
    try:
        proc = app.shipway(*(("--debug",) if case.debug else ()), *case.argv, env=case.env(services))
    finally:
        if case.docker:
            app.shipway("down")
    out = proc.stdout + proc.stderr
    assert proc.returncode == case.code, out
    for secret in (key, services.registry.password, *case.extra_secrets):
        assert secret not in out, f"a secret value is in the output: {out}"
    if case.debug:
        assert "Traceback (most recent call last)" in proc.stderr, out
    else:
        assert "Traceback" not in out, out
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, proc.stderr
        for word in case.words:
            assert word.lower() in errors[0].lower(), errors[0]
        for word in case.absent:
            assert word.lower() not in errors[0].lower(), errors[0]
