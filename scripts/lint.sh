#!/usr/bin/env bash
# The lint and type gates, quickly, from .venv (config: ruff.toml, mypy.ini). CI runs the same three
# commands inside tox (tox.ini commands_pre), where every distribution is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin
"$py/ruff" check .
"$py/ruff" format --check .
"$py/mypy"
