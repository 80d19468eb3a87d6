"""What `shipway init` asks: the app, its model, the backends and the CI system."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from shipway.errors import ConfigError

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

# Preset → (model_store, registry, orchestrator) kinds.
PRESETS: dict[str, tuple[str, str, str]] = {
    "local": ("local", "oci", "docker"),
    "azure": ("azure_blob", "acr", "aks"),
    "aws": ("s3", "ecr", "eks"),
    "swarm": ("local", "oci", "swarm"),
    "kubernetes": ("local", "oci", "kubernetes"),
}
STORES = ("local", "azure_blob", "s3")
REGISTRIES = ("oci", "acr", "ecr")
ORCHESTRATORS = ("docker", "swarm", "kubernetes", "aks", "eks")
CI_SYSTEMS = ("github", "azure-pipelines", "none")

# The distribution each kind comes from: its extra goes into the CI's `pip install`.
KIND_EXTRA = {"azure_blob": "azure", "acr": "azure", "aks": "azure", "s3": "aws", "ecr": "aws", "eks": "aws"}
KIND_EXTRA.update(swarm="swarm", kubernetes="kubernetes")


@dataclass
class Answers:
    """Everything the generated files depend on; nothing is assumed about the app beyond these."""

    name: str
    port: int = 8000
    health: str = "/healthz"
    model: str = "model"
    model_into: str = "model/"
    store: str = "local"
    registry: str = "oci"
    orchestrator: str = "docker"
    ci: list[str] = field(default_factory=lambda: ["github"])
    code: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    requirements: str | None = "requirements.txt"
    test_command: list[str] | None = None
    host_port: int = 8080
    python_version: str = "3.11"

    def check(self) -> Answers:
        """Raise ConfigError naming the first answer that cannot work."""
        if not NAME_RE.match(self.name):
            raise ConfigError(f"app name {self.name!r}: lowercase letters, digits and '-' (a DNS name)")
        if not 1 <= self.port <= 65535 or not 1 <= self.host_port <= 65535:
            raise ConfigError("ports must be between 1 and 65535")
        if not self.health.startswith("/"):
            raise ConfigError(f"health path {self.health!r} must start with '/'")
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", self.model):
            raise ConfigError(f"model name {self.model!r}: letters, digits, '.', '_' and '-'")
        for value, allowed, what in (
            (self.store, STORES, "model store"),
            (self.registry, REGISTRIES, "registry"),
            (self.orchestrator, ORCHESTRATORS, "orchestrator"),
        ):
            if value not in allowed:
                raise ConfigError(f"{what} {value!r}: one of {', '.join(allowed)}")
        for ci in self.ci:
            if ci not in CI_SYSTEMS:
                raise ConfigError(f"CI system {ci!r}: one of {', '.join(CI_SYSTEMS)}")
        if not self.command:
            raise ConfigError("the command that serves the app is needed (--command)")
        return self

    @property
    def extras(self) -> list[str]:
        """shipway extras the chosen backends need, e.g. ``["azure"]``."""
        kinds = (self.store, self.registry, self.orchestrator)
        return sorted({KIND_EXTRA[k] for k in kinds if k in KIND_EXTRA})

    @property
    def pip_spec(self) -> str:
        """``shipway`` or ``shipway[azure,...]`` for the CI's install step."""
        return f"shipway[{','.join(self.extras)}]" if self.extras else "shipway"

    @property
    def into_dir(self) -> str:
        return self.model_into.strip("/")


def guess_code(folder: Path) -> list[str]:
    """The app's code in ``folder``: top-level packages and modules, tests and tooling left out."""
    skip = {"tests", "test", "build", "dist", "docs", "wheels", "model", "models", "setup.py", "conftest.py"}
    found = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name in skip:
            continue
        if path.is_dir() and (path / "__init__.py").is_file():
            found.append(path.name + "/")
        elif path.is_file() and path.suffix == ".py":
            found.append(path.name)
    return found


def guess_command(code: list[str], port: int) -> list[str]:
    """A serving command from the code found: ``python3 -m PACKAGE`` or ``python3 MODULE.py``."""
    for item in code:
        if item.endswith("/"):
            return ["python3", "-m", item.rstrip("/")]
    for item in code:
        return ["python3", item]
    return ["python3", "-m", "http.server", str(port)]
