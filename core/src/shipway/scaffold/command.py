"""The `shipway init` command: prompts on a terminal, flags everywhere (CI, scripts, tests)."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from shipway.scaffold.answers import CI_SYSTEMS, ORCHESTRATORS, PRESETS, REGISTRIES, STORES, guess_code, guess_command


def _ask(interactive: bool, value: Any, text: str, default: Any, **kwargs: Any) -> Any:
    if value is not None:
        return value
    if interactive:
        return click.prompt(text, default=default, err=True, **kwargs)
    return default


@click.command("init")
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True)
@click.option("--name", help="App name (DNS style); default: the folder's name.")
@click.option("--port", type=int, help="Port the app listens on in the container.  [default: 8000]")
@click.option("--health", help="Readiness path; 200 means ready.  [default: /healthz]")
@click.option("--model", "model_name", help="Model name in the store.  [default: model]")
@click.option("--model-into", default="model/", show_default=True, help="Folder the model files go to.")
@click.option("--backends", type=click.Choice(sorted(PRESETS)), help="Preset of the three backends. [default: local]")
@click.option("--model-store", type=click.Choice(STORES), help="Override the preset's model store.")
@click.option("--registry", type=click.Choice(REGISTRIES), help="Override the preset's registry.")
@click.option("--orchestrator", type=click.Choice(ORCHESTRATORS), help="Override the preset's orchestrator.")
@click.option("--ci", "ci_systems", multiple=True, type=click.Choice(CI_SYSTEMS), help="Repeatable. [default: github]")
@click.option("--code", multiple=True, help="Code to copy into the image (repeatable); default: packages found.")
@click.option("--command", "serve", help="Command that serves the app, e.g. 'gunicorn -b 0.0.0.0:9000 app:wsgi'.")
@click.option("--requirements", help="Requirements file for the wheelhouse; '' for none.")
@click.option("--test-command", help="The app's test command, e.g. 'python3 -m pytest -q tests'.")
@click.option("--host-port", type=int, default=8080, show_default=True, help="Host port of a docker/swarm release.")
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
@click.option("-y", "--no-input", is_flag=True, help="Never prompt: flags and defaults only.")
@click.pass_obj
def init(
    state: Any,
    folder: Path,
    name: str | None,
    port: int | None,
    health: str | None,
    model_name: str | None,
    model_into: str,
    backends: str | None,
    model_store: str | None,
    registry: str | None,
    orchestrator: str | None,
    ci_systems: tuple[str, ...],
    code: tuple[str, ...],
    serve: str | None,
    requirements: str | None,
    test_command: str | None,
    host_port: int,
    force: bool,
    no_input: bool,
) -> None:
    """Write shipway.yaml, Dockerfile, .dockerignore, CI files, .gitignore lines for an app."""
    from shipway import scaffold

    interactive = not no_input and sys.stdin.isatty()
    folder.mkdir(parents=True, exist_ok=True)
    default_name = re.sub(r"[^a-z0-9-]+", "-", folder.resolve().name.lower()).strip("-") or "app"
    name = _ask(interactive, name, "App name", default_name)
    port = _ask(interactive, port, "Port the app listens on", 8000, type=int)
    health = _ask(interactive, health, "Readiness path", "/healthz")
    model_name = _ask(interactive, model_name, "Model name", "model")
    preset = _ask(interactive, backends, "Backends", "local", type=click.Choice(sorted(PRESETS)))
    ci = list(ci_systems) or [_ask(interactive, None, "CI system", "github", type=click.Choice(CI_SYSTEMS))]
    store, reg, orch = PRESETS[preset]
    found_code = list(code) or guess_code(folder)
    if requirements is None:
        requirements = "requirements.txt" if (folder / "requirements.txt").is_file() else ""
    answers = scaffold.Answers(
        name=name,
        port=port,
        health=health,
        model=model_name,
        model_into=model_into if model_into.endswith("/") else model_into + "/",
        store=model_store or store,
        registry=registry or reg,
        orchestrator=orchestrator or orch,
        ci=[c for c in ci if c != "none"],
        code=found_code,
        command=shlex.split(serve) if serve else guess_command(found_code, port),
        requirements=requirements or None,
        test_command=shlex.split(test_command) if test_command else None,
        host_port=host_port,
    )
    written = scaffold.write(folder, answers, force=force)
    for path in written:
        click.echo(f"wrote {folder / path}")
    try:
        ignored = scaffold.ignore_in_git(folder)
    except OSError as exc:  # the files above are written: say what to add by hand, and go on
        click.echo(f"could not add to {folder / scaffold.GITIGNORE} ({exc}); add: {' '.join(scaffold.GIT_IGNORED)}")
    else:
        if ignored:
            click.echo(f"added to {folder / scaffold.GITIGNORE}: {' '.join(ignored)}")
    kinds = {"model_store": answers.store, "registry": answers.registry, "orchestrator": answers.orchestrator}
    missing = [kind for section, kind in kinds.items() if kind not in state.host.kinds(section)]
    if missing:
        click.echo(f"not validated: {', '.join(missing)} not installed here (pip install '{answers.pip_spec}')")
        return
    needs = scaffold.validate(folder / "shipway.yaml", state.host)
    click.echo(f"{folder / 'shipway.yaml'}: ok")
    if needs:
        click.echo(f"set in CI (and locally to run): {', '.join(needs)}")
