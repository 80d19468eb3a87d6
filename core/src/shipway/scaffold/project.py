"""The project files `shipway init` writes: shipway.yaml, Dockerfile, .dockerignore."""

from __future__ import annotations

import json

from shipway.scaffold.answers import Answers


def q(value: object) -> str:
    """A YAML scalar for ``value`` (JSON is YAML): quoting never depends on the value."""
    return json.dumps(value)


def env_prefix(name: str) -> str:
    """``digits-api`` → ``DIGITS_API``: the prefix of the app's own environment variables."""
    return name.upper().replace("-", "_")


STORE = {
    "local": """\
model_store:
  kind: local
  # A folder (relative to this file). Publish with: shipway model publish PATH --name {model}
  path: ${{SHIPWAY_MODEL_STORE:-.shipway/models}}
""",
    "azure_blob": """\
model_store:
  kind: azure_blob
  # Real Azure: AZURE_STORAGE_ACCOUNT_URL, and the identity found by DefaultAzureCredential
  # (role: Storage Blob Data Reader; Contributor to publish). Azurite: a connection string.
  account_url: ${{AZURE_STORAGE_ACCOUNT_URL:-}}
  connection_string: ${{AZURE_STORAGE_CONNECTION_STRING:-}}
  container: ${{AZURE_STORAGE_CONTAINER:-models}}
""",
    "s3": """\
model_store:
  kind: s3
  # Credentials: the boto3 chain (OIDC role in CI, AWS_PROFILE locally). Role: s3:GetObject/ListBucket.
  bucket: ${{S3_BUCKET}}
  prefix: ${{S3_PREFIX:-}}
  region: ${{AWS_REGION:-}}
  endpoint_url: ${{S3_ENDPOINT_URL:-}}
""",
}

REGISTRY = {
    "oci": """\
registry:
  kind: oci
  address: ${{SHIPWAY_REGISTRY:-127.0.0.1:5000}}   # host[:port] of any OCI registry
  repository: {name}
  username: ${{SHIPWAY_REGISTRY_USERNAME:-}}        # unset: the docker config (docker login)
  password: ${{SHIPWAY_REGISTRY_PASSWORD:-}}        # secrets only ever come from the environment
""",
    "acr": """\
registry:
  kind: acr
  login_server: ${{ACR_LOGIN_SERVER}}                # contoso.azurecr.io
  repository: {name}
  # Unset: Azure AD via DefaultAzureCredential (role: AcrPush).
  username: ${{ACR_USERNAME:-}}
  password: ${{ACR_PASSWORD:-}}
""",
    "ecr": """\
registry:
  kind: ecr
  # Credentials: the boto3 chain (role: ECR push). The repository is created on first push.
  account: ${{AWS_ACCOUNT_ID}}
  region: ${{AWS_REGION:-}}
  repository: {name}
""",
}

ORCHESTRATOR = {
    "docker": """\
orchestrator:
  kind: docker
  host_port: ${{{prefix}_HOST_PORT:-{host_port}}}    # where the release answers on this machine
""",
    "swarm": """\
orchestrator:
  kind: swarm
  published_port: ${{{prefix}_HOST_PORT:-{host_port}}}
  publish_mode: host          # ingress needs the routing mesh (IPVS); host mode works everywhere
  endpoint_mode: dnsrr
""",
    "kubernetes": """\
orchestrator:
  kind: kubernetes
  # $KUBECONFIG, then ~/.kube/config (EKS: aws eks update-kubeconfig; any cluster works).
  namespace: ${{K8S_NAMESPACE:-default}}
  kubernetes_version: "1.30"
""",
    "eks": """\
orchestrator:
  kind: eks
  # Credentials from AWS (the boto3 chain), as `aws eks get-token`: the identity needs
  # eks:DescribeCluster and a Kubernetes role in the namespace (access entry or aws-auth).
  cluster: ${{EKS_CLUSTER}}
  region: ${{AWS_REGION:-}}
  namespace: ${{K8S_NAMESPACE:-default}}
""",
    "aks": """\
orchestrator:
  kind: aks
  # Credentials from Azure, as `az aks get-credentials` (role: AKS Cluster User + an RBAC role).
  subscription_id: ${{AZURE_SUBSCRIPTION_ID}}
  resource_group: ${{AKS_RESOURCE_GROUP}}
  cluster: ${{AKS_CLUSTER}}
  namespace: ${{K8S_NAMESPACE:-default}}
""",
}

# Values init validates with when the variable is unset (init runs before CI's secrets exist).
SAMPLE_ENV = {
    "ACR_LOGIN_SERVER": "contoso.azurecr.io",
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "AKS_RESOURCE_GROUP": "ml",
    "AKS_CLUSTER": "ml-aks",
    "S3_BUCKET": "ml-models",
    "AWS_ACCOUNT_ID": "123456789012",
    "AWS_REGION": "eu-west-1",
    "EKS_CLUSTER": "ml-eks",
    "AZURE_STORAGE_ACCOUNT_URL": "https://contosomodels.blob.core.windows.net",
}


