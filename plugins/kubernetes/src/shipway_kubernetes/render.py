"""Rendering a Release to Kubernetes manifests, patching them, and validating them.

Rendered: a Deployment (rolling, by digest, probes from the app's health
path, non-root read-only pod, secrets as a read-only volume referenced by
name), a Service, and optionally a HorizontalPodAutoscaler. Then, in order: the ``shipway_render_manifests``
hook, the user's extra manifest files, the user's JSON merge patches. Every
manifest is validated against the official schema of the target version
before anything is sent to the cluster.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from shipway import labels as L
from shipway.domain import Release
from shipway.errors import ConfigError

MANAGED_BY = "shipway"
REVISION = "deployment.kubernetes.io/revision"
ANNOTATION_PREFIX = "shipway.io/"
SECRETS_VERSION = f"{ANNOTATION_PREFIX}secrets-version"
SECRETS_MOUNT = "/run/secrets"
SECRETS_VOLUME = "shipway-secrets"
SECRET_FILE_MODE = 0o444  # read-only, and readable by the non-root user the pod runs as
Manifest = dict[str, Any]


def object_name(app: str, environment: str) -> str:
    """Deployment and Service name: the app, suffixed with the environment unless it is ``default``."""
    return app if environment == "default" else f"{app}-{environment}"


def pull_secret_name(app: str, environment: str) -> str:
    """The dockerconfigjson Secret shipway keeps in step with the registry's credentials."""
    return f"{object_name(app, environment)}-pull"


def secrets_name(app: str, environment: str) -> str:
    """The Secret holding ``Release.secrets``, mounted at ``/run/secrets``."""
    return f"{object_name(app, environment)}-secrets"


def selector_for(app: str, environment: str) -> dict[str, str]:
    """Labels that select an app's pods (and its ReplicaSets)."""
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": environment}


def render(release: Release, settings: Any, pull_secret: str | None = None) -> list[Manifest]:
    """Deployment + Service (+ HPA) for ``release`` with the orchestrator ``settings``.

    ``pull_secret`` names the Secret shipway keeps the registry's credentials in (used
    when the user names no ``image_pull_secret``). Secrets are referenced by name only:
    ``release.secrets`` become a read-only volume at ``/run/secrets``, never values here.
    """
    name = object_name(release.app, release.environment)
    match = selector_for(release.app, release.environment)
    meta_labels = {**match, "app.kubernetes.io/managed-by": MANAGED_BY}
    annotations = {
        f"{ANNOTATION_PREFIX}image": release.image.pinned,
        f"{ANNOTATION_PREFIX}commit": release.labels.get(L.REVISION, "unknown"),
        f"{ANNOTATION_PREFIX}model-name": release.labels.get(L.MODEL_NAME, "unknown"),
        f"{ANNOTATION_PREFIX}model-version": release.labels.get(L.MODEL_VERSION, "unknown"),
        f"{ANNOTATION_PREFIX}model-digest": release.labels.get(L.MODEL_DIGEST, "unknown"),
    }
    probe = {"httpGet": {"path": release.health, "port": "http"}, "periodSeconds": 2, "timeoutSeconds": 2}
    container: Manifest = {
        "name": "app",
        "image": release.image.pinned,
        "ports": [{"name": "http", "containerPort": release.port, "protocol": "TCP"}],
        "env": [{"name": k, "value": v} for k, v in sorted(release.env.items())],
        "readinessProbe": {**probe, "failureThreshold": 3},
        "livenessProbe": {**probe, "initialDelaySeconds": 10, "failureThreshold": 6},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": settings.read_only_root,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    volumes: list[Manifest] = [{"name": "tmp", "emptyDir": {}}]
    if release.secrets:
        container["volumeMounts"].append({"name": SECRETS_VOLUME, "mountPath": SECRETS_MOUNT, "readOnly": True})
        volumes.append(
            {
                "name": SECRETS_VOLUME,
                "secret": {
                    "secretName": secrets_name(release.app, release.environment),
                    "defaultMode": SECRET_FILE_MODE,
                },
            }
        )
    if settings.resources:
        container["resources"] = settings.resources
    env_from = [{"secretRef": {"name": s}} for s in settings.env_from_secrets]
    env_from += [{"configMapRef": {"name": c}} for c in settings.env_from_configmaps]
    if env_from:
        container["envFrom"] = env_from
    pod_spec: Manifest = {
        "containers": [container],
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": volumes,
        "automountServiceAccountToken": False,
    }
    if settings.image_pull_secret or pull_secret:
        pod_spec["imagePullSecrets"] = [{"name": settings.image_pull_secret or pull_secret}]
    deployment: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": settings.namespace, "labels": meta_labels, "annotations": annotations},
        "spec": {
            "replicas": release.replicas,
            "revisionHistoryLimit": settings.revision_history,
            "progressDeadlineSeconds": int(settings.deadline),
            "selector": {"matchLabels": match},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "template": {"metadata": {"labels": meta_labels, "annotations": annotations}, "spec": pod_spec},
        },
    }
    service: Manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": settings.namespace, "labels": meta_labels},
        "spec": {
            "type": settings.service_type,
            "selector": match,
            "ports": [{"name": "http", "port": settings.service_port, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    manifests = [deployment, service]
    if settings.autoscale is not None:
        manifests.append(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": name, "namespace": settings.namespace, "labels": meta_labels},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "minReplicas": settings.autoscale.min_replicas,
                    "maxReplicas": settings.autoscale.max_replicas,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {"type": "Utilization", "averageUtilization": settings.autoscale.cpu_percent},
                            },
                        }
                    ],
                },
            }
        )
        del deployment["spec"]["replicas"]  # the HPA owns the replica count
    return manifests


def load_documents(path: Path) -> list[Manifest]:
    """Every YAML document in ``path`` (a manifest or a patch file)."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except FileNotFoundError:
        raise ConfigError(f"orchestrator: manifest file {path} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "metadata" not in doc:
            raise ConfigError(f"{path}: every document needs kind and metadata")
    return docs


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def apply_patches(manifests: list[Manifest], patches: list[Manifest], source: str) -> list[Manifest]:
    """Apply each patch to the manifest of the same kind and name; a patch matching nothing is an error."""
    out = manifests
    for patch in patches:
        kind, name = patch.get("kind"), (patch.get("metadata") or {}).get("name")
        hits = [i for i, m in enumerate(out) if m["kind"] == kind and m["metadata"]["name"] == name]
        if not hits:
            known = ", ".join(f"{m['kind']}/{m['metadata']['name']}" for m in out)
            raise ConfigError(f"{source}: patch for {kind}/{name} matches no manifest (rendered: {known})")
        for i in hits:
            out[i] = merge_patch(out[i], patch)
    return out


def validate(manifests: list[Manifest], version: str) -> None:
    """Check every manifest against the official schema of Kubernetes ``version`` (strict: no unknown fields)."""
    import kubernetes_validate

    for manifest in manifests:
        where = f"{manifest.get('kind', '?')}/{(manifest.get('metadata') or {}).get('name', '?')}"
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            field = ".".join(str(p) for p in exc.path) or "(top level)"
            raise ConfigError(
                f"rendered manifest {where} is invalid for Kubernetes {version}: {field}: {exc.message}"
            ) from None
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as exc:
            raise ConfigError(f"rendered manifest {where}: no schema for Kubernetes {version}: {exc}") from None
