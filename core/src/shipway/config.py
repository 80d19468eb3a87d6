"""shipway.yaml: the pydantic models, and loading with file:line:col errors.

The top-level sections are validated here; each backend section
(``model_store``, ``registry``, ``orchestrator``) is validated by the settings
model of the backend its ``kind`` names, so a plugin's options get the same
checks and error positions as ours.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from shipway.backends.base import BackendSettings
from shipway.domain import ModelRef, valid_version
from shipway.errors import ConfigError
from shipway.yaml_source import Document, Path_, format_path, load_file

DEFAULT_FILE = "shipway.yaml"
SECTIONS = ("model_store", "registry", "orchestrator")
_NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AppConfig(Strict):
    """The application: where its build context is and how it serves."""

    name: str = Field(pattern=_NAME, description="DNS-style name; names containers, services and tags")
    context: str = Field(".", description="Build context, relative to this file")
    dockerfile: str = Field("Dockerfile", description="Dockerfile, relative to the context")
    port: int = Field(8000, ge=1, le=65535, description="Port the app listens on inside the container")
    health: str = Field("/healthz", pattern=r"^/", description="Readiness path: 200 means ready")
    env: dict[str, str] = Field(default_factory=dict, description="Environment for the running app")


class TestsConfig(Strict):
    """The application's own tests, run before anything is built."""

    command: list[str] = Field(min_length=1, description="argv of the test command")
    cwd: str = Field(".", description="Working directory, relative to the app context")
    timeout: float = Field(900, gt=0, description="Seconds before the tests are stopped")

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            import shlex

            return shlex.split(value)
        return value


class ModelConfig(Strict):
    """Which model version goes into the image, and where."""

    name: str = Field(min_length=1)
    select: str = Field("latest", description='"latest", a version such as "3", or "@alias"')
    into: str = Field("model/", description="Folder in the build context (and image) that holds the files")

    @field_validator("select", mode="before")
    @classmethod
    def _select(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and value != "latest":
            bare = value[1:] if value.startswith("@") else value
            if not valid_version(bare):
                raise ValueError(f'{value!r} is not "latest", a version or "@alias"')
        return value

    @field_validator("into")
    @classmethod
    def _into(cls, value: str) -> str:
        parts = Path(value).parts
        if Path(value).is_absolute() or ".." in parts or not parts:
            raise ValueError("must be a relative folder inside the build context")
        return value

    @property
    def ref(self) -> ModelRef:
        return ModelRef(name=self.name, select=self.select)


class WheelhouseConfig(Strict):
    """Download the app's dependencies on the host so the image installs them offline."""

    requirements: str = Field("requirements.txt", description="Requirements file, relative to the context")
    into: str = Field("wheels", description="Folder in the build context the wheels go to")
    python_version: str = Field("3.11", pattern=r"^3\.\d+$")
    platforms: list[str] = Field(
        default_factory=lambda: ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64"]
    )


class BuildConfig(Strict):
    """How the image is built."""

    base_image: str | None = Field(None, description="Passed as build arg BASE_IMAGE when set")
    args: dict[str, str] = Field(default_factory=dict, description="Extra build args (never secrets)")
    wheelhouse: WheelhouseConfig | None = None
    timeout: float = Field(1800, gt=0)


class VerifyCheck(Strict):
    """One HTTP check run against the built container and against the live release."""

    request: str = Field(description='"METHOD /path", e.g. "POST /score"')
    body: Any = None
    body_file: str | None = Field(None, description="JSON file sent as the body, relative to the context")
    headers: dict[str, str] = Field(default_factory=dict)
    expect_status: int = Field(200, ge=100, le=599)
    expect_json: Any = Field(None, description="Every key given must match the response (recursively)")
    timeout: float = Field(10, gt=0)

    @field_validator("request")
    @classmethod
    def _request(cls, value: str) -> str:
        parts = value.split()
        if len(parts) != 2 or parts[0].upper() not in _METHODS or not parts[1].startswith("/"):
            raise ValueError(f'{value!r} is not "METHOD /path" (methods: {", ".join(_METHODS)})')
        return f"{parts[0].upper()} {parts[1]}"

    @model_validator(mode="after")
    def _one_body(self) -> VerifyCheck:
        if self.body is not None and self.body_file is not None:
            raise ValueError("give body or body_file, not both")
        return self

    @property
    def method(self) -> str:
        return self.request.split()[0]

    @property
    def path(self) -> str:
        return self.request.split()[1]


class ReleaseConfig(Strict):
    """How `shipway release` behaves."""

    trigger: Literal["nightly", "continuous", "manual"] = "manual"
    environment: str = Field("default", pattern=_NAME)
    replicas: int = Field(1, ge=1, le=100)
    deadline: float = Field(120, gt=0, description="Seconds a rollout may take to become healthy")


class Config(Strict):
    """The whole of shipway.yaml."""

    version: Literal[1] = 1
    app: AppConfig
    test: TestsConfig | None = None
    model: ModelConfig
    build: BuildConfig = Field(default_factory=BuildConfig)
    model_store: dict[str, Any] = Field(default_factory=lambda: {"kind": "local"})
    registry: dict[str, Any]
    orchestrator: dict[str, Any] = Field(default_factory=lambda: {"kind": "docker"})
    verify: list[VerifyCheck] = Field(default_factory=list)
    release: ReleaseConfig = Field(default_factory=ReleaseConfig)


@dataclass
class LoadedConfig:
    """A validated configuration: top-level sections, each backend's settings, and where it came from."""

    config: Config
    file: Path
    model_store: BackendSettings
    registry: BackendSettings
    orchestrator: BackendSettings

    @property
    def root(self) -> Path:
        """Folder of the config file; relative paths in it start here."""
        return self.file.parent

    @property
    def context(self) -> Path:
        return (self.root / self.config.app.context).resolve()


def load(path: Path, backends: Any, environ: Mapping[str, str] | None = None) -> LoadedConfig:
    """Load and validate ``path``. ``backends`` is the plugin host (kinds → classes)."""
    doc = load_file(path, environ)
    if not isinstance(doc.data, dict):
        raise doc.error((), "the top level must be a mapping of sections (app, model, registry, ...)")
    config = _validate(Config, doc.data, doc, ())
    settings = {}
    for section in SECTIONS:
        raw = getattr(config, section)
        kind = raw.get("kind")
        if not isinstance(kind, str) or not kind:
            raise doc.error((section,), "field 'kind' is required (for example: kind: local)")
        cls = backends.backend_class(section, kind, where=doc.where((section, "kind")))
        settings[section] = _validate(cls.Settings, raw, doc, (section,))
        _check_secrets(settings[section], doc, (section,))
    context = (path.parent / config.app.context).resolve()
    if not context.is_dir():
        raise doc.error(("app", "context"), f"folder {context} does not exist")
    return LoadedConfig(config=config, file=path.resolve(), **settings)


def _validate(model: type[BaseModel], data: Any, doc: Document, prefix: Path_) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc: Path_ = prefix + tuple(p for p in err["loc"] if not _is_union_tag(p))
            lines.append(f"{doc.where(loc)}: {format_path(loc)}: {_message(err)}")
        raise ConfigError("\n".join(dict.fromkeys(lines))) from None


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part in {"function-after", "function-before"})


