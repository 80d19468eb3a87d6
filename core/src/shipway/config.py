"""shipway.yaml: the pydantic models, and loading with file:line:col errors.

The top-level sections are validated here; each backend section
(``model_store``, ``registry``, ``orchestrator``) is validated by the settings
model of the backend its ``kind`` names, so a plugin's options get the same
checks and error positions as ours.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shipway.backends.base import BackendSettings
from shipway.domain import ModelRef, valid_version
from shipway.errors import ConfigError
from shipway.yaml_source import MAX_SHOWN, Document, Path_, format_path, load_file, shown

DEFAULT_FILE = "shipway.yaml"
SECTIONS = ("model_store", "registry", "orchestrator")
_NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")
HOUR = 3600.0


class Strict(BaseModel):
    """Base of the top-level sections: unknown keys are errors, and true/false only where a flag is expected."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name:
            annotation = cls.model_fields[info.field_name].annotation
            if annotation in (int, float) or annotation in (int | None, float | None):
                raise ValueError(f"expected a number, got {str(value).lower()}")
            if not _takes_bool(annotation):
                raise ValueError(f"{str(value).lower()} is not a valid value here")
        return value


def _takes_bool(annotation: Any) -> bool:
    """Whether a field's type accepts true/false as such (pydantic would otherwise read true as 1)."""
    return annotation is bool or annotation is Any or any(_takes_bool(a) for a in get_args(annotation))


def _strings(value: Any) -> Any:
    """Let a mapping of strings (env, build args, headers) hold integers, as written: ``PORT: 8000``."""
    if isinstance(value, dict):
        return {k: str(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in value.items()}
    return value


class AppConfig(Strict):
    """The application: where its build context is and how it serves."""

    name: str = Field(pattern=_NAME, description="DNS-style name; names containers, services and tags")
    context: str = Field(".", description="Build context, relative to this file")
    dockerfile: str = Field("Dockerfile", description="Dockerfile, relative to the context")
    port: int = Field(8000, ge=1, le=65535, description="Port the app listens on inside the container")
    health: str = Field("/healthz", pattern=r"^/", description="Readiness path: 200 means ready")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment for the running app. Visible to anyone who can inspect the container or read "
        "the orchestrator's manifests: names or ${VARIABLES} that look like secrets are refused (use secrets)",
    )
    secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Secret name -> exactly one ${VARIABLE}. Each is delivered as the read-only file "
        "/run/secrets/<name> in the verify container and on every orchestrator; never as an environment "
        "value, a build arg, a label or an image layer",
    )

    _env = field_validator("env", mode="before")(_strings)

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name in value:
            if not _SECRET_NAME.match(name) or name in {".", ".."}:
                raise ValueError(
                    f"secret name {shown(name)} must be usable as a file name: letters, digits, '_', '.', '-', "
                    "at most 63 characters, starting with a letter or '_'"
                )
        return value


class TestsConfig(Strict):
    """The application's own tests, run before anything is built."""

    command: list[str] = Field(min_length=1, description="argv of the test command")
    cwd: str = Field(".", description="Working directory, relative to the app context")
    timeout: float = Field(
        900, gt=0, le=6 * HOUR, allow_inf_nan=False, description="Seconds before the tests are stopped"
    )

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
                raise ValueError(f'{shown(value)} is not "latest", a version or "@alias"')
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
    args: dict[str, str] = Field(
        default_factory=dict,
        description="Extra build args. Never secrets: build args stay in the image history; names or "
        "${VARIABLES} that look like secrets are refused",
    )
    wheelhouse: WheelhouseConfig | None = None
    timeout: float = Field(1800, gt=0, le=6 * HOUR, allow_inf_nan=False, description="Seconds a build may take")
    model_layer: Literal["auto", "shipway", "dockerfile"] = Field(
        "auto",
        description="shipway: shipway writes the model layer (fast); dockerfile: the Dockerfile COPYs model.into "
        "(slow); auto: dockerfile when the Dockerfile copies model.into, else shipway",
    )
    export: Literal["auto", "push", "save"] = Field(
        "auto",
        description="How the app image's layers leave the engine: push (to a loopback staging registry: only "
        "layers the engine has not exported before), save (docker save: every layer, every build), auto: save "
        "on a cache's first build with an engine, push from the second on when the engine runs on this machine; "
        "after a failed push, save for a day (delete <cache>/staging/engines.json to retry at once)",
    )
    keep_images: int = Field(
        3,
        ge=1,
        le=1000,
        description="How many of this app's images a build leaves in the local engine (the newest by the date "
        "they were made, the new one always); older ones are deleted there unless a container uses them or a run "
        "that has not ended holds them. Each holds its model, so a runner that builds often would fill its disk. "
        "The registry keeps them all",
    )
    existing_tag: Literal["suffix", "refuse"] = Field(
        "suffix",
        description="When the tag a build would get already names another image: push under tag.2, tag.3, ... "
        "(suffix) or stop (refuse). A tag is never moved",
    )

    _args = field_validator("args", mode="before")(_strings)


