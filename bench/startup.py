#!/usr/bin/env python3
"""CLI start-up: medians of ``shipway --help``, ``validate`` and ``plugins``, and what each imports.

Run after the README's setup (no service needed)::

    .venv/bin/python bench/startup.py --runs 20

Each command runs in a fresh process, ``--runs`` times, the commands
alternating run by run; the table shows medians (and the spread). ``python -c
pass`` is the interpreter's own floor. ``--baseline DIR`` runs the same
commands on another copy of ``core/src`` too, alternating, e.g. before a
change: ``git archive HEAD~1 core/src | tar -x -C /tmp/before``, then
``--baseline /tmp/before/core/src``. ``--baseline-python PY`` runs them with
another interpreter instead, e.g. a venv installed from another checkout with
its plugins (a change to plugins needs that one). Run this script with the
interpreter of the venv to measure: its installed plugins load with
``validate`` and ``plugins``. One untimed run of each command first
writes the bytecode, as any first run does (``PYTHONDONTWRITEBYTECODE`` is
dropped from the children's environment: with it set and no bytecode, every
run compiles shipway's sources again).

Then each command once more under ``python -X importtime``: which SDKs and
call libraries (azure, boto3, botocore, kubernetes, docker, requests, urllib3,
tenacity, filelock) it imported, and where its import
time goes: each top-level package's own import time, summed over its modules.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "examples" / "flask_app" / "shipway.yaml"
# What a backend loads to make calls: not needed to read a config (tests/test_startup_imports.py).
SDKS = ("azure", "boto3", "botocore", "kubernetes", "docker", "requests", "urllib3", "tenacity", "filelock")
TARGETS = {"--help": 0.25, "validate": 0.5}


def commands(baseline: Path | None, baseline_python: Path | None = None) -> dict[str, list[str]]:
    py = sys.executable
    found = {
        "python -c pass": [py, "-c", "pass"],
        "--help": [py, "-m", "shipway.cli", "--help"],
        "validate": [py, "-m", "shipway.cli", "validate", "-c", str(CONFIG)],
        "plugins": [py, "-m", "shipway.cli", "plugins"],
    }
    if baseline is not None:  # the same commands on another checkout's core (e.g. `git archive` of a commit)
        sys_path = f"import sys; sys.path.insert(0, {str(baseline)!r}); import runpy; "
        for name in ("--help", "validate", "plugins"):
            args = found[name][3:]
            found[f"{name} (baseline)"] = [
                py,
                "-c",
                sys_path + f"sys.argv = ['shipway', *{args!r}]; runpy.run_module('shipway.cli', run_name='__main__')",
            ]
    if baseline_python is not None:  # the same commands in another venv (its own shipway and plugins)
        for name in ("--help", "validate", "plugins"):
            found[f"{name} (baseline)"] = [str(baseline_python), *found[name][1:]]
    return found


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("SHIPWAY_")}
    env["NO_COLOR"] = "1"
    return env


def run(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return seconds


def imports(cmd: list[str], env: dict[str, str]) -> list[tuple[int, str]]:
    """(self microseconds, module) of every import ``cmd`` made."""
    proc = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=env, capture_output=True, text=True)
    found = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, _, name = line.removeprefix("import time:").split("|")
        found.append((int(own), name.strip()))
    return found


def by_package(found: list[tuple[int, str]]) -> list[tuple[int, int, str]]:
    """(self microseconds, modules, top-level package), costliest first."""
    totals: dict[str, list[int]] = {}
    for own, module in found:
        entry = totals.setdefault(module.split(".")[0], [0, 0])
        entry[0] += own
        entry[1] += 1
    return sorted(((us, n, package) for package, (us, n) in totals.items()), reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--top", type=int, default=8, help="import costs shown per command")
    parser.add_argument(
        "--baseline", type=Path, help="also run each command on this copy of core/src (alternating), e.g. a commit's"
    )
    parser.add_argument(
        "--baseline-python", type=Path, help="also run each command with this interpreter (another venv), alternating"
    )
    args = parser.parse_args()
    if args.baseline and args.baseline_python:
        parser.error("give --baseline or --baseline-python, not both")
    if args.baseline_python and not os.access(args.baseline_python, os.X_OK):
        parser.error(f"--baseline-python {args.baseline_python}: not an executable")
    env = child_env()
    cmds = commands(args.baseline, args.baseline_python)
    for cmd in cmds.values():
        run(cmd, env)  # writes bytecode; not timed
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(args.runs):
        for name, cmd in cmds.items():
            times[name].append(run(cmd, env))
    floor = statistics.median(times["python -c pass"])
    print(f"{args.runs} runs each, alternating, medians")
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print()
    print("| command | median s | min-max s | minus interpreter | target | met |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, runs in times.items():
        med = statistics.median(runs)
        target = TARGETS.get(name.removesuffix(" (baseline)"))
        met = "" if target is None else ("yes" if med < target else "NO")
        print(
            f"| {name} | {med:.3f} | {min(runs):.3f}-{max(runs):.3f} | {med - floor:.3f} | "
            f"{'' if target is None else f'< {target}'} | {met} |"
        )
    print()
    for name, cmd in cmds.items():
        if name == "python -c pass" or name.endswith("(baseline)"):
            continue
        found = imports(cmd, env)
        packages = by_package(found)
        sdks = [sdk for sdk in SDKS if any(package == sdk for _, _, package in packages)]
        total = sum(own for own, _ in found)
        print(f"{name}: {len(found)} modules, {total / 1e3:.0f} ms importing (under importtime)", end="")
        print(f"; SDKs and call libraries: {sdks or 'none'}")
        for own, count, package in packages[: args.top]:
            print(f"  {own / 1e3:7.1f} ms  {package} ({count} modules)")


if __name__ == "__main__":
    main()
