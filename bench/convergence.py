#!/usr/bin/env python3
"""Release convergence per orchestrator: seconds from ``deploy()`` to healthy, 1 and 3 replicas.

Run after the README's setup (Docker engine, a single-node swarm, the registry
on 127.0.0.1:5000 with its credentials in ``~/.local/share/shipway-dev/registry.env``,
the base image ``shipway-base:bookworm``), under the Docker lock::

    flock /tmp/shipway-docker.lock .venv/bin/python bench/convergence.py --reps 3

Two tiny busybox images (``shipway.testing.services.build_tiny_image``,
``/healthz`` and ``/version``) are pushed to the registry once. Each
repetition then goes through every orchestrator and replica count in turn
(alternating): ``create`` is the first ``deploy()`` of a new app (v1),
``update`` the ``deploy()`` of v2 onto it; the app is removed afterwards (not
timed). ``deploy()`` returns when the orchestrator calls the release healthy;
the script also checks ``replicas_ready`` and the digest it reports.

Orchestrators: ``docker`` (the local engine; one container, it has no
replicas), ``kubernetes`` on the test kit's fake API server (pods are real
containers on the local engine), ``swarm`` on the real single-node swarm with
the front proxy, as the swarm tests configure it. Grace periods are 1 s: the
busybox server is PID 1 and ignores SIGTERM, so a longer grace would time the
kill timer, not the orchestrator.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from shipway.backends.base import BackendContext, Orchestrator
from shipway.backends.docker_orchestrator import DockerOrchestrator, DockerOrchestratorSettings
from shipway.backends.oci_registry import OciRegistry, OciRegistrySettings
from shipway.domain import ImageRef, Release
from shipway.testing.services import IGNORES_SIGTERM, build_tiny_image, free_port

BASE = os.environ.get("SHIPWAY_BASE_IMAGE", "shipway-base:bookworm")
REGISTRY_ENV = Path.home() / ".local" / "share" / "shipway-dev" / "registry.env"


def registry_credentials() -> tuple[str, str]:
    values = dict(line.split("=", 1) for line in REGISTRY_ENV.read_text().splitlines() if "=" in line)
    return values["SHIPWAY_REGISTRY_USERNAME"], values["SHIPWAY_REGISTRY_PASSWORD"]


class Bench:
    def __init__(self, work: Path, address: str) -> None:
        self.work = work
        user, password = registry_credentials()
        settings = OciRegistrySettings(
            kind="oci", address=address, repository="bench-convergence", username=user, password=password
        )
        self.registry = OciRegistry(settings, BackendContext(root=work, cache_dir=work / "cache"))
        self.auth = self.registry.credentials()
        nonce = uuid.uuid4().hex[:8]
        self.images: dict[str, ImageRef] = {}
        self.local_tags: list[str] = []
        for version in ("v1", "v2"):
            tag = f"shipway-bench/tiny:{nonce}-{version}"
            self.local_tags.append(tag)
            local = build_tiny_image(tag, files={"healthz": "ok", "version": version}, command=IGNORES_SIGTERM)
            self.images[version] = self.registry.push(local, f"{nonce}-{version}")
            self.local_tags.append(f"{self.registry.repository()}:{nonce}-{version}")
        self.fake_k8s: Any = None
        self.orchestrators: dict[str, Orchestrator] = {}
        self.results: dict[tuple[str, int, str], list[float]] = {}

    def start(self, which: list[str]) -> None:
        ctx = BackendContext(root=self.work, cache_dir=self.work / "cache")
        if "docker" in which:
            settings = DockerOrchestratorSettings(kind="docker", host_port=free_port(), stop_timeout=1)
            self.orchestrators["docker"] = DockerOrchestrator(settings, ctx)
        if "kubernetes" in which:
            from shipway_kubernetes import KubernetesOrchestrator, KubernetesSettings
            from shipway_kubernetes.testing.fake_apiserver import FakeApiServer

            self.fake_k8s = FakeApiServer().start()
            kubeconfig = self.fake_k8s.write_kubeconfig(self.work / "kubeconfig")
            k8s = KubernetesSettings(kind="kubernetes", kubeconfig=str(kubeconfig), deadline=120)
            self.orchestrators["kubernetes"] = KubernetesOrchestrator(k8s, ctx)
        if "swarm" in which:
            from shipway_swarm import SwarmOrchestrator, SwarmSettings

            swarm = SwarmSettings(
                kind="swarm",
                published_port=free_port(),
                publish_mode="host",
                endpoint_mode="dnsrr",
                proxy={"enabled": True, "base_image": BASE},
                deadline=120,
                monitor=2,
                health_interval=1,
                health_retries=2,
                stop_grace_period=1,
            )
            self.orchestrators["swarm"] = SwarmOrchestrator(swarm, ctx)

    def stop(self) -> None:
        if self.fake_k8s is not None:
            self.fake_k8s.stop()
        for tag in self.local_tags:  # the registry keeps its copies; the engine drops the bench's tags
            subprocess.run(["docker", "rmi", tag], capture_output=True)

    def timed(self, key: tuple[str, int, str], orch: Orchestrator, release: Release) -> None:
        replicas = release.replicas
        start = time.monotonic()
        found = orch.deploy(release, auth=self.auth)
        seconds = time.monotonic() - start
        if found.replicas_ready < replicas:
            raise SystemExit(f"{key}: deploy() returned with {found.replicas_ready}/{replicas} replicas ready")
        self.results.setdefault(key, []).append(seconds)
        print(f"  {key[0]:<11} {replicas} replica(s) {key[2]:<7} {seconds:6.2f} s", flush=True)

    def warm_up(self) -> None:
        """One untimed release per orchestrator: builds swarm's proxy image, starts the fake cluster's informers."""
        for name, orch in self.orchestrators.items():
            app = f"bench-warm-{name[:4]}-{uuid.uuid4().hex[:6]}"
            try:
                orch.deploy(Release(app=app, image=self.images["v1"], port=8000, health="/healthz"), auth=self.auth)
            finally:
                orch.remove(app)

    def rep(self, replica_counts: list[int]) -> None:
        for name, orch in self.orchestrators.items():
            for replicas in replica_counts:
                if name == "docker" and replicas != 1:
                    continue  # one container per app: the docker orchestrator has no replicas
                app = f"bench-{name[:4]}-{uuid.uuid4().hex[:6]}"

                try:
                    for step, version in (("create", "v1"), ("update", "v2")):
                        rel = Release(
                            app=app, image=self.images[version], port=8000, health="/healthz", replicas=replicas
                        )
                        self.timed((name, replicas, step), orch, rel)
                    live = orch.status(app)
                    if live.image is None or live.image.digest != self.images["v2"].digest:
                        raise SystemExit(f"{name}: status after the update does not show v2: {live}")
                finally:
                    orch.remove(app)


def table(bench: Bench, reps: int) -> str:
    lines = [
        f"{reps} repetitions, medians (min-max); seconds from deploy() to healthy",
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "",
        "| orchestrator | replicas | create (s) | update (s) |",
        "| --- | ---: | ---: | ---: |",
    ]
    done = sorted(
        {(name, replicas) for name, replicas, _ in bench.results},
        key=lambda k: (list(bench.orchestrators).index(k[0]), k[1]),
    )

    def cell(key: tuple[str, int, str]) -> str:
        runs = bench.results.get(key, [])
        return f"{statistics.median(runs):.2f} ({min(runs):.2f}-{max(runs):.2f})" if runs else "n/a"

    for name, replicas in done:
        lines.append(
            f"| {name} | {replicas} | {cell((name, replicas, 'create'))} | {cell((name, replicas, 'update'))} |"
        )
    lines += ["", "| ratio (update medians) | value |", "| --- | ---: |"]
    for name, replicas in done:
        if replicas == 1:
            continue
        one, many = bench.results.get((name, 1, "update")), bench.results.get((name, replicas, "update"))
        if one and many:
            lines.append(
                f"| {name}: {replicas} replicas / 1 replica | {statistics.median(many) / statistics.median(one):.2f}x |"
            )
    base = bench.results.get(("docker", 1, "update"))
    for name, replicas in done:
        runs = bench.results.get((name, replicas, "update"))
        if base and runs and name != "docker":
            lines.append(
                f"| {name} ({replicas}) / docker (1) | {statistics.median(runs) / statistics.median(base):.2f}x |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--registry", default=os.environ.get("SHIPWAY_REGISTRY", "127.0.0.1:5000"))
    parser.add_argument("--orchestrators", default="docker,kubernetes,swarm", help="comma-separated")
    parser.add_argument("--replicas", default="1,3", help="comma-separated replica counts")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shipway-bench-conv-"))
    bench = Bench(work, args.registry)
    try:
        bench.start([name.strip() for name in args.orchestrators.split(",") if name.strip()])
        counts = [int(n) for n in args.replicas.split(",")]
        print("warm-up (not timed)", flush=True)
        bench.warm_up()
        for i in range(args.reps):
            print(f"repetition {i + 1}/{args.reps}", flush=True)
            bench.rep(counts)
        print()
        print(table(bench, args.reps))
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
