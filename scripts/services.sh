#!/usr/bin/env bash
# Start the real local backends shipway's default configuration and tests use,
# idempotently: a second run reuses whatever is already running.
#
#   Docker engine        unix:///var/run/docker.sock (Debian's docker.io), a single-node swarm manager
#   OCI registry         127.0.0.1:${SHIPWAY_REGISTRY_PORT:-5000}, htpasswd auth
#   Azurite (Azure Blob)  127.0.0.1:${SHIPWAY_AZURITE_PORT:-10000} (npm azurite, dev account devstoreaccount1)
#   moto (S3, ECR, EKS, STS APIs)  127.0.0.1:${SHIPWAY_MOTO_PORT:-5001} (PyPI moto[server], its own venv)
#   base image           shipway-base:bookworm (Debian minbase + python3, via debootstrap)
#   (tests make the tiny busybox image they need themselves: shipway.testing.services)
#
# The registry's credentials are written to $SHIPWAY_HOME/registry.env
# (SHIPWAY_REGISTRY_USERNAME / SHIPWAY_REGISTRY_PASSWORD): source it.
set -euo pipefail

SHIPWAY_HOME=${SHIPWAY_HOME:-$HOME/.local/share/shipway-dev}
REGISTRY_PORT=${SHIPWAY_REGISTRY_PORT:-5000}
BASE_IMAGE=${SHIPWAY_BASE_IMAGE:-shipway-base:bookworm}
mkdir -p "$SHIPWAY_HOME"

log() { printf '[services] %s\n' "$*"; }

need_pkgs=()
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v docker-registry >/dev/null || need_pkgs+=(docker-registry)
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
command -v busybox >/dev/null || need_pkgs+=(busybox-static)
command -v htpasswd >/dev/null || need_pkgs+=(apache2-utils)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v npm >/dev/null || need_pkgs+=(npm)
if ((${#need_pkgs[@]})); then
  log "installing Debian packages: ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# --- Docker engine ---------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  setsid dockerd --host unix:///var/run/docker.sock >/var/log/dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; see /var/log/dockerd.log"; tail -20 /var/log/dockerd.log; exit 1; }
fi
log "docker engine $(docker version --format '{{.Server.Version}}') is up"

# --- single-node swarm (the swarm orchestrator's tests) ----------------------
if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = "inactive" ]; then
  log "initialising a single-node swarm"
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null
fi
log "swarm: $(docker info --format '{{.Swarm.LocalNodeState}}')"

# --- OCI registry with htpasswd auth ---------------------------------------
REG_DIR=$SHIPWAY_HOME/registry
mkdir -p "$REG_DIR/data"
if [ ! -f "$SHIPWAY_HOME/registry.env" ]; then
  password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  printf 'SHIPWAY_REGISTRY_USERNAME=shipway\nSHIPWAY_REGISTRY_PASSWORD=%s\n' "$password" > "$SHIPWAY_HOME/registry.env"
  chmod 600 "$SHIPWAY_HOME/registry.env"
  rm -f "$REG_DIR/htpasswd"
fi
set -a
# shellcheck disable=SC1091
. "$SHIPWAY_HOME/registry.env"
set +a
if [ ! -f "$REG_DIR/htpasswd" ]; then
  htpasswd -nbB "$SHIPWAY_REGISTRY_USERNAME" "$SHIPWAY_REGISTRY_PASSWORD" | sed '/^$/d' > "$REG_DIR/htpasswd"
fi
cat > "$REG_DIR/config.yml" <<YML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $REG_DIR/data}
  delete: {enabled: true}
http: {addr: 127.0.0.1:$REGISTRY_PORT}
auth:
  htpasswd: {realm: shipway-dev, path: $REG_DIR/htpasswd}
YML
if ! curl -fs -o /dev/null -u "$SHIPWAY_REGISTRY_USERNAME:$SHIPWAY_REGISTRY_PASSWORD" "http://127.0.0.1:$REGISTRY_PORT/v2/"; then
  log "starting docker-registry on 127.0.0.1:$REGISTRY_PORT"
  setsid docker-registry serve "$REG_DIR/config.yml" >"$SHIPWAY_HOME/registry.log" 2>&1 < /dev/null &
  for _ in $(seq 1 50); do
    curl -fs -o /dev/null -u "$SHIPWAY_REGISTRY_USERNAME:$SHIPWAY_REGISTRY_PASSWORD" "http://127.0.0.1:$REGISTRY_PORT/v2/" && break
    sleep 0.1
  done
