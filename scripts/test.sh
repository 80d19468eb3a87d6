#!/usr/bin/env bash
# Set up a fresh machine (scripts/bootstrap.sh) and run the whole test suite with tox.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export DOCKER_BUILDKIT=0
exec .venv/bin/tox "$@"