class VerifyCheck(Strict):
    """One HTTP check run against the built container and against the live release."""

    request: str = Field(description='"METHOD /path", e.g. "POST /score"')
    body: Any = None
    body_file: str | None = Field(None, description="JSON file sent as the body, relative to the context")
    headers: dict[str, str] = Field(default_factory=dict)
    expect_status: int = Field(200, ge=100, le=599)
    expect_json: Any = Field(None, description="Every key given must match the response (recursively)")
    timeout: float = Field(10, gt=0, le=600, allow_inf_nan=False, description="Seconds to wait for the response")

    _headers = field_validator("headers", mode="before")(_strings)

    @field_validator("request")
    @classmethod
    def _request(cls, value: str) -> str:
        parts = value.split()
        if len(parts) != 2 or parts[0].upper() not in _METHODS or not parts[1].startswith("/"):
            raise ValueError(f'{shown(value)} is not "METHOD /path" (methods: {", ".join(_METHODS)})')
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
    deadline: float = Field(
        120, gt=0, le=6 * HOUR, allow_inf_nan=False, description="Seconds a rollout may take to become healthy"
    )


class Config(Strict):
    """The whole of shipway.yaml."""

    version: Literal[1] = 1
    app: AppConfig
    test: TestsConfig | None = None
    model: ModelConfig
    build: BuildConfig = Field(default_factory=BuildConfig)
    # The raw backend sections (they may hold secret values): validated by each backend's Settings, never shown.
    model_store: dict[str, Any] = Field(default_factory=lambda: {"kind": "local"}, repr=False)
    registry: dict[str, Any] = Field(repr=False)
    orchestrator: dict[str, Any] = Field(default_factory=lambda: {"kind": "docker"}, repr=False)
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
    try:
        return _load(doc, path, backends)
    except ConfigError as exc:
        raise _scrubbed(exc, doc, os.environ if environ is None else environ) from None


def _scrubbed(exc: ConfigError, doc: Document, env: Mapping[str, str]) -> ConfigError:
    """The error with the value of every variable a secret is read from masked, wherever it was quoted."""
    values = {
        env[name]
        for path, written in doc.written.items()
        for name in written.names
        if len(env.get(name, "")) >= 3 and (looks_like_secret(name) or _looks_secret(path))
    }
    message = str(exc)
    for value in sorted(values, key=len, reverse=True):
        message = message.replace(value, "***")
    return exc if message == str(exc) else type(exc)(message)


def _load(doc: Document, path: Path, backends: Any) -> LoadedConfig:
    if not isinstance(doc.data, dict):
        raise doc.error((), "the top level must be a mapping of sections (app, model, registry, ...)")
    config = _validate(Config, doc.data, doc, ())
    settings = {section: _backend_settings(doc, section, getattr(config, section), backends) for section in SECTIONS}
    secret_vars = _check_secrets(config.app, doc, ("app",))  # variables secrets are read from
    for section in SECTIONS:
        secret_vars |= _check_secrets(settings[section], doc, (section,))
    for name, value in config.app.secrets.items():
        if not value.get_secret_value():
            raise doc.error(
                ("app", "secrets", name), f"the secret is empty: set {', '.join(doc.names(('app', 'secrets', name)))}"
            )
    _refuse_secret_looking(
        doc,
        ("app", "env"),
        config.app.env,
        secret_vars,
        "environment values are visible in `docker inspect` and in the orchestrator's manifests",
    )
    _refuse_secret_looking(
        doc,
        ("build", "args"),
        config.build.args,
        secret_vars,
        "secrets must not be build args: they stay in the image history",
    )
    context = (path.parent / config.app.context).resolve()
    if not context.is_dir():
        raise doc.error(("app", "context"), f"folder {context} does not exist")
    return LoadedConfig(config=config, file=path.resolve(), **settings)