def _message(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; `shipway schema` lists every key)"
    msg = str(err["msg"])
    msg = re.sub(r"^Value error, ", "", msg)
    if "input" in err and kind not in {"value_error"} and not isinstance(err["input"], (dict, list)):
        got = err["input"]
        if not _looks_secret(err.get("loc", ())):
            msg += f" (got {json.dumps(got) if not isinstance(got, str) else repr(got)})"
    return msg


def _looks_secret(loc: Any) -> bool:
    return any(isinstance(p, str) and re.search(r"pass|secret|token|key", p, re.I) for p in loc)


def _check_secrets(settings: BaseModel, doc: Document, prefix: Path_) -> None:
    """Secret fields must come from the environment (``${VAR}``), never be literal in YAML."""
    for name, value in settings:
        if isinstance(value, SecretStr) and (*prefix, name) not in doc.interpolated:
            raise doc.error(
                (*prefix, name),
                "secrets must not be written in the file: use ${VARIABLE} and set it in the environment",
            )


def json_schema(backends: Any) -> dict[str, Any]:
    """JSON Schema of shipway.yaml, with each backend section a oneOf over the installed kinds."""
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "shipway.yaml"
    defs = schema.setdefault("$defs", {})
    for section in SECTIONS:
        options = []
        for kind, cls in sorted(backends.kinds(section).items()):
            sub = cls.Settings.model_json_schema(ref_template="#/$defs/{model}")
            defs.update(sub.pop("$defs", {}))
            sub["properties"]["kind"] = {"const": kind}
            sub.setdefault("required", [])
            if "kind" not in sub["required"]:
                sub["required"].append("kind")
            sub["title"] = f"{section}: {kind}"
            options.append(sub)
        schema["properties"][section] = {"oneOf": options} if options else {"type": "object"}
    return schema
