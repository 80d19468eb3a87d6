"""Service specs built from a Release and the settings, with the Docker SDK's types.

Pure functions (no engine calls), so the spec is testable on its own. The
update and rollback policies are built here too: the orchestrator sets them
at creation or in an update of their own, never with a new image.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from typing import TYPE_CHECKING, Any

from shipway import labels
from shipway.domain import Release
from shipway_swarm.settings import Limits, SwarmSettings, memory_bytes

if TYPE_CHECKING:  # the SDK loads when a release runs, not with the plugin
    from docker import types

L_MANAGED = "io.shipway.managed-by"
L_APP = labels.APP  # the same app label as on the image, from its one definition
L_ENV = "io.shipway.environment"
L_ROLE = "io.shipway.swarm.role"
L_REVISION = "io.shipway.swarm.revision"
L_PORT = "io.shipway.port"
L_HEALTH = "io.shipway.health"
L_TEMPLATE = "io.shipway.swarm.template"
MANAGER = "shipway-swarm"
NS = 1_000_000_000

_NAME_BAD = re.compile(r"[^a-z0-9-]+")


def service_name(app: str, environment: str) -> str:
    """``<app>-<environment>``, made a valid Swarm name (at most 50 characters, so suffixes fit in 63)."""
    name = _NAME_BAD.sub("-", f"{app}-{environment}".lower()).strip("-")
    if len(name) > 50:
        name = f"{name[:41]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return name


def network_name(service: str) -> str:
    """The attachable overlay network an app and its proxy share."""
    return f"shipway-{service}"


def proxy_name(service: str) -> str:
    return f"{service}-proxy"


def nanos(seconds: float) -> int:
    return int(seconds * NS)


def health_test(port: int, path: str, settings: SwarmSettings) -> list[str]:
    """The task's health check: ``settings.health_command``, else GET the health path with what the image has."""
    if settings.health_command:
        return ["CMD", *settings.health_command]
    url = f"http://127.0.0.1:{port}/{path.lstrip('/')}"
    q = shlex.quote(url)
    timeout = max(1, int(settings.health_timeout))
    probe = (
        f"if command -v wget >/dev/null 2>&1; then wget -q -O /dev/null {q}; "  # the check's timeout bounds it
        f"elif command -v curl >/dev/null 2>&1; then curl -fsS -m {timeout} -o /dev/null {q}; "
        "else python3 -c 'import sys, urllib.request; "
        f"urllib.request.urlopen(sys.argv[1], timeout={timeout})' {q}; fi"
    )
    return ["CMD-SHELL", probe]


def update_config(settings: SwarmSettings) -> types.UpdateConfig:
    """Start-first, one task at a time by default, Swarm rolls back a failed update by itself."""
    from docker import types

    return types.UpdateConfig(
        parallelism=settings.parallelism,
        delay=0,
        failure_action="rollback",
        monitor=nanos(settings.monitor),
        max_failure_ratio=settings.max_failure_ratio,
        order="start-first",
    )


def rollback_config(settings: SwarmSettings) -> types.RollbackConfig:
    """Rollbacks are start-first too, so undoing a release drops nothing either."""
    from docker import types

    return types.RollbackConfig(
        parallelism=settings.parallelism,
        delay=0,
        failure_action="pause",
        monitor=nanos(settings.monitor),
        max_failure_ratio=settings.max_failure_ratio,
        order="start-first",
    )


def policy_differs(current: dict[str, Any], settings: SwarmSettings) -> bool:
    """Whether the live service's update or rollback policy differs from the configured one."""
    for key, wanted in (("UpdateConfig", update_config(settings)), ("RollbackConfig", rollback_config(settings))):
        live = current.get(key) or {}
        if any(live.get(k, 0 if isinstance(v, int | float) else None) != v for k, v in wanted.items()):
            return True
    return False


def _limits(found: Limits) -> dict[str, int]:
    out: dict[str, int] = {}
    if found.cpus is not None:
        out["cpu"] = int(found.cpus * NS)
    if found.memory is not None:
        out["mem"] = memory_bytes(found.memory)
    return out


