#!/usr/bin/env bash
# The lint and type gates CI runs before the tests (config: ruff.toml, mypy.ini).
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin
"$py/ruff" check .
"$py/ruff" format --check .
"$py/mypy"