fi
curl -fs -o /dev/null -u "$SHIPWAY_REGISTRY_USERNAME:$SHIPWAY_REGISTRY_PASSWORD" "http://127.0.0.1:$REGISTRY_PORT/v2/" \
  || { log "registry did not start; see $SHIPWAY_HOME/registry.log"; exit 1; }
log "registry 127.0.0.1:$REGISTRY_PORT is up (credentials in $SHIPWAY_HOME/registry.env)"

# --- Azurite: Azure Blob Storage emulator (npm) ------------------------------
AZURITE_PORT=${SHIPWAY_AZURITE_PORT:-10000}
AZURITE=$SHIPWAY_HOME/azurite/node_modules/.bin/azurite-blob
if [ ! -x "$AZURITE" ]; then
  log "installing azurite (npm)"
  mkdir -p "$SHIPWAY_HOME/azurite"
  (cd "$SHIPWAY_HOME/azurite" && npm install --silent --no-audit --no-fund azurite >/dev/null)
fi
if ! curl -s -o /dev/null "http://127.0.0.1:$AZURITE_PORT/"; then
  log "starting azurite on 127.0.0.1:$AZURITE_PORT"
  mkdir -p "$SHIPWAY_HOME/azurite-data"
  setsid "$AZURITE" --blobHost 127.0.0.1 --blobPort "$AZURITE_PORT" --location "$SHIPWAY_HOME/azurite-data" \
    --skipApiVersionCheck --loose --disableTelemetry >"$SHIPWAY_HOME/azurite.log" 2>&1 < /dev/null &
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$AZURITE_PORT/" && break; sleep 0.1; done
fi
curl -s -o /dev/null "http://127.0.0.1:$AZURITE_PORT/" || { log "azurite did not start; see $SHIPWAY_HOME/azurite.log"; exit 1; }
log "azurite 127.0.0.1:$AZURITE_PORT is up"

# --- moto: the AWS APIs (S3, ECR, EKS, STS) for the aws plugin (PyPI) ---------
# Point boto3 at it with AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT and any test keys.
MOTO_PORT=${SHIPWAY_MOTO_PORT:-5001}
MOTO=$SHIPWAY_HOME/moto/bin/moto_server
if [ ! -x "$MOTO" ]; then
  log "installing moto[server] into $SHIPWAY_HOME/moto"
  python3 -m venv "$SHIPWAY_HOME/moto"
  "$SHIPWAY_HOME/moto/bin/pip" install -q --disable-pip-version-check 'moto[server]>=5.1'
fi
if ! curl -fs -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/"; then
  log "starting moto on 127.0.0.1:$MOTO_PORT"
  setsid "$MOTO" -H 127.0.0.1 -p "$MOTO_PORT" >"$SHIPWAY_HOME/moto.log" 2>&1 < /dev/null &
  for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/" && break; sleep 0.1; done
fi
curl -fs -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/" || { log "moto did not start; see $SHIPWAY_HOME/moto.log"; exit 1; }
log "moto 127.0.0.1:$MOTO_PORT is up"

# --- base images (no image can be pulled here: build them locally) ----------
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  # The mirror apt already uses here (or $SHIPWAY_DEBIAN_MIRROR): no public host is assumed.
  mirror=$(python3 "$(dirname "$0")/debian_mirror.py" bookworm) || exit 1
  log "building $BASE_IMAGE with debootstrap from $mirror (about a minute)"
  rootfs=$(mktemp -d)
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$SHIPWAY_HOME/debootstrap.log" 2>&1 \
    || { log "debootstrap failed; see $SHIPWAY_HOME/debootstrap.log"; tail -20 "$SHIPWAY_HOME/debootstrap.log"; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
fi
log "base image $BASE_IMAGE is ready"
