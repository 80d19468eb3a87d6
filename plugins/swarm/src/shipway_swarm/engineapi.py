"""The few Swarm calls the SDK does not make the way we need, through the SDK's own connection.

``docker-py`` takes registry credentials for services from its login state, and
has no ``rollback=previous`` update; both are one Engine API parameter, so
services are created, updated and rolled back here with an explicit
``X-Registry-Auth`` header (``--with-registry-auth``) built from the ``auth``
the engine passes to ``deploy``.
"""

from __future__ import annotations

import json
from typing import Any

from shipway import dockerutil
from shipway.errors import BackendError, NotFound


class Conflict(BackendError):
    """The engine answered 409: the object exists, or the service version moved (a concurrent update)."""


class SwarmApi:
    """Engine API calls on the shared Docker client's connection."""

    def __init__(self) -> None:
        self.client = dockerutil.client()

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
        auth: dict[str, str] | None = None,
    ) -> Any:
        """One Engine API call; 404 → NotFound, 409 → Conflict, other errors → BackendError with the message."""
        import docker.auth
        import requests

        api = self.client.api
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["X-Registry-Auth"] = docker.auth.encode_header(auth).decode()
        data = None
        if body is not None:
            data = json.dumps({k: v for k, v in body.items() if v is not None} if isinstance(body, dict) else body)
        url = f"{api.base_url}/v{api.api_version}{path}"
        try:
            resp = api.request(method, url, params=params, data=data, headers=headers, timeout=120)
        except requests.RequestException as exc:
            raise BackendError(f"cannot reach the Docker engine: {type(exc).__name__}: {exc}") from None
        if resp.status_code >= 400:
            try:
                message = str(resp.json().get("message", resp.text))
            except ValueError:
                message = resp.text
            if resp.status_code == 404:
                raise NotFound(message)
            if resp.status_code == 409:
                raise Conflict(message)
            if resp.status_code == 503 and "swarm" in message.lower():
                raise BackendError(
                    f"{message}: this engine is not a swarm manager (`docker swarm init`, or point DOCKER_HOST at one)"
                )
            raise BackendError(f"{method} {path}: {resp.status_code} {message}")
        if not resp.content:
            return None
        return resp.json()

    # -- services -------------------------------------------------------------------------
    def service(self, name: str) -> dict[str, Any] | None:
        """The service named ``name``, or None."""
        try:
            found = self.request("GET", f"/services/{name}", params={"insertDefaults": "false"})
        except NotFound:
            return None
        return found if isinstance(found, dict) and found.get("Spec", {}).get("Name") == name else None

    def create_service(self, body: dict[str, Any], auth: dict[str, str] | None) -> str:
        return str(self.request("POST", "/services/create", body=body, auth=auth)["ID"])

    def update_service(
        self,
        service: dict[str, Any],
        body: dict[str, Any],
        auth: dict[str, str] | None,
        rollback: bool = False,
    ) -> None:
        """Replace the service's spec (optimistic on its version: a concurrent writer gets Conflict)."""
        params: dict[str, Any] = {"version": service["Version"]["Index"]}
        if rollback:
            params["rollback"] = "previous"
        if auth is None:
            params["registryAuthFrom"] = "previous-spec" if rollback else "spec"
        self.request("POST", f"/services/{service['ID']}/update", params=params, body=body, auth=auth)

    def tasks(self, service: str) -> list[dict[str, Any]]:
        found = self.request("GET", "/tasks", params={"filters": json.dumps({"service": [service]})})
        return list(found or [])

    def remove_service(self, name: str) -> bool:
        try:
            self.request("DELETE", f"/services/{name}")
        except NotFound:
            return False
        return True

    def node_id(self) -> str:
        info = self.request("GET", "/info")
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            raise BackendError(
                "the Docker engine is not a swarm manager (state "
                f"{swarm.get('LocalNodeState', 'unknown')}): run `docker swarm init` or point DOCKER_HOST at a manager"
            )
        return str(swarm["NodeID"])
