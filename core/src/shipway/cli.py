"""The ``shipway`` command line."""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from shipway import __version__
from shipway.errors import ConfigError, ExitCode, ShipwayError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class State:
    """Options shared by every command, and the lazily loaded project."""

    def __init__(self, config: Path, debug: bool, quiet: bool, log_format: str = "text") -> None:
        self.config_path = config
        self.debug = debug
        self.quiet = quiet
        self.log_format = log_format
        self.command: str | None = None
        """The subcommand being run (``run``, ``release``, ...)."""
        self.report_path: Path | None = None
        self._host: Any = None
        self._loaded: Any = None
        self._project: Any = None

    @property
    def host(self) -> Any:
        if self._host is None:
            from shipway import plugins

            self._host = plugins.load()
        return self._host

    @property
    def reporter(self) -> Any:
        from shipway.progress import Reporter

        return Reporter(quiet=self.quiet, log_format=self.log_format)

    def _require_file(self) -> None:
        if not self.config_path.is_file():
            raise ConfigError(f"{self.config_path}: file not found (use -c FILE or set SHIPWAY_CONFIG)")

    def loaded(self) -> Any:
        """The configuration file, read and checked; no engine (all that ``validate`` needs)."""
        if self._loaded is None:
            from shipway import config

            self._require_file()
            self._loaded = config.load(self.config_path, self.host)
        return self._loaded

    def project(self) -> Any:
        if self._project is None:
            from shipway.engine import Project

            self._project = Project(loaded=self.loaded(), host=self.host, reporter=self.reporter)
            if self.command in OUTPUT_COMMANDS:
                from shipway.command_outputs import CommandOutputs
                from shipway.plugins import PluginInfo

                outputs = CommandOutputs(self._project, self.command, self.report_path, self.config_path)
                info = PluginInfo(name="shipway-outputs", dist=None, version=None, module=__name__, builtin=True)
                self.host.add(outputs, info)
        return self._project

    def store(self) -> Any:
        """The configured model store, from the ``model_store`` section alone (what the model commands use)."""
        if self._project is not None:
            return self._project.store
        from shipway import config
        from shipway.backends.base import BackendContext

        self._require_file()
        loaded = config.load_model_store(self.config_path, self.host)
        cls = self.host.backend_class("model_store", loaded.model_store.kind)
        return cls(loaded.model_store, BackendContext(root=loaded.root, reporter=self.reporter, hook=self.host.hook))


pass_state = click.make_pass_decorator(State)
OUTPUT_COMMANDS = ("run", "release", "rollback")
"""Commands that end with a summary table and may write an HTML report (--report)."""
LOG_FORMATS = click.Choice(["text", "json"])


@click.group(context_settings=CONTEXT_SETTINGS)
@click.option(
    "-c",
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=lambda: os.environ.get("SHIPWAY_CONFIG", "shipway.yaml"),
    show_default="shipway.yaml or $SHIPWAY_CONFIG",
    help="Configuration file.",
)
@click.option("--debug", is_flag=True, envvar="SHIPWAY_DEBUG", help="Show tracebacks for errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only print errors and results.")
@click.option(
    "--log-format",
    type=LOG_FORMATS,
    default="text",
    envvar="SHIPWAY_LOG_FORMAT",
    help="json: one JSON object per line on stderr, for CI log collectors.",
)
@click.version_option(__version__, prog_name="shipway")
@click.pass_context
def cli(ctx: click.Context, config: Path, debug: bool, quiet: bool, log_format: str) -> None:
    """Take an AI app (code + a model version) from a commit to a running, verified service."""
    ctx.obj = State(Path(config), debug, quiet, log_format)
    ctx.obj.command = ctx.invoked_subcommand


