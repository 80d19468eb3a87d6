"""Real local services for tests: a Docker engine check, an OCI registry with auth, tiny images.

Nothing here fakes a backend: a service that cannot start is an error that
says what to install, never a skipped test.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from shipway import dockerutil

TINY_IMAGE = os.environ.get("SHIPWAY_TINY_IMAGE", "shipway-busybox:latest")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IMAGE_SETTINGS = ("Env", "WorkingDir", "ExposedPorts", "Healthcheck", "StopSignal", "Volumes", "Labels")
"""What a tiny image keeps of its base's settings (Cmd, Entrypoint and User are the kit's own)."""
BUSYBOX_APPLETS = ("sh", "httpd", "wget", "sleep", "cat", "echo", "mkdir", "ls")
SERVE = ["sh", "-c", "trap 'sleep 1; exit 0' TERM; httpd -f -p 8000 -h /www & wait $!"]
"""A tiny image's server. On SIGTERM it goes on answering for a second, then exits, as a real server
drains (httpd alone, the container's first process, would ignore the signal and every stop would wait
out the orchestrator's grace period). Its exit status is httpd's when httpd ends by itself."""
IGNORES_SIGTERM = ["httpd", "-f", "-p", "8000", "-h", "/www"]
"""The tiny server as the first process: it ignores SIGTERM and serves until SIGKILL."""


class ServiceError(RuntimeError):
    """A real service the tests need could not be started (a failed setup, not a skip)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate a service process, killing it if it has not exited within 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def wait_for_http(
    url: str,
    what: str,
    seconds: float,
    *,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
    ready: Callable[[requests.Response], bool] = lambda resp: True,
    auth: tuple[str, str] | None = None,
) -> None:
    """Poll ``url`` until a response is ``ready`` (by default: any answer) while a service starts.

    ServiceError naming ``what`` if ``process`` exits first (with the end of its
    ``log``), or after ``seconds``; the process is then killed.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-500:] if log is not None and log.is_file() else ""
            raise ServiceError(f"{what} exited with {process.returncode}: {tail}")
        try:
            if ready(requests.get(url, auth=auth, timeout=1)):
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    if process is not None:
        process.kill()
    raise ServiceError(f"{what} did not answer on {url} within {seconds:.0f}s")


def require_docker() -> None:
    """Raise ServiceError unless a Docker engine answers."""
    try:
        dockerutil.client()
    except Exception as exc:  # noqa: BLE001
        raise ServiceError(f"{exc}") from None


@dataclass
class RegistryService:
    """A running ``docker-registry`` with htpasswd auth on 127.0.0.1."""

    address: str
    username: str
    password: str
    root: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop_process(self.process)


def start_registry(root: Path, username: str = "shipway", password: str | None = None) -> RegistryService:
    """Start Debian's ``docker-registry`` (distribution) with a bcrypt htpasswd file."""
    binary = shutil.which("docker-registry") or shutil.which("registry")
    if binary is None:
        raise ServiceError("docker-registry is not installed (apt-get install docker-registry)")
    import bcrypt

    password = password or secrets.token_urlsafe(16)
    root.mkdir(parents=True, exist_ok=True)
    (root / "htpasswd").write_text(f"{username}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}\n")
    port = free_port()
    (root / "config.yml").write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
        f"auth: {{htpasswd: {{realm: shipway-test, path: {root / 'htpasswd'}}}}}\n"
    )
    log = (root / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    wait_for_http(
        f"http://{address}/v2/",
        "docker-registry",
        15,
        process=process,
        log=root / "registry.log",
        ready=lambda resp: resp.status_code == 200,
        auth=(username, password),
    )
    return RegistryService(address, username, password, root, process)


def ensure_tiny_image() -> str:
    """A busybox image (``shipway-busybox:latest``) imported from Debian's busybox-static."""
    client = dockerutil.client()
    try:
        client.images.get(TINY_IMAGE)
        return TINY_IMAGE
    except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound
        pass
    busybox = shutil.which("busybox")
    if busybox is None:
        raise ServiceError("busybox is not installed (apt-get install busybox-static)")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(busybox, arcname="bin/busybox")
        for applet in BUSYBOX_APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    repo, tag = TINY_IMAGE.rsplit(":", 1)
    client.api.import_image_from_data(buf.getvalue(), repository=repo, tag=tag)
    return TINY_IMAGE


def build_tiny_image(
    tag: str,
    labels: dict[str, str] | None = None,
    files: dict[str, str] | None = None,
    command: list[str] | None = None,
) -> str:
    """Make a tiny image serving ``files`` over HTTP on port 8000 (busybox httpd). Returns its ID.

    It also serves ``/secrets/<name>``: the secret files an orchestrator mounts at ``/run/secrets``.

    ``command`` (a whole argv: the image has no entrypoint) replaces :data:`SERVE`, e.g.
    ``["sh", "-c", "exit 3"]`` for an image that fails, or :data:`IGNORES_SIGTERM`.

    The image is the base (``SHIPWAY_TINY_IMAGE``) plus one layer holding
    ``/www``, loaded into the engine with its config, the base's settings kept:
    no build container per Dockerfile step (a build took about 1.2 s, a load
    takes a tenth).
    """
    from datetime import UTC, datetime

    from shipway import image
    from shipway.layers import Entry, tar_chunks, with_parents
    from shipway.manifest import Blob, sha256

    client = dockerutil.client()
    base = client.api.inspect_image(ensure_tiny_image())
    www = [Entry(name="www/secrets", kind="symlink", linkname="/run/secrets")]
    for name, content in (files or {"healthz": "ok"}).items():
        data = f"{content}\n".encode()  # what `echo` in a RUN step writes
        www.append(Entry(name=f"www/{name}", size=len(data), data=data))
    layer = b"".join(tar_chunks(with_parents(www)))
    diff_ids = [*base["RootFS"]["Layers"], sha256(layer)]
    settings = {k: v for k, v in (base["Config"] or {}).items() if k in IMAGE_SETTINGS and v}
    env = settings.get("Env") or []
    created = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    config = {
        "architecture": base["Architecture"],
        "os": base["Os"],
        "created": created,
        "config": {
            **settings,
            "Env": env if any(e.startswith("PATH=") for e in env) else [*env, f"PATH={DEFAULT_PATH}"],
            "Entrypoint": None,
            "Cmd": command or SERVE,
            "User": "65534:65534",  # a well-behaved image: not root
            "Labels": {**(settings.get("Labels") or {}), **(labels or {})},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": created, "created_by": f"layer {i + 1} of {TINY_IMAGE}"} for i in range(len(diff_ids) - 1)
        ]
        + [{"created": created, "created_by": "shipway.testing: /www and the image's settings"}],
    }
    raw = json.dumps(config, sort_keys=True).encode()
    blob = Blob(diff_ids[-1], len(layer), opener=lambda: [layer])
    image.docker_load(raw, diff_ids, [(len(diff_ids) - 1, blob)], [tag])  # the engine holds the base's layers
    loaded = str(client.images.get(tag).id)
    if loaded != sha256(raw):
        raise ServiceError(f"docker load of {tag} gave {loaded}, not the image written ({sha256(raw)})")
    return loaded
