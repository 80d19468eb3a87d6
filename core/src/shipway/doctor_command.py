"""The `shipway doctor` command (the checks are in shipway.doctor)."""

from __future__ import annotations

import json
from typing import Any

import click


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def doctor(state: Any, as_json: bool) -> None:
    """Check that the configured backends are ready: one line per check, with the fix when it fails.

    Exit code 0 when every check passes, 2 when the configuration does not load, 7 when another check fails.
    """
    from shipway import doctor as checks_module

    checks = checks_module.run(state)
    if as_json:
        click.echo(json.dumps([c.as_dict() for c in checks], indent=2))
    else:
        for check in checks:
            click.echo(checks_module.format_line(check))
    click.get_current_context().exit(checks_module.exit_code(checks))
