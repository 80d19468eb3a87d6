#!/usr/bin/env bash
# Set up a fresh machine for shipway, idempotently:
#   - Debian packages (Docker engine, OCI registry, debootstrap, busybox, git)
#   - a virtualenv in .venv with shipway (editable) and the example's dev tools
#   - the local services (scripts/services.sh: Docker engine, registry with auth, base image)
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for cmd in dockerd:docker.io docker-registry:docker-registry debootstrap:debootstrap busybox:busybox-static \
           htpasswd:apache2-utils curl:curl git:git \
           zsh:zsh fish:fish chromium:chromium; do  # the completion tests' shells; the report test's browser
  command -v "${cmd%%:*}" >/dev/null || need+=("${cmd##*:}")
done
# Debian's own python3 with venv and pip 23: tests/test_install.py installs with it as a new user would.
/usr/bin/python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
if ((${#need[@]})); then
  echo "[bootstrap] installing Debian packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "[bootstrap] creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.shipway-deps
want=$(cat core/pyproject.toml examples/flask_app/requirements*.txt requirements-lint.txt scripts/bootstrap.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[bootstrap] installing Python packages into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e 'core[test]' \
    -r examples/flask_app/requirements-dev.txt 'tox>=4' -r requirements-lint.txt
  echo "$want" > "$stamp"
fi

bash scripts/services.sh