def _backend_settings(doc: Document, section: str, raw: dict[str, Any], backends: Any) -> BackendSettings:
    """One backend section validated by the Settings of the kind it names."""
    kind = raw.get("kind")
    if "kind" in raw and not isinstance(kind, str):
        raise doc.error((section, "kind"), f"kind must be a string (for example: kind: local), got {shown(kind)}")
    if not isinstance(kind, str) or not kind:
        raise doc.error((section,), "field 'kind' is required (for example: kind: local)")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", kind):
        raise doc.error((section, "kind"), f"{shown(kind)} is not a backend kind (a short name such as local)")
    cls = backends.backend_class(section, kind, where=doc.where((section, "kind")))
    return _validate(cls.Settings, raw, doc, (section,))  # type: ignore[no-any-return]


@dataclass
class StoreConfig:
    """Only the ``model_store`` section of a config file: all the ``shipway model`` commands need."""

    file: Path
    model_store: BackendSettings

    @property
    def root(self) -> Path:
        """Folder of the config file; relative paths in it start here."""
        return self.file.parent


def load_model_store(path: Path, backends: Any, environ: Mapping[str, str] | None = None) -> StoreConfig:
    """Load and validate only ``model_store`` (default ``kind: local``) from ``path``.

    The other sections are not read, so a file for publishing models needs no
    ``app``, ``registry`` or ``orchestrator`` (nor the variables they name).
    """
    env = os.environ if environ is None else environ
    # Variables that only other sections read need not be set: find them with every variable "set".
    probe = load_file(path, _EveryVariableSet())
    store_reads = {n for p, w in probe.written.items() if p[:1] == ("model_store",) for n in w.names}
    others_read = {n for w in probe.written.values() for n in w.names} - store_reads
    unused = {name: "unused" for name in others_read if env.get(name, "") == ""}
    doc = load_file(path, {**env, **unused})
    try:
        if not isinstance(doc.data, dict):
            raise doc.error((), "the top level must be a mapping of sections (app, model, registry, ...)")
        raw = doc.data.get("model_store", {"kind": "local"})
        if not isinstance(raw, dict):
            raise doc.error(("model_store",), "model_store must be a mapping (for example: kind: local)")
        settings = _backend_settings(doc, "model_store", raw, backends)
        _check_secrets(settings, doc, ("model_store",))
        return StoreConfig(file=path.resolve(), model_store=settings)
    except ConfigError as exc:
        raise _scrubbed(exc, doc, env) from None


class _EveryVariableSet(Mapping[str, str]):
    """An environment in which every variable is set (to find which variables a file reads, and where)."""

    def __getitem__(self, name: str) -> str:
        return "set"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _validate(model: type[BaseModel], data: Any, doc: Document, prefix: Path_) -> Any:
    try:
        return model.model_validate(data)
    except TypeError:  # a validator that met a type it did not expect; its message may quote a value
        raise doc.error(prefix, "invalid value: check the types of this section's keys") from None
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc: Path_ = prefix + tuple(p for p in err["loc"] if not _is_union_tag(p))
            lines.append(f"{doc.where(loc)}: {format_path(loc)}: {_message(err, doc.names(loc))}")
        raise ConfigError("\n".join(dict.fromkeys(lines))) from None


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part in {"function-after", "function-before"})


def _message(err: Mapping[str, Any], from_env: tuple[str, ...] = ()) -> str:
    """A pydantic error in our words; a value read from ``${VAR}`` is named by its variable, never quoted."""
    kind = err["type"]
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; `shipway schema` lists every key)"
    msg = str(err["msg"])
    msg = re.sub(r"^Value error, ", "", msg)
    long_input = err.get("input")
    if isinstance(long_input, str) and len(long_input) > MAX_SHOWN:  # a plugin's validator quoting a value whole
        for text in (repr(long_input), long_input):
            msg = msg.replace(text, shown(long_input))
    msg = _LONG_QUOTE.sub(lambda m: shown(m.group(0)[1:-1]), msg)  # ... or a value of a nested key
    if from_env:
        got = err.get("input")
        if isinstance(got, str) and got:
            for text in (shown(got), repr(got), got):
                msg = msg.replace(text, "the value")
        refs = ", ".join(f"${{{name}}}" for name in from_env)
        return f"{msg} (the value comes from {refs})"
    if "input" in err and kind not in {"value_error"} and not isinstance(err["input"], (dict, list)):
        got = err["input"]
        if not _looks_secret(err.get("loc", ())):
            msg += f" (got {_shown_input(got)})"
    return msg


