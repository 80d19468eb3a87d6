#!/usr/bin/env bash
# Set up a fresh machine (scripts/bootstrap.sh), then run the lint and type gates and the whole test suite
# with tox (tox.ini: ruff and mypy first, then pytest, with every distribution installed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export DOCKER_BUILDKIT=0
exec .venv/bin/tox "$@"