def _set_global(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Callback of a global option given after the subcommand: it overrides the group's value."""
    state = ctx.find_object(State)
    if state is None or value is None or value is False:
        return
    if param.name == "config":
        state.config_path = Path(value)
    elif param.name == "debug":
        state.debug = True
    elif param.name == "quiet":
        state.quiet = True
    elif param.name == "log_format":
        state.log_format = value
    elif param.name == "report":
        state.report_path = Path(value)


def _global_options() -> list[click.Option]:
    """`-c`, `--debug` and `-q` for a subcommand, so they work after it as well as before it."""
    common: dict[str, Any] = {"expose_value": False, "is_eager": True, "callback": _set_global}
    return [
        click.Option(
            ["-c", "--config"],
            type=click.Path(path_type=Path, dir_okay=False),
            default=None,
            help="Configuration file (also accepted before the command).",
            **common,
        ),
        click.Option(["--debug"], is_flag=True, default=False, help="Show tracebacks for errors.", **common),
        click.Option(["-q", "--quiet"], is_flag=True, default=False, help="Only print errors and results.", **common),
        click.Option(["--log-format"], type=LOG_FORMATS, default=None, help="text or json (JSON lines).", **common),
    ]


def _report_option() -> click.Option:
    """``--report FILE`` for run, release and rollback: one self-contained HTML page."""
    return click.Option(
        ["--report"],
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        expose_value=False,
        callback=_set_global,
        help="Write a self-contained HTML report here (also when the command fails).",
    )


def add_global_options(group: click.Group) -> None:
    """Give every subcommand (recursively) the global options; call once all commands are defined."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            add_global_options(command)
        else:
            taken = {opt for p in command.params for opt in p.opts}
            extra = _global_options() + ([_report_option()] if command.name in OUTPUT_COMMANDS else [])
            command.params.extend(o for o in extra if not taken & set(o.opts))


def _output_options(f: Any) -> Any:
    f = click.option("--junit", type=click.Path(path_type=Path, dir_okay=False), help="Write a JUnit XML report here.")(
        f
    )
    return click.option(
        "-o", "--output", type=click.Path(path_type=Path, dir_okay=False), help="Also write the JSON record here."
    )(f)


def _outputs(output: Path | None, junit: Path | None) -> Any:
    from shipway.engine import Outputs

    return Outputs(json=output, junit=junit)


@cli.command()
@click.option("--skip-tests", is_flag=True, help="Do not run the test command.")
@click.option("--no-push", is_flag=True, help="Build and verify, but do not push.")
@click.option("--rebuild", is_flag=True, help="Build even if the registry has a verified build of the same inputs.")
@_output_options
@pass_state
def run(state: State, skip_tests: bool, no_push: bool, rebuild: bool, output: Path | None, junit: Path | None) -> None:
    """Test, find a build of the same inputs or build ONE image, verify it, push it."""
    from shipway import engine

    record = engine.run(
        state.project(), skip_tests=skip_tests, push=not no_push, outputs=_outputs(output, junit), rebuild=rebuild
    )
    click.echo(str(record.image) if record.image else record.local_image_id)


@cli.command()
@click.option("--image", help="Release this image (tag or digest) instead of the newest verified build.")
@_output_options
@pass_state
def release(state: State, image: str | None, output: Path | None, junit: Path | None) -> None:
    """Deploy the newest verified build, check it, roll back on failure."""
    from shipway import engine

    record = engine.release(state.project(), image=image, outputs=_outputs(output, junit))
    click.echo(f"{record.action}: {record.image}")


@cli.command()
@_output_options
@pass_state
def rollback(state: State, output: Path | None, junit: Path | None) -> None:
    """Restore the previous release and check it."""
    from shipway import engine

    record = engine.rollback(state.project(), outputs=_outputs(output, junit))
    click.echo(f"{record.action}: {record.image}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def status(state: State, as_json: bool) -> None:
    """What is live: image digest, health, commit and model version."""
    from shipway import engine, labels

    dep = engine.status(state.project())
    if as_json:
        click.echo(json.dumps(dep.model_dump(mode="json"), indent=2))
        return
    click.echo(f"app:       {dep.app} ({dep.environment})")
    click.echo(f"state:     {dep.state}  ready {dep.replicas_ready}/{dep.replicas_desired}  revision {dep.revision}")
    click.echo(f"image:     {dep.image or '-'}")
    click.echo(f"running:   {', '.join(sorted(set(dep.running_digests))) or '-'}")
    click.echo(f"commit:    {dep.labels.get(labels.REVISION, '-')}")
    model = f"{dep.labels.get(labels.MODEL_NAME, '-')}:{dep.labels.get(labels.MODEL_VERSION, '-')}"
    click.echo(f"model:     {model}")
    click.echo(f"endpoint:  {dep.endpoint or '-'}")
    click.echo(f"previous:  {dep.previous_image or '-'}")
    if dep.message:
        click.echo(f"note:      {dep.message}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def plan(state: State, as_json: bool) -> None:
    """Show what `run` and `release` would do now, without doing it."""
    from shipway import engine

    found = engine.plan(state.project())
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    m = found["model"]
    click.echo(f"model:        {m['ref']} -> version {m['version']} ({m['digest']})")
    commit = found["source"]["commit"][:12] + (" (dirty)" if found["source"]["dirty"] else "")
    click.echo(f"commit:       {commit}")
    click.echo(f"run builds:   {found['image']}")
    newest = found["newest_build"]
    click.echo(f"newest build: {newest['image'] if newest else '-'}")
    click.echo(f"live:         {found['live']['image'] or '-'} ({found['live']['state']})")
    click.echo(f"release:      {found['release']}")


@cli.command()
@pass_state
def down(state: State) -> None:
    """Remove the app's release from the orchestrator (every revision)."""
    project = state.project()
    project.orchestrator.remove(project.app, project.environment)
    click.echo(f"removed {project.app} ({project.environment})")


@cli.command()
@pass_state
def validate(state: State) -> None:
    """Check the configuration file without running anything."""
    cfg = state.loaded()
    click.echo(
        f"{state.config_path}: ok (model_store {cfg.model_store.kind}, registry {cfg.registry.kind}, "
        f"orchestrator {cfg.orchestrator.kind})"
    )


@cli.command()
@pass_state
def schema(state: State) -> None:
    """Print the JSON Schema of shipway.yaml (for editor completion)."""
    from shipway import config

    click.echo(json.dumps(config.json_schema(state.host), indent=2))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--check", "check_kind", metavar="KIND", help="Run the contract tests of the plugin providing KIND.")
@pass_state
def plugins(state: State, as_json: bool, check_kind: str | None) -> None:
    """List plugins, their versions, backend kinds and hooks; or check one against its contract."""
    from shipway.plugins import CONTRACT_VERSION

    if check_kind is not None:
        from shipway.contract_check import check

        click.echo(check(state.host, check_kind, echo=None if state.quiet else click.echo))
        return
    infos = list(state.host.plugins.values())
    if as_json:
        click.echo(json.dumps([vars(i) for i in infos], indent=2))
        return
    for info in infos:
        kinds = ", ".join(f"{section}: {', '.join(ks)}" for section, ks in info.kinds.items()) or "no backends"
        origin = "built-in" if info.builtin else f"{info.dist or '?'} {info.version or ''}".strip()
        if info.contract_version is None:
            contract = "no contract declared"
        elif info.contract_version == CONTRACT_VERSION:
            contract = f"declares contract v{info.contract_version}"
        else:
            contract = f"declares contract v{info.contract_version}, current is v{CONTRACT_VERSION}"
        click.echo(f"{info.name} ({origin}, {contract})")
        click.echo(f"  kinds: {kinds}")
        click.echo(f"  hooks: {', '.join(info.hooks)}")


@cli.group()
def model() -> None:
    """Publish and list model versions in the configured store."""


@model.command("publish")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--name", required=True, help="Model name.")
@click.option("--version", "version", help="Version (default: the next integer).")
@click.option("--alias", "aliases", multiple=True, help="Alias to point at this version (repeatable).")
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Metadata (repeatable).")
@pass_state
def model_publish(
    state: State, path: Path, name: str, version: str | None, aliases: tuple[str, ...], meta: tuple[str, ...]
) -> None:
    """Publish the file or folder PATH as a new immutable model version."""
    metadata = {}
    for item in meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--meta {item!r}: write KEY=VALUE")
        metadata[key] = value
    store = state.store()
    published = store.publish(path, name, version=version, aliases=aliases, metadata=metadata)
    click.echo(f"published {published.name}:{published.version} {published.digest} ({published.size} bytes)")


@model.command("list")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def model_list(state: State, name: str, as_json: bool) -> None:
    """List the versions of model NAME, newest last, with aliases."""
    store = state.store()
    versions = store.versions(name)
    aliases = store.aliases(name)
    if as_json:
        click.echo(
            json.dumps({"versions": [v.manifest() for v in versions], "aliases": aliases}, indent=2, default=str)
        )
        return
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(version, []).append("@" + alias)
    for v in versions:
        tags = " ".join(sorted(by_version.get(v.version, [])))
        click.echo(f"{v.version:>8}  {v.created:%Y-%m-%d %H:%M:%S}  {v.size:>12,} B  {v.digest[:19]}  {tags}".rstrip())


@model.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version")
@pass_state
def model_alias(state: State, name: str, alias: str, version: str) -> None:
    """Point ALIAS of model NAME at VERSION."""
    state.store().set_alias(name, alias.lstrip("@"), version)
    click.echo(f"{name}@{alias.lstrip('@')} -> {version}")


def _add_commands() -> None:
    """Commands that live in their own modules (imported here: they load nothing heavy)."""
    from shipway.doctor_command import doctor
    from shipway.scaffold.command import init

    cli.add_command(init)
    cli.add_command(doctor)


_add_commands()
add_global_options(cli)


def _json_logs(argv: list[str]) -> bool:
    """Whether --log-format json (or SHIPWAY_LOG_FORMAT=json) is in force, read before click parses."""
    chosen = os.environ.get("SHIPWAY_LOG_FORMAT", "text")
    for i, arg in enumerate(argv):
        if arg == "--log-format" and i + 1 < len(argv):
            chosen = argv[i + 1]
        elif arg.startswith("--log-format="):
            chosen = arg.split("=", 1)[1]
    return chosen == "json"


def main(argv: list[str] | None = None) -> int:
    """Console entry point: errors become one clear message and a documented exit code."""
    debug = "--debug" in (argv or sys.argv) or os.environ.get("SHIPWAY_DEBUG") not in (None, "", "0")
    try:
        returned = cli.main(args=argv, prog_name="shipway", standalone_mode=False)
    except ShipwayError as exc:
        if debug:
            traceback.print_exc()
        if _json_logs(argv if argv is not None else sys.argv[1:]):
            from shipway.progress import Reporter

            Reporter(log_format="json").event("error", "error", message=str(exc), exit_code=int(exc.exit_code))
        else:
            click.echo(f"error: {exc}", err=True)
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return int(ExitCode.CONFIG)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if debug:
            traceback.print_exc()
        click.echo(f"internal error: {type(exc).__name__}: {exc} (run with --debug for a traceback)", err=True)
        return int(ExitCode.INTERNAL)
    # ctx.exit(code) in a command (e.g. doctor) comes back here as the code
    return returned if isinstance(returned, int) else 0


def entry() -> None:
    """``shipway`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
