"""Release state every runner of a swarm sees: the release lock and the failed digests, as config objects.

Config objects live in the swarm's Raft store, so any manager answers the
same. A name is unique in the swarm, which makes creating ``shipway-lock-…``
an atomic test-and-set. Neither is kept on the service itself: a service
update would replace the spec Swarm's rollback goes back to.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from shipway.backends.base import remember_failed
from shipway.errors import BackendError, LockedError
from shipway_swarm.spec import L_APP, L_ENV, L_MANAGED, MANAGER

L_STATE = "io.shipway.swarm.state"
L_EXPIRES = "io.shipway.swarm.expires"
L_SEQ = "io.shipway.swarm.seq"


def _short(service: str) -> str:
    return hashlib.sha256(service.encode()).hexdigest()[:12]


class SwarmState:
    """The lock and the failed-digest list of one service, stored as Docker config objects."""

    def __init__(self, client: Any, service: str, app: str, environment: str) -> None:
        self.client = client
        self.service = service
        self.labels = {L_MANAGED: MANAGER, L_APP: app, L_ENV: environment}
        self.where = f"{app} ({environment})"

    def _configs(self, kind: str) -> list[Any]:
        import docker.errors

        filters = {"label": [f"{L_STATE}={kind}", f"{L_APP}={self.labels[L_APP]}", f"{L_ENV}={self.labels[L_ENV]}"]}
        try:
            return list(self.client.configs.list(filters=filters))
        except docker.errors.APIError as exc:
            raise BackendError(f"cannot read swarm configs: {exc.explanation or exc}") from None

    # -- lock -----------------------------------------------------------------------------
    @property
    def lock_name(self) -> str:
        return f"shipway-lock-{self.service}"

    def _try_lock(self, ttl: float) -> Any:
        import docker.errors

        holder = {"holder": f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}", "since": time.time()}
        labels = {**self.labels, L_STATE: "lock", L_EXPIRES: str(int(time.time() + ttl))}
        try:
            return self.client.configs.create(name=self.lock_name, data=json.dumps(holder).encode(), labels=labels)
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise BackendError(f"cannot create config {self.lock_name}: {exc.explanation or exc}") from None
        return None

    def _held(self) -> tuple[Any, dict[str, Any]] | None:
        for config in self._configs("lock"):
            if config.name == self.lock_name:
                try:
                    data = json.loads(base64.b64decode(config.attrs["Spec"].get("Data", "")) or b"{}")
                except ValueError:
                    data = {}
                return config, data
        return None

    @contextmanager
    def lock(self, ttl: float, wait: float) -> Iterator[None]:
        """Hold ``shipway-lock-<service>``; wait up to ``wait`` seconds for it, then LockedError naming the holder."""
        end = time.monotonic() + wait
        while True:
            mine = self._try_lock(ttl)
            if mine is not None:
                break
            held = self._held()
            if held is None:
                continue  # released between our create and our read
            config, data = held
            if int(config.attrs["Spec"].get("Labels", {}).get(L_EXPIRES, "0")) < time.time():
                self._remove(config)  # left by a crashed runner
                continue
            if time.monotonic() >= end:
                since = time.strftime("%H:%M:%S", time.gmtime(float(data.get("since", 0))))
                raise LockedError(
                    f"another release of {self.where} holds swarm config {self.lock_name} "
                    f"(holder {data.get('holder', '?')}, since {since} UTC)"
                )
            time.sleep(1.0)
        try:
            yield
        finally:
            self._remove(mine)

    @staticmethod
    def _remove(config: Any) -> None:
        import docker.errors

        try:
            config.remove()
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise BackendError(f"cannot remove config {config.name}: {exc.explanation or exc}") from None

    # -- failed digests -----------------------------------------------------------------------
    def _failed_configs(self) -> list[Any]:
        return sorted(self._configs("failed"), key=lambda c: int(c.attrs["Spec"]["Labels"].get(L_SEQ, "0")))

    def failed(self) -> dict[str, str]:
        found = self._failed_configs()
        if not found:
            return {}
        try:
            return dict(json.loads(base64.b64decode(found[-1].attrs["Spec"].get("Data", ""))))
        except ValueError:
            return {}

    def mark_failed(self, digest: str, reason: str) -> None:
        """Write the list (newest 20) as a new config object, then drop the older ones (configs are immutable)."""
        import docker.errors

        found = remember_failed(self.failed(), digest, reason)
        old = self._failed_configs()
        seq = int(old[-1].attrs["Spec"]["Labels"].get(L_SEQ, "0")) + 1 if old else 1
        data = json.dumps(found).encode()
        labels = {**self.labels, L_STATE: "failed", L_SEQ: str(seq)}
        try:
            self.client.configs.create(name=f"shipway-failed-{_short(self.service)}-{seq}", data=data, labels=labels)
        except docker.errors.APIError as exc:
            raise BackendError(f"cannot record the failed digest: {exc.explanation or exc}") from None
        for config in old:
            self._remove(config)

    def clear(self) -> None:
        """Remove the failed-digest list (``shipway down``); a held lock stays with its holder."""
        for config in self._failed_configs():
            self._remove(config)