_LONG_QUOTE = re.compile(rf"'[^']{{{MAX_SHOWN},}}'|\"[^\"]{{{MAX_SHOWN},}}\"")


def _shown_input(value: Any) -> str:
    """A YAML value as the user would write it, cut short."""
    if value is None or isinstance(value, (bool, int, float)):
        try:
            return shown(json.dumps(value, allow_nan=False)).strip("'")
        except ValueError:
            return "." + str(value).lower()  # .inf, .nan
    return shown(value)


def _looks_secret(loc: Any) -> bool:
    return any(isinstance(p, str) and re.search(r"pass|secret|token|key", p, re.I) for p in loc)


def _check_secrets(settings: BaseModel, doc: Document, prefix: Path_) -> set[str]:
    """Every secret field written in the file must be exactly one ``${VAR}``: no literal, no default, no text.

    Returns the names of the variables the secrets are read from.
    """
    names_used: set[str] = set()
    for path in _secret_paths(settings, prefix):
        names_used.update(doc.names(path))
        if path in doc.positions and not doc.is_sole_reference(path):
            names = doc.names(path)
            hint = (
                f"write ${{{names[0]}}} alone and set {names[0]} in the environment"
                if names
                else "write ${VARIABLE} and set VARIABLE in the environment"
            )
            raise doc.error(
                path,
                "a secret must be exactly one ${VARIABLE}, with no default and nothing around it "
                f"(a secret in the file would be readable by anyone who reads it): {hint}",
            )
    return names_used


def _secret_paths(value: Any, path: Path_) -> list[Path_]:
    """Key paths of every SecretStr in a validated model (nested models, mappings and lists too)."""
    if isinstance(value, SecretStr):
        return [path]
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        return [p for name, f in fields.items() for p in _secret_paths(getattr(value, name), (*path, f.alias or name))]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _secret_paths(v, (*path, k))]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _secret_paths(v, (*path, i))]
    return []


_SECRET_WORDS = {"password", "passwd", "passphrase", "secret", "token", "credential", "credentials", "apikey"}
_SECRET_PAIRS = {("api", "key"), ("private", "key"), ("access", "key"), ("signing", "key"), ("encryption", "key")}
_NOT_THE_SECRET = {"file", "path", "dir", "name", "url", "uri", "endpoint"}


def looks_like_secret(name: str) -> bool:
    """Whether a variable or key name says it holds a secret (``DB_PASSWORD``, ``apiKey``, ``HF_TOKEN``).

    Names that point at a secret rather than hold one (``PASSWORD_FILE``, ``TOKEN_URL``) and names that merely
    contain such a word (``TOKENIZERS_PARALLELISM``, ``MAX_TOKENS``) do not count.
    """
    words = [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+", name)]
    if not words or words[-1] in _NOT_THE_SECRET:
        return False
    return bool(_SECRET_WORDS.intersection(words)) or any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


def _refuse_secret_looking(
    doc: Document, prefix: Path_, values: Mapping[str, str], secret_vars: set[str], why: str
) -> None:
    """Refuse entries of app.env / build.args whose key, or the ${VARIABLE} they come from, names a secret
    (or is a variable a secret field reads)."""
    for key in values:
        path = (*prefix, key)
        from_secret = (n for n in doc.names(path) if looks_like_secret(n) or n in secret_vars)
        culprit = key if looks_like_secret(key) else next(from_secret, None)
        if culprit is None:
            continue
        source = "" if culprit == key else f" (its value comes from ${{{culprit}}})"
        raise doc.error(
            path,
            f"looks like a secret{source}: {why}. Declare it under app.secrets instead; "
            f"the app reads it from the file /run/secrets/<name>",
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
