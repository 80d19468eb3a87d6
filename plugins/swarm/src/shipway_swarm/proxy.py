"""The proxy service: its image (built locally from a configured base) and its spec.

Why a proxy: with host-mode publishing one node can bind the stable port
once, so start-first cannot run the new task on it beside the old one, and
the ingress routing mesh (which would do this) needs IPVS. The app therefore
publishes nothing; the proxy (``tcpproxy.py``) holds the port and follows the
healthy tasks through Swarm's DNS, so the port keeps answering while tasks come
and go. No image is pulled: the proxy image is ``FROM proxy.base_image`` plus
one file, built on the engine shipway talks to, and the proxy task is pinned to
that node.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

from shipway.errors import BackendError
from shipway_swarm import spec
from shipway_swarm.settings import SwarmSettings

SCRIPT = Path(__file__).with_name("tcpproxy.py")
IMAGE_REPO = "shipway-swarm-proxy"
SCRIPT_PATH = "/opt/shipway/tcpproxy.py"


def image_tag(base_image_id: str) -> str:
    """The proxy image's tag: changes when the script or the base image does."""
    digest = hashlib.sha256(SCRIPT.read_bytes() + base_image_id.encode()).hexdigest()[:16]
    return f"{IMAGE_REPO}:{digest}"


def ensure_image(client: Any, base_image: str) -> str:
    """Build the proxy image from ``base_image`` if this engine does not have it yet; returns its tag."""
    import docker.errors

    try:
        base = client.images.get(base_image)
    except docker.errors.ImageNotFound:
        raise BackendError(
            f"orchestrator.proxy.base_image {base_image} is not on this Docker engine (the proxy image is built "
            "from it locally; it needs python3)"
        ) from None
    tag = image_tag(str(base.id))
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    dockerfile = (
        f"FROM {base_image}\n"
        f"COPY tcpproxy.py {SCRIPT_PATH}\n"
        "USER 65534:65534\n"
        f'ENTRYPOINT ["python3", "{SCRIPT_PATH}"]\n'
        'LABEL io.shipway.managed-by="shipway-swarm"\n'
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("Dockerfile", dockerfile.encode()), ("tcpproxy.py", SCRIPT.read_bytes())):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    try:
        client.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True, pull=False)
    except (docker.errors.BuildError, docker.errors.APIError) as exc:
        raise BackendError(f"cannot build the proxy image from {base_image}: {exc}") from None
    return tag


def service_body(
    name: str,
    app_service: str,
    app_port: int,
    image: str,
    node_id: str,
    network: str,
    settings: SwarmSettings,
    labels: dict[str, str],
) -> dict[str, Any]:
    """The proxy service: one task on this node, the stable port published, dnsrr (no VIP, no IPVS)."""
    from docker import types

    assert settings.published_port is not None
    port = settings.published_port
    container = types.ContainerSpec(
        image=image,
        args=[
            "--listen", f"0.0.0.0:{port}",
            "--upstream", f"tasks.{app_service}:{app_port}",
            "--connect-timeout", str(settings.proxy.connect_timeout),
            "--retry-window", str(settings.proxy.retry_window),
            "--replay-limit", str(settings.proxy.replay_limit),
        ],
        labels=labels,
        stop_grace_period=spec.nanos(2),
    )  # fmt: skip
    template = spec.stamp(
        types.TaskTemplate(
            container_spec=container,
            restart_policy=types.RestartPolicy(condition="any", delay=spec.nanos(1)),
            placement=types.Placement(constraints=[f"node.id=={node_id}"]),
            networks=[types.NetworkAttachmentConfig(network)],
        )
    )
    return {
        "Name": name,
        "Labels": labels,
        "TaskTemplate": template,
        "Mode": types.ServiceMode("replicated", replicas=1),
        "EndpointSpec": spec.endpoint_spec("dnsrr", port, settings.publish_mode, port),
    }
