#!/usr/bin/env bash
# Set up a fresh machine (scripts/bootstrap.sh), run the lint and type gates, then the whole test suite with tox.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
echo "[test] lint and type gates (ruff, mypy)"
bash scripts/lint.sh
export DOCKER_BUILDKIT=0
exec .venv/bin/tox "$@"
