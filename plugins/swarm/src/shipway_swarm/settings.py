"""The ``swarm`` orchestrator's YAML section."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shipway.backends.base import BackendSettings

_MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]i?)?B?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def memory_bytes(text: str | int) -> int:
    """``"256M"``, ``"1Gi"``, ``"512MiB"`` or a number of bytes → bytes."""
    if isinstance(text, int):
        return text
    match = _MEMORY_RE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a memory size (e.g. 256M, 1Gi)")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


class Limits(BaseModel):
    """CPU (cores, e.g. 0.5) and memory (e.g. 256M) for a task."""

    model_config = ConfigDict(extra="forbid", defer_build=True)  # compiled with the settings that use it
    cpus: float | None = Field(None, gt=0)
    memory: str | int | None = None

    @model_validator(mode="after")
    def _memory_parses(self) -> Limits:
        if self.memory is not None:
            memory_bytes(self.memory)
        return self


class Resources(BaseModel):
    """``resources: {limits: {cpus: 1, memory: 512M}, reservations: {cpus: 0.25, memory: 128M}}``."""

    model_config = ConfigDict(extra="forbid", defer_build=True)  # compiled with the settings that use it
    limits: Limits = Field(default_factory=Limits)
    reservations: Limits = Field(default_factory=Limits)


class ProxySettings(BaseModel):
    """The front proxy that gives one stable, zero-downtime address on a single node (see README)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)  # compiled with the settings that use it
    enabled: bool = False
    base_image: str = Field(
        "python:3-slim", description="Image with python3 the proxy image is built FROM, on the engine shipway uses"
    )
    connect_timeout: float = Field(1.0, gt=0, description="Seconds per connection attempt to one task")
    retry_window: float = Field(10.0, gt=0, description="Seconds a connection keeps trying other tasks")
    replay_limit: int = Field(
        65536,
        ge=0,
        description="Bytes of a request replayed on another task when a task closes before answering (0: never)",
    )


class SwarmSettings(BackendSettings):
    """``orchestrator: {kind: swarm, published_port: 8080, publish_mode: host, ...}``."""

    kind: str = "swarm"
    published_port: int | None = Field(None, ge=1, le=65535, description="The stable port clients use")
    publish_mode: Literal["ingress", "host"] = Field("ingress", description="ingress: routing mesh; host: node port")
    endpoint_mode: Literal["vip", "dnsrr"] = "vip"
    endpoint_host: str = Field("127.0.0.1", description="Host name or address the endpoint URL uses")
    proxy: ProxySettings = Field(default_factory=ProxySettings)
    networks: list[str] = Field(default_factory=list, description="Existing networks the app also joins")
    constraints: list[str] = Field(default_factory=list, description="Placement constraints, e.g. node.role==worker")
    resources: Resources | None = None
    deadline: float = Field(180, gt=0, description="Seconds a release (or rollback) may take to converge")
    monitor: float = Field(10, ge=0, description="Seconds Swarm watches each updated task for failure")
    max_failure_ratio: float = Field(0, ge=0, le=1, description="Failed tasks tolerated during an update")
    parallelism: int = Field(1, ge=0, description="Tasks updated at once (0: all)")
    health_interval: float = Field(2, gt=0)
    health_timeout: float = Field(3, gt=0)
    health_retries: int = Field(3, ge=1)
    health_start_period: float = Field(0, ge=0, description="Seconds of failed checks not counted after start")
    health_command: list[str] | None = Field(
        None, description="Health check command run in the task; default probes app.health with wget, curl or python3"
    )
    stop_grace_period: float = Field(10, ge=0, description="Seconds between SIGTERM and SIGKILL for an old task")
    lock_wait: float = Field(0, ge=0, description="Seconds a release waits for another one to finish (0: refuse)")
    lock_ttl: float = Field(3600, gt=0, description="Seconds after which a lock left by a crashed runner expires")

    @model_validator(mode="after")
    def _consistent(self) -> SwarmSettings:
        if self.proxy.enabled and self.published_port is None:
            raise ValueError("proxy.enabled needs published_port (the stable port the proxy listens on)")
        if not self.proxy.enabled and self.endpoint_mode == "dnsrr" and self.publish_mode == "ingress":
            raise ValueError(
                "endpoint_mode dnsrr cannot publish through the ingress routing mesh: "
                "use publish_mode host, or proxy.enabled"
            )
        if self.deadline <= self.stop_grace_period:
            raise ValueError(
                f"deadline ({self.deadline:g}s) must be longer than stop_grace_period ({self.stop_grace_period:g}s): "
                "a release waits for the old tasks to stop"
            )
        return self
