"""Building the one image that holds the app's code and its model.

The build context is staged in a scratch folder: the app's context, the
fetched model under ``model.into`` and, optionally, a wheelhouse. The app's
Dockerfile copies them in the order base → dependencies → model → code, so a
code-only commit reuses the model layer from the engine's cache.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import docker.errors

from shipway import dockerutil
from shipway.config import LoadedConfig
from shipway.domain import ModelVersion
from shipway.errors import BuildFailed
from shipway.progress import Reporter
from shipway.wheelhouse import prepare as prepare_wheelhouse

_SKIP = {".git", ".shipway", "__pycache__", ".pytest_cache", ".venv", ".tox"}


@dataclass
class BuiltImage:
    """A local image: its engine ID, the layers' diff IDs and the build log tail."""

    image_id: str
    layers: list[str]
    log: list[str] = field(default_factory=list)


def build_args(loaded: LoadedConfig, model: ModelVersion, commit: str) -> dict[str, str]:
    """Build args every shipway build passes (none of them a secret)."""
    args = {
        "SHIPWAY_COMMIT": commit,
        "SHIPWAY_MODEL_NAME": model.name,
        "SHIPWAY_MODEL_VERSION": model.version,
        "SHIPWAY_MODEL_DIGEST": model.digest,
    }
    if loaded.config.build.base_image:
        args["BASE_IMAGE"] = loaded.config.build.base_image
    args.update(loaded.config.build.args)
    return args


def stage_context(loaded: LoadedConfig, model_dir: Path, dest: Path, cache_dir: Path, reporter: Reporter) -> None:
    """Fill ``dest`` with the build context, the model files and the wheelhouse."""
    cfg = loaded.config
    context = loaded.context
    into = Path(cfg.model.into)
    wheels = Path(cfg.build.wheelhouse.into) if cfg.build.wheelhouse else None
    skip_paths = {context / into, *([context / wheels] if wheels else [])}

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if n in _SKIP or Path(folder, n) in skip_paths}

    shutil.copytree(context, dest, ignore=ignore, dirs_exist_ok=True, symlinks=True)
    _link_tree(model_dir, dest / into)
    if cfg.build.wheelhouse and wheels is not None:
        found = prepare_wheelhouse(cfg.build.wheelhouse, context, cache_dir, reporter)
        _link_tree(found, dest / wheels)


def _link_tree(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.rglob("*")):
        if path.name.startswith(".") and path.is_file():
            continue
        target = dest / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def build(
    loaded: LoadedConfig,
    model: ModelVersion,
    model_dir: Path,
    commit: str,
    labels: dict[str, str],
    tag: str,
    cache_dir: Path,
    reporter: Reporter,
) -> BuiltImage:
    """Build the image with the local engine; raise BuildFailed with the log's tail."""
    client = dockerutil.client()
    scratch = cache_dir / "staging"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        staged = Path(tmp)
        stage_context(loaded, model_dir, staged, cache_dir, reporter)
        dockerfile = loaded.config.app.dockerfile
        if not (staged / dockerfile).is_file():
            raise BuildFailed(f"app.dockerfile: {loaded.context / dockerfile} not found")
        log: list[str] = []
        image_id = None
        try:
            stream = client.api.build(
                path=str(staged),
                dockerfile=dockerfile,
                tag=tag,
                buildargs=build_args(loaded, model, commit),
                labels=labels,
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
                timeout=int(loaded.config.build.timeout),
            )
            for event in stream:
                if "stream" in event:
                    line = event["stream"].rstrip()
                    if line:
                        log.append(line)
                        if line.startswith("Step ") and " : LABEL " not in line:
                            reporter.info("  " + line.splitlines()[0][:110])
                if "error" in event:
                    tail = "\n".join(log[-15:])
                    raise BuildFailed(f"docker build failed: {event['error'].strip()}\n{tail}")
                aux = event.get("aux")
                if isinstance(aux, dict) and "ID" in aux:
                    image_id = aux["ID"]
        except docker.errors.APIError as exc:
            raise BuildFailed(f"docker build failed: {exc.explanation or exc}") from None
    if image_id is None:
        image_id = client.images.get(tag).id
    attrs = client.images.get(image_id).attrs
    return BuiltImage(image_id=image_id, layers=list(attrs["RootFS"]["Layers"]), log=log[-40:])