def resources(settings: SwarmSettings) -> types.Resources | None:
    from docker import types

    if settings.resources is None:
        return None
    limits, reservations = _limits(settings.resources.limits), _limits(settings.resources.reservations)
    return types.Resources(
        cpu_limit=limits.get("cpu"),
        mem_limit=limits.get("mem"),
        cpu_reservation=reservations.get("cpu"),
        mem_reservation=reservations.get("mem"),
    )


def endpoint_spec(
    mode: str, target_port: int, publish_mode: str, published: int | None, publish: bool = True
) -> types.EndpointSpec:
    """Endpoint mode (vip/dnsrr) and, when ``publish``, the target port published in ingress or host mode:
    on ``published``, or on a port Swarm picks (per task in host mode) when that is None."""
    from docker import types

    if not publish:
        return types.EndpointSpec(mode=mode)
    if published is None:
        return types.EndpointSpec(
            mode=mode, ports=[{"TargetPort": target_port, "Protocol": "tcp", "PublishMode": publish_mode}]
        )
    return types.EndpointSpec(mode=mode, ports={published: (target_port, "tcp", publish_mode)})


def app_labels(release: Release, role: str, revision: int | None = None) -> dict[str, str]:
    """Service labels: shipway's own, plus the release's trace labels (commit, model version)."""
    found = dict(release.labels)
    found.update(
        {
            L_MANAGED: MANAGER,
            L_APP: release.app,
            L_ENV: release.environment,
            L_ROLE: role,
            L_PORT: str(release.port),
            L_HEALTH: release.health,
        }
    )
    if revision is not None:
        found[L_REVISION] = str(revision)
    return found


def stamp(template: types.TaskTemplate) -> types.TaskTemplate:
    """Label the container spec with a hash of the whole task template.

    Every task carries its template's labels, so this tells the tasks of one
    revision from another even when only env, secrets or resources changed
    and the image did not.
    """
    container = template["ContainerSpec"]
    labels = {k: v for k, v in (container.get("Labels") or {}).items() if k != L_TEMPLATE}
    container["Labels"] = labels
    digest = hashlib.sha256(json.dumps(template, sort_keys=True, default=str).encode()).hexdigest()[:16]
    container["Labels"] = {**labels, L_TEMPLATE: digest}
    return template


def template_id(template: dict[str, Any] | None) -> str:
    """The ``stamp`` of a task template (a service spec's, or a task's ``Spec``)."""
    return str(((template or {}).get("ContainerSpec") or {}).get("Labels", {}).get(L_TEMPLATE, ""))


def task_template(
    release: Release,
    settings: SwarmSettings,
    network: str,
    secrets: list[types.SecretReference],
) -> types.TaskTemplate:
    """The app's task: pinned image, env, labels, health check, secrets, resources, placement, networks."""
    from docker import types

    container = types.ContainerSpec(
        image=release.image.pinned,
        env=[f"{k}={v}" for k, v in sorted(release.env.items())],
        labels=app_labels(release, "app"),
        healthcheck=types.Healthcheck(
            test=health_test(release.port, release.health, settings),
            interval=nanos(settings.health_interval),
            timeout=nanos(settings.health_timeout),
            retries=settings.health_retries,
            start_period=nanos(settings.health_start_period),
        ),
        secrets=secrets or None,
        stop_grace_period=nanos(settings.stop_grace_period),
    )
    return stamp(
        types.TaskTemplate(
            container_spec=container,
            resources=resources(settings),
            restart_policy=types.RestartPolicy(condition="any", delay=nanos(1)),
            placement=types.Placement(constraints=settings.constraints or None),
            networks=[types.NetworkAttachmentConfig(n) for n in [network, *settings.networks]],
        )
    )


def service_body(
    name: str,
    template: types.TaskTemplate,
    labels: dict[str, str],
    replicas: int,
    endpoint: types.EndpointSpec,
    settings: SwarmSettings,
) -> dict[str, Any]:
    """A whole service spec as the Engine API takes it (create, or update with the policy kept)."""
    from docker import types

    return {
        "Name": name,
        "Labels": labels,
        "TaskTemplate": template,
        "Mode": types.ServiceMode("replicated", replicas=replicas),
        "UpdateConfig": update_config(settings),
        "RollbackConfig": rollback_config(settings),
        "EndpointSpec": endpoint,
    }