def shipway_yaml(a: Answers) -> str:
    """A commented shipway.yaml for the answers; it validates once its backends are installed."""
    prefix = env_prefix(a.name)
    test = (
        f"test:\n  command: {q(a.test_command)}   # the app's tests: a failure stops the run before the build\n"
        if a.test_command
        else "# test:\n#   command: [python3, -m, pytest, -q]   # the app's tests, run before the build\n"
    )
    wheelhouse = (
        f"  wheelhouse:                   # pip download on the host; the image installs offline\n"
        f"    requirements: {q(a.requirements)}\n"
        f"    python_version: {q(a.python_version)}\n"
        if a.requirements
        else ""
    )
    fmt = {"name": a.name, "model": a.model, "prefix": prefix, "host_port": a.host_port}
    return (
        f"# shipway.yaml for {a.name}, written by `shipway init`.\n"
        "# `shipway validate` checks it; `shipway schema` prints every key; ${VAR} and ${VAR:-default}\n"
        "# come from the environment (secrets must); paths are relative to this file.\n"
        "version: 1\n"
        "app:\n"
        f"  name: {a.name}\n"
        "  context: .\n"
        "  dockerfile: Dockerfile\n"
        f"  port: {a.port}                    # the port the app listens on inside the container\n"
        f"  health: {q(a.health)}               # 200 here means ready\n"
        f"{test}"
        "model:\n"
        f"  name: {a.model}\n"
        f'  select: ${{{prefix}_MODEL:-latest}}   # latest, a version such as "3", or "@alias"\n'
        f"  into: {q(a.model_into)}             # where the app finds the files (under the WORKDIR)\n"
        "build:\n"
        "  base_image: ${BASE_IMAGE:-python:3.11-slim}   # build arg BASE_IMAGE\n"
        "  model_layer: shipway       # shipway writes the model layer (the Dockerfile does not COPY it)\n"
        f"{wheelhouse}"
        f"{STORE[a.store].format(**fmt)}"
        f"{REGISTRY[a.registry].format(**fmt)}"
        f"{ORCHESTRATOR[a.orchestrator].format(**fmt)}"
        "# Checks run against the built image before the push, and against every release.\n"
        "verify:\n"
        f"  - {{request: {q('GET ' + a.health)}, expect_status: 200}}\n"
        "  # - {request: POST /predict, body_file: tests/data/sample.json, expect_json: {label: 7}}\n"
        "release:\n"
        "  trigger: nightly\n"
        f"  environment: ${{SHIPWAY_ENVIRONMENT:-default}}\n"
    )


def dockerfile(a: Answers) -> str:
    """A Dockerfile for shipway's fast path: dependencies and code; shipway adds the model layer."""
    into = a.into_dir
    if a.requirements:
        deps = (
            f"COPY {a.requirements} /tmp/requirements.txt\n"
            "COPY wheels/ /tmp/wheels/\n"
            "RUN python3 -m venv /opt/venv \\\n"
            " && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheels"
            " -r /tmp/requirements.txt \\\n"
            " && rm -rf /tmp/wheels /tmp/requirements.txt \\\n"
            " && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app\n"
        )
    else:
        deps = (
            "# (no requirements file: add one, and build.wheelhouse in shipway.yaml)\n"
            "RUN python3 -m venv /opt/venv \\\n"
            " && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app\n"
        )
    code = "".join(f"COPY {c} /app/{c}\n" for c in a.code) or "COPY app/ /app/app/\n"
    health_url = f"http://127.0.0.1:{a.port}{a.health}"
    return (
        f"# {a.name}: the app's code and dependencies. The model is not copied here: shipway\n"
        f"# writes the model version it resolved as its own layer at /app/{into} (model.into, under\n"
        "# the WORKDIR), right above the base image, so a code-only commit never re-sends or\n"
        "# re-uploads the model and a model-only change uploads the model layer alone.\n"
        "# (A COPY of model.into here also works: shipway then builds it the slower way.)\n"
        "ARG BASE_IMAGE=python:3.11-slim\n"
        "FROM ${BASE_IMAGE}\n"
        "\n"
        "ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH\n"
        "\n"
        "# 1. Dependencies, from the wheelhouse shipway downloads on the host (build.wheelhouse).\n"
        f"{deps}"
        "\n"
        "# 2. How it runs: above the code, so a code-only commit re-runs none of these steps\n"
        "#    (the classic builder runs every step after the first changed one again).\n"
        "WORKDIR /app\n"
        "USER 10001\n"
        f"EXPOSE {a.port}\n"
        "HEALTHCHECK --interval=5s --timeout=3s --retries=3 \\\n"
        f"  CMD python3 -c \"import urllib.request; urllib.request.urlopen('{health_url}', timeout=2)\"\n"
        f"CMD {json.dumps(a.command)}\n"
        "\n"
        "# 3. The code, and what this build is (shipway passes these build args).\n"
        "ARG SHIPWAY_COMMIT=unknown\n"
        "ARG SHIPWAY_MODEL_NAME=unknown\n"
        "ARG SHIPWAY_MODEL_VERSION=unknown\n"
        "ARG SHIPWAY_MODEL_DIGEST=unknown\n"
        "ENV APP_COMMIT=${SHIPWAY_COMMIT} MODEL_NAME=${SHIPWAY_MODEL_NAME} \\\n"
        "    MODEL_VERSION=${SHIPWAY_MODEL_VERSION} MODEL_DIGEST=${SHIPWAY_MODEL_DIGEST} \\\n"
        f"    MODEL_DIR=/app/{into} PORT={a.port}\n"
        f"{code}"
    )


def dockerignore(a: Answers) -> str:
    """Keep the build context small; shipway stages the model and wheels itself."""
    return (
        "# Not sent to the engine. shipway copies the model (model.into) and the wheelhouse\n"
        "# into its own staged context, so neither needs to be in the repository.\n"
        ".git\n"
        ".shipway/\n"
        ".venv/\n"
        ".tox/\n"
        "**/__pycache__/\n"
        "**/*.pyc\n"
        ".pytest_cache/\n"
        "build/\n"
        "dist/\n"
        "*.egg-info/\n"
        "shipway-*.json\n"
        "shipway-*.xml\n"
        "shipway-*.html\n"
    )
