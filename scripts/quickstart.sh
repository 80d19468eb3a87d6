#!/usr/bin/env bash
# From a fresh machine to the example AI app serving on http://127.0.0.1:8080,
# through the whole pipeline on the embedded local default (local model store,
# local OCI registry with auth, local Docker engine):
#   train + publish a model -> shipway run (test, model, build, verify, push)
#   -> shipway release -> a real prediction from the live service.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

set -a
# shellcheck disable=SC1091
. "${SHIPWAY_HOME:-$HOME/.local/share/shipway-dev}/registry.env"
set +a
export PATH="$PWD/.venv/bin:$PATH" DOCKER_BUILDKIT=0
cd examples/flask_app

if ! shipway model list digits | grep -q .; then
  python train.py --out build/model
  shipway model publish build/model --name digits --alias production
fi
shipway model list digits
shipway run --output build/build-record.json
shipway release --output build/release-record.json
shipway status
echo
echo "POST /score with a held-out handwritten 7:"
curl -sf -X POST -H 'Content-Type: application/json' --data @tests/data/seven.json http://127.0.0.1:8080/score
echo
